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
    """x / (||x|| + eps), the reference's normalisation (not F.normalize's max(||x||, eps))."""
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
    top = tokens.masked_fill(~mask[..., None], float("-inf")).topk(k_batch, dim=1).values   # [B, k, D]
    per_sample = mask.sum(dim=1).clamp(max=k_batch)                                         # [B]
    keep = torch.arange(k_batch, device=tokens.device)[None, :] < per_sample[:, None]       # [B, k]
    top = top.masked_fill(~keep[..., None], 0.0)
    return top.sum(dim=1) / per_sample[:, None].to(tokens.dtype)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
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


__all__ = ["l2norm", "lengths_to_mask", "maxk_pool", "masked_mean", "sinusoidal_encoding", "GPO"]
