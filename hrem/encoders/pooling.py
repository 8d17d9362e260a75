"""Pooling of fragment tokens [B, N, D] with a validity mask [B, N] (True = valid) into [B, D].

- `maxk_pool`: mean of the top-k values per dimension over the valid positions (HREM's "gpool").
- `masked_mean`: average over the valid positions (HREM's "graph_pool").
- `GPO`: VSE-infinity's generalised pooling operator (REFERENCE_HREM.md §1.6), the alternative head.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def l2norm(x: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """x / (||x|| + eps), the reference's normalisation (not F.normalize's max(||x||, eps)).

    Without autograd the norm is one `vector_norm` kernel instead of pow, sum and sqrt (same value up to
    rounding); with autograd the reference's ops are kept as they are.
    """
    if not x.requires_grad:
        return x / (torch.linalg.vector_norm(x, dim=dim, keepdim=True) + eps)
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] lengths -> [B, max_len] bool, True for the first `length` positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def maxk_pool(tokens: torch.Tensor, mask: torch.Tensor, k: int = 2) -> torch.Tensor:
    """Mean of the k largest values per dimension over the valid positions.

    Padded positions are filled with -inf so they are never selected. The reference lowers k for the
    rest of the batch once it meets a sample shorter than k (`k = min(k, length)` inside its loop); here
    every sample uses its own k = min(k, length), which is what that line meant to do.
    """
    k_batch = min(k, tokens.shape[1])
    all_valid = bool(mask.all())   # no padding (evaluation, grid features): skip the masking passes
    candidates = tokens if all_valid else tokens.masked_fill(~mask[..., None], float("-inf"))
    if tokens.requires_grad:
        top = candidates.topk(k_batch, dim=1).values                                        # [B, k, D]
    else:
        top = torch.stack(topk_by_exclusion(candidates, k_batch), dim=1)
    if all_valid:
        return top.sum(dim=1) / k_batch
    per_sample = mask.sum(dim=1).clamp(max=k_batch)                                         # [B]
    keep = torch.arange(k_batch, device=tokens.device)[None, :] < per_sample[:, None]       # [B, k]
    top = top.masked_fill(~keep[..., None], 0.0)
    return top.sum(dim=1) / per_sample[:, None].to(tokens.dtype)


def topk_by_exclusion(tokens: torch.Tensor, k: int) -> list[torch.Tensor]:
    """Inference-only equal of `tokens.topk(k, dim=1).values.unbind(1)`: k tensors [B, D], descending.

    Why: torch's CPU topk over the short, strided fragment axis is slow: 53 ms for [128, 36, 1024] on one
    thread, ~7% of a hrem-f30k image batch. Taking the maximum with its position, setting that one
    position to -inf and repeating gives the same values exactly, ties included (only one copy of a tied
    maximum is removed): 3 kernels and 15.5 ms for k = 2. (A running or pairwise max/min network is faster
    on an idle machine but needs 20-100 small kernels, which lost to topk with other jobs on the cores.)
    Not for autograd: amax splits the gradient between tied values where topk gives it to one of them,
    so callers use topk whenever gradients are recorded.
    """
    values = []
    for _ in range(k - 1):
        value, position = tokens.max(dim=1, keepdim=True)
        values.append(value.squeeze(1))
        tokens = tokens.scatter(1, position, float("-inf"))
    values.append(tokens.amax(dim=1))
    return values


def hrem_pool_unpadded(tokens: torch.Tensor, related: torch.Tensor, residual_weight: float,
                       k: int) -> torch.Tensor:
    """Inference-only equal of `r * maxk_pool(tokens, mask, k) + (1 - r) * masked_mean(related, mask)` when
    no position is padded (mask all True): [B, N, D] twice -> [B, D].

    Why: with other jobs on the two cores, each small kernel of the encoder's tail waits for the second
    thread (the profiler showed ~8 ms per op at 2 threads, ~0.1 ms on an idle core). This tail needs about
    half the kernels of the general one: no masks, the top-k values are added as topk_by_exclusion returns
    them, and both means are scaled inside one multiply-add (the same value up to rounding).
    Not for autograd (see topk_by_exclusion).
    """
    k = min(k, tokens.shape[1])
    values = topk_by_exclusion(tokens, k)
    # values[0] is a fresh tensor (max / amax output), so it is safe to update in place; under autocast the
    # related tokens may be wider (LayerNorm runs in float32), and the sum takes the wider type as `+` would
    top = values[0].to(torch.promote_types(tokens.dtype, related.dtype))
    for value in values[1:]:
        top.add_(value)
    mean_weight = (1.0 - residual_weight) / tokens.shape[1]
    return top.mul_(residual_weight / k).add_(related.sum(dim=1), alpha=mean_weight)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if bool(mask.all()):   # no padding: the same sums without the [B, N, D] weighting pass
        return tokens.sum(dim=1) / tokens.shape[1]
    weights = mask.to(tokens.dtype)[..., None]
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1)


def sinusoidal_encoding(length: int, width: int, device: torch.device) -> torch.Tensor:
    """[length, width] sin/cos positional encoding (VSE-infinity's positional_encoding_1d)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * -(math.log(10000.0) / width))
    pe = torch.zeros(length, width, device=device)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)
    return pe


class GPO(nn.Module):
    """Generalised pooling: per-dimension sorted features weighted by length-dependent weights.

    The weights come from a BiGRU over sinusoidal position codes and depend only on each sample's length
    (valid positions must be a prefix, as with right padding). Keys: `gru.*`, `linear.weight`.
    """

    def __init__(self, pe_dim: int = 32, hidden: int = 32) -> None:
        super().__init__()
        self.pe_dim = pe_dim
        self.gru = nn.GRU(pe_dim, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(hidden, 1, bias=False)

    def pool_weights(self, mask: torch.Tensor) -> torch.Tensor:
        """[B, N, 1] softmax weights over positions; padded positions get ~0."""
        lengths = mask.sum(dim=1)
        n = mask.shape[1]
        pes = sinusoidal_encoding(n, self.pe_dim, mask.device)[None].expand(mask.shape[0], n, self.pe_dim)
        pes = pes.masked_fill(~mask[..., None], 0.0).to(self.linear.weight.dtype)
        packed = pack_padded_sequence(pes, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=n)
        half = out.shape[-1] // 2
        scores = self.linear((out[..., :half] + out[..., half:]) / 2)          # [B, N, 1]
        scores = scores.masked_fill(~mask[..., None], -10000.0)
        return torch.softmax(scores / 0.1, dim=1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.pool_weights(mask).to(tokens.dtype)
        ordered = tokens.masked_fill(~mask[..., None], -10000.0).sort(dim=1, descending=True).values
        ordered = ordered.masked_fill(~mask[..., None], 0.0)
        return (ordered * weights).sum(dim=1)


__all__ = ["l2norm", "lengths_to_mask", "maxk_pool", "topk_by_exclusion", "hrem_pool_unpadded", "masked_mean",
           "sinusoidal_encoding", "GPO"]
