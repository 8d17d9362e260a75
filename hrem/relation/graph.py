"""The batch graph of the instance-level relation: connection and relevance between 2B instances.

REFERENCE_HREM.md §1.4 (`lib/mca.py`: AdjacencyModel / AdjacencyLearning), step by step:

- connection (bool, no gradient): per row keep the entries >= the k-th largest, k = int(B * threshold);
  i2i / t2t from the *intra-modal* cosine similarities (the corrected masks of 2023-10-25; the first
  release used the cross-modal ones), so the diagonal is always connected; t2i / i2t from the mean
  word-region scores;
- relevance (edge weight): exp(-cdist / sigma) within a modality (keeps its gradient); across modalities a
  small MLP over the top-k word (region) scores plus their mean (`AdjacencyLearning`), trained through
  the KL regulariser `reg_loss`.

The reference computes the word-region scores in a Python loop over captions; here all B x B pairs are
computed at once (chunked over captions to bound memory). Quirks of that loop are fixed: means, maxima
and top-k range over valid words / regions only (the loop fed the projections of padding tokens into the
top-k of captions shorter than topk and averaged padded regions into the region mean); when fewer than
topk positions exist the missing scores are zero.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from hrem.utils.compile import fused

# Upper bound on the elements of one [captions, images, words, regions] similarity block (~64 MB fp32).
SCORE_BLOCK_ELEMENTS = 1 << 24


def topk_connection(sim: torch.Tensor, threshold: float) -> torch.Tensor:
    """[R, C] scores -> bool mask keeping, per row, the entries >= the row's k-th largest (k = int(C*t))."""
    k = max(1, int(sim.shape[1] * threshold))
    kth = sim.topk(k, dim=1).values[:, -1:]
    return sim >= kth


def exp_relevance(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.exp(-torch.cdist(a, b) / sigma)


def _topk_valid(x: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k over the valid positions of the last axis; missing ones (fewer than k valid) score zero."""
    x = x.masked_fill(~valid, float("-inf"))
    if x.shape[-1] < k:
        x = F.pad(x, (0, k - x.shape[-1]), value=float("-inf"))
    top = x.topk(k, dim=-1).values
    return top.masked_fill(torch.isinf(top), 0.0)


def word_region_scores(img_tokens: torch.Tensor, img_mask: torch.Tensor, cap_tokens: torch.Tensor,
                       cap_mask: torch.Tensor, topk: int, gemm_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """SCAN-style scores for every (caption, image) pair; all outputs are caption-major [Bt, Bi, ...].

    t2i: per word, the best region (cosines L2-normalised over the word axis); `t2i_mean` averages valid
    words, `t2i_topk` keeps the top-k. i2t: per region, the best word (normalised over the region axis);
    `i2t_mean` averages valid regions, `i2t_topk` keeps the top-k. No gradient flows (inputs detached).

    Fast path: one GEMM per block of captions gives the [t, L, Bi, N] cosines (in `gemm_dtype`, e.g.
    bfloat16 on CPUs with AVX512-BF16 / AMX; fp32 by default), and everything after it -- leaky ReLU, the
    two normalisations, the masked maxima, means and top-k -- is one fused kernel (hrem.utils.compile) that
    reads the block a few times instead of materialising a dozen tensors of its size. Blocks hold at most
    SCORE_BLOCK_ELEMENTS cosines. `word_region_scores_reference` is the plain implementation it is tested
    against.
    """
    with torch.no_grad():
        img = F.normalize(img_tokens.detach().float() * img_mask[..., None], dim=-1)   # [Bi, N, D], pads = 0
        cap = F.normalize(cap_tokens.detach().float() * cap_mask[..., None], dim=-1)   # [Bt, L, D], pads = 0
        n_img, n_reg, width = img.shape
        regions = img.reshape(n_img * n_reg, width).t().to(gemm_dtype or img.dtype)    # [D, Bi*N]
        chunk = max(1, SCORE_BLOCK_ELEMENTS // max(1, n_img * cap.shape[1] * n_reg))
        parts = []
        for s in range(0, cap.shape[0], chunk):
            block = cap[s:s + chunk]
            sim = (block.reshape(-1, width).to(regions.dtype) @ regions).float()
            parts.append(_score_tail(sim.view(block.shape[0], block.shape[1], n_img, n_reg), cap_mask[s:s + chunk],
                                     img_mask, topk))
    return {key: torch.cat([p[i] for p in parts], dim=0) for i, key in enumerate(SCORE_KEYS)}


SCORE_KEYS = ("t2i_mean", "t2i_topk", "i2t_mean", "i2t_topk")


@fused
def _score_tail(sim: torch.Tensor, cap_mask: torch.Tensor, img_mask: torch.Tensor, topk: int):
    """sim [t, L, Bi, N] raw cosines -> (t2i_mean [t, Bi], t2i_topk [t, Bi, k], i2t_mean, i2t_topk)."""
    sim = F.leaky_relu(sim, negative_slope=0.1)
    words, regions = cap_mask[:, :, None, None], img_mask[None, None]
    over_words = torch.linalg.vector_norm(sim, dim=1, keepdim=True).clamp_min(1e-12)       # F.normalize's eps
    over_regions = torch.linalg.vector_norm(sim, dim=3, keepdim=True).clamp_min(1e-12)
    row = (sim / over_words).masked_fill(~regions, float("-inf")).amax(dim=3)             # [t, L, Bi]
    col = (sim / over_regions).masked_fill(~words, float("-inf")).amax(dim=1)             # [t, Bi, N]
    row = row.masked_fill(~cap_mask[:, :, None], 0.0).transpose(1, 2)                     # [t, Bi, L]
    col = col.masked_fill(~img_mask[None], 0.0)
    n_words = cap_mask.sum(dim=1).to(row.dtype)[:, None]
    n_regions = img_mask.sum(dim=1).to(col.dtype)[None, :]
    return (row.sum(dim=2) / n_words, _topk_valid(row, cap_mask[:, None, :].expand_as(row), topk),
            col.sum(dim=2) / n_regions, _topk_valid(col, img_mask[None].expand_as(col), topk))


def word_region_scores_reference(img_tokens: torch.Tensor, img_mask: torch.Tensor, cap_tokens: torch.Tensor,
                                 cap_mask: torch.Tensor, topk: int) -> dict[str, torch.Tensor]:
    """The plain implementation (einsum + one tensor per step): the reference the fast path is tested
    against, and what `benchmarks/bench_train.py` times it against."""
    img = F.normalize(img_tokens.detach().float() * img_mask[..., None], dim=-1)
    cap = F.normalize(cap_tokens.detach().float() * cap_mask[..., None], dim=-1)
    n_img, n_reg = img.shape[:2]
    chunk = max(1, SCORE_BLOCK_ELEMENTS // max(1, n_img * cap.shape[1] * n_reg))
    parts = [_score_block(cap[s:s + chunk], cap_mask[s:s + chunk], img, img_mask, topk)
             for s in range(0, cap.shape[0], chunk)]
    return {key: torch.cat([p[key] for p in parts], dim=0) for key in parts[0]}


def _score_block(cap: torch.Tensor, cap_mask: torch.Tensor, img: torch.Tensor, img_mask: torch.Tensor,
                 topk: int) -> dict[str, torch.Tensor]:
    sim = F.leaky_relu(torch.einsum("tld,ind->tiln", cap, img), negative_slope=0.1)   # [t, Bi, L, N]
    words = cap_mask[:, None, :]                                                      # [t, 1, L]
    regions = img_mask[None, :, :]                                                    # [1, Bi, N]
    row = F.normalize(sim, dim=2).masked_fill(~regions[:, :, None, :], float("-inf")).amax(dim=3)
    row = row.masked_fill(~words, 0.0)                                                # [t, Bi, L]
    col = F.normalize(sim, dim=3).masked_fill(~words[..., None], float("-inf")).amax(dim=2)
    col = col.masked_fill(~regions, 0.0)                                              # [t, Bi, N]
    return {
        "t2i_mean": row.sum(dim=2) / words.sum(dim=2).to(row.dtype),
        "t2i_topk": _topk_valid(row, words.expand_as(row), topk),
        "i2t_mean": col.sum(dim=2) / regions.sum(dim=2).to(col.dtype),
        "i2t_topk": _topk_valid(col, regions.expand_as(col), topk),
    }


def _relevance_mlp(topk: int, dropout: float) -> nn.Sequential:
    # Indices 0 and 3 hold the weights: `mlp_t2i.0.weight`, `mlp_t2i.3.weight` as in the reference.
    return nn.Sequential(nn.Linear(topk, topk), nn.ReLU(), nn.Dropout(dropout), nn.Linear(topk, 1))


class AdjacencyLearning(nn.Module):
    """Learned cross-modal relevance: MLP(top-k scores) + mean score, plus its KL regulariser."""

    def __init__(self, topk: int = 10, temperature: float = 1.0, sigma: float = 1.0, dropout: float = 0.0,
                 score_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.topk, self.temperature, self.sigma = topk, temperature, sigma
        self.score_dtype = score_dtype    # GEMM dtype of the word-region cosines (None = fp32)
        self.mlp_t2i = _relevance_mlp(topk, dropout)
        self.mlp_i2t = copy.deepcopy(self.mlp_t2i)  # the reference starts both MLPs from the same weights

    def forward(self, img_tokens: torch.Tensor, img_mask: torch.Tensor, cap_tokens: torch.Tensor,
                cap_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """t2i_* are [Bt, Bi] (rows = captions); i2t_* are [Bi, Bt] (rows = images)."""
        scores = word_region_scores(img_tokens, img_mask, cap_tokens, cap_mask, self.topk, self.score_dtype)
        dtype = self.mlp_t2i[0].weight.dtype
        t2i_mean, i2t_mean = scores["t2i_mean"], scores["i2t_mean"].t()
        t2i = self.mlp_t2i(scores["t2i_topk"].to(dtype)).squeeze(-1) + t2i_mean
        i2t = self.mlp_i2t(scores["i2t_topk"].transpose(0, 1).to(dtype)).squeeze(-1) + i2t_mean
        return {"t2i": t2i, "i2t": i2t, "t2i_mean": t2i_mean, "i2t_mean": i2t_mean}

    def reg_loss(self, t2i: torch.Tensor, i2t: torch.Tensor, img_emb: torch.Tensor,
                 cap_emb: torch.Tensor) -> torch.Tensor:
        """KL between softmax rows of the learned relevance and of the detached exp(-cdist(img, cap))."""
        target = torch.exp(-torch.cdist(img_emb, cap_emb) / self.sigma).detach()      # [Bi, Bt]
        return self._kl(target, i2t) + self._kl(target.t(), t2i)

    def _kl(self, target: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        # As in the code (not as the paper's text): F.kl_div(log softmax(target), softmax(relation)),
        # i.e. KL(relation || target), batchmean, times T^2.
        t = self.temperature
        log_target = F.log_softmax(target / t, dim=-1)
        return F.kl_div(log_target, F.softmax(relation / t, dim=-1), reduction="batchmean") * t * t


class AdjacencyModel(nn.Module):
    """The [2B, 2B] connection and relevance matrices (images first, then captions) and reg_loss."""

    def __init__(self, threshold: float = 0.5, topk: int = 10, sigma: float = 1.0, temperature: float = 1.0,
                 score_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.threshold, self.sigma = threshold, sigma
        self.adj_learning = AdjacencyLearning(topk=topk, temperature=temperature, sigma=sigma, score_dtype=score_dtype)

    def forward(self, img_emb: torch.Tensor, cap_emb: torch.Tensor, img_tokens: torch.Tensor,
                img_mask: torch.Tensor, cap_tokens: torch.Tensor, cap_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            i2i_connect = topk_connection(img_emb @ img_emb.t(), self.threshold)
            t2t_connect = topk_connection(cap_emb @ cap_emb.t(), self.threshold)
            eye = torch.eye(img_emb.shape[0], dtype=torch.bool, device=img_emb.device)
            i2i_connect, t2t_connect = i2i_connect | eye, t2t_connect | eye   # ties cannot drop self-loops
        cross = self.adj_learning(img_tokens, img_mask, cap_tokens, cap_mask)
        t2i_connect = topk_connection(cross["t2i_mean"].detach(), self.threshold)
        i2t_connect = topk_connection(cross["i2t_mean"].detach(), self.threshold)
        connect = torch.cat([torch.cat([i2i_connect, i2t_connect], 1), torch.cat([t2i_connect, t2t_connect], 1)], 0)
        relevance = torch.cat([
            torch.cat([exp_relevance(img_emb, img_emb, self.sigma), cross["i2t"].to(img_emb.dtype)], 1),
            torch.cat([cross["t2i"].to(img_emb.dtype), exp_relevance(cap_emb, cap_emb, self.sigma)], 1)], 0)
        reg = self.adj_learning.reg_loss(cross["t2i"].float(), cross["i2t"].float(), img_emb.float(), cap_emb.float())
        return connect, relevance, reg
