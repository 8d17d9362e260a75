"""Exact (brute-force) k-NN: the ground truth that tuning and the recall report are measured against.

`exact_search(queries, database, k, metric, ids)` works on arrays; `exact_search_stream(queries, batches,
k, metric)` consumes an iterator of (ids, vectors) blocks -- e.g. `hrem.store.iter_embeddings` -- and keeps
a running top-k per query (faiss.ResultHeap), so the database never has to fit in memory.
"""
from __future__ import annotations

from collections.abc import Iterable

import faiss
import numpy as np

METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


def faiss_metric(metric: str) -> int:
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {sorted(METRICS)}, found {metric!r}")
    return METRICS[metric]


def exact_search(queries: np.ndarray, database: np.ndarray, k: int, metric: str = "ip",
                 ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k], ids [Q, k]) of the exact top-k; ids are `ids[row]` (row numbers by default).

    Scores are inner products (higher first) or squared L2 distances (lower first); missing slots are -1.
    """
    return exact_search_stream(queries, [(_row_ids(database, ids), database)], k, metric)


def _row_ids(database: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
    return np.arange(len(database), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)


def exact_search_stream(queries: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]], k: int,
                        metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of `queries` over database blocks (ids [n], vectors [n, D]) given one after another."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    keep_max = faiss_metric(metric) == faiss.METRIC_INNER_PRODUCT
    heap = faiss.ResultHeap(len(queries), k, keep_max=keep_max)
    for block_ids, block in batches:
        if len(block) == 0:
            continue
        block = np.ascontiguousarray(block, dtype=np.float32)
        kb = min(k, len(block))
        scores, rows = faiss.knn(queries, block, kb, metric=faiss_metric(metric))
        heap.add_result(scores, np.asarray(block_ids, dtype=np.int64)[rows])
    heap.finalize()
    return heap.D, heap.I


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean over queries of |top-k found ∩ top-k true| / k (the "k-recall@k" of the FAISS wiki)."""
    if len(found) == 0:
        return float("nan")
    hits = 0
    for row_found, row_truth in zip(found[:, :k], truth[:, :k]):
        valid = row_truth[row_truth >= 0]
        hits += np.intersect1d(row_found[row_found >= 0], valid).size / max(min(k, valid.size), 1)
    return float(hits / len(found))


__all__ = ["METRICS", "exact_search", "exact_search_stream", "faiss_metric", "recall_at_k"]
