"""R@K, median / mean rank, rsum and recall@K curves from rank arrays (the HREM / VSE∞ definitions).

With 0-based ranks (strict-greater counts, see `hrem.eval.ranks`):
R@K = 100 · mean(rank < K); medr = floor(median(rank)) + 1; meanr = mean(rank) + 1;
rsum = i2t R@1 + R@5 + R@10 + t2i R@1 + R@5 + R@10. All values are plain Python floats (JSON-ready).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from hrem.eval.ranks import RetrievalRanks

RECALL_KS = (1, 5, 10)
DIRECTIONS = ("i2t", "t2i")
CURVE_MAX_K = 100


def _check_ranks(ranks: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(ranks)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} ranks: expected a non-empty 1-D array, found shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) or int(array.min()) < 0:
        raise ValueError(f"{name} ranks: expected non-negative integers, found dtype {array.dtype}")
    return array


def direction_summary(ranks: np.ndarray, name: str = "ranks") -> dict[str, float]:
    """{"r1", "r5", "r10", "medr", "meanr"} for one direction."""
    array = _check_ranks(ranks, name)
    out = {f"r{k}": 100.0 * float(np.count_nonzero(array < k)) / array.size for k in RECALL_KS}
    out["medr"] = float(np.floor(np.median(array)) + 1)
    out["meanr"] = float(array.mean() + 1)
    return out


def recall_summary(ranks: RetrievalRanks) -> dict[str, float]:
    """Flat summary: i2t_r1 … i2t_meanr, t2i_r1 … t2i_meanr, rsum, n_images, n_captions."""
    summary: dict[str, float] = {}
    for direction in DIRECTIONS:
        for key, value in direction_summary(getattr(ranks, direction), direction).items():
            summary[f"{direction}_{key}"] = value
    summary["rsum"] = sum(summary[f"{d}_r{k}"] for d in DIRECTIONS for k in RECALL_KS)
    summary["n_images"] = int(ranks.i2t.size)
    summary["n_captions"] = int(ranks.t2i.size)
    return summary


def recall_curve(ranks: np.ndarray, max_k: int = CURVE_MAX_K) -> list[float]:
    """[R@1, R@2, …, R@max_k] in percent, from one bincount (no loop over K)."""
    array = _check_ranks(ranks, "curve")
    hits = np.bincount(np.minimum(array, max_k), minlength=max_k + 1)[:max_k]
    return (100.0 * np.cumsum(hits) / array.size).tolist()


def recall_curves(ranks: RetrievalRanks, max_k: int = CURVE_MAX_K) -> dict[str, list[float]]:
    return {direction: recall_curve(getattr(ranks, direction), max_k) for direction in DIRECTIONS}


def mean_summaries(summaries: Sequence[dict], keys: Iterable[str]) -> dict[str, float]:
    """Mean of each metric over folds (the reference averages medr and meanr too)."""
    if not summaries:
        raise ValueError("mean_summaries: expected at least one fold summary, found none")
    return {key: float(np.mean([s[key] for s in summaries])) for key in keys}


def mean_curves(curves: Sequence[dict[str, list[float]]]) -> dict[str, list[float]]:
    if not curves:
        raise ValueError("mean_curves: expected at least one fold curve, found none")
    return {d: np.mean([c[d] for c in curves], axis=0).tolist() for d in DIRECTIONS}
