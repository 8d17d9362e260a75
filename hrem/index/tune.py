"""Tuning nprobe / efSearch against exact search, and measuring recall@10 and QPS.

Queries should come from the OTHER modality (captions for an image index): text queries are out of
distribution for an image index, so settings tuned on image self-queries overestimate recall (ECOSYSTEM.md
§2.4). When only one modality exists, database vectors are used as held-out queries: each query's own id
is removed from both the exact and the approximate result lists before comparing.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from hrem.index.exact import recall_at_k
from hrem.index.params import Params, apply_params, sweep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneResult:
    params: Params
    recall_at_10: float
    target_recall: float
    target_reached: bool
    qps_batch: float
    qps_single: float
    queries: int
    query_source: str
    sweep: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"params": self.params, "recall_at_10": round(self.recall_at_10, 4),
                "target_recall": self.target_recall, "target_reached": self.target_reached,
                "qps_batch": round(self.qps_batch, 1), "qps_single": round(self.qps_single, 1),
                "queries": self.queries, "query_source": self.query_source, "k": 10, "sweep": self.sweep}


def drop_self(ids: np.ndarray, scores: np.ndarray, query_ids: np.ndarray | None, k: int,
              ) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own id from its result row (held-out self-queries), keep the first k."""
    if query_ids is None:
        return scores[:, :k], ids[:, :k]
    is_self = ids == query_ids[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")  # False (not self) first, original order kept
    return (np.take_along_axis(scores, order, 1)[:, :k], np.take_along_axis(ids, order, 1)[:, :k])


def search_ids(index: faiss.Index, queries: np.ndarray, k: int, query_ids: np.ndarray | None) -> np.ndarray:
    extra = 1 if query_ids is not None else 0
    scores, ids = index.search(queries, k + extra)
    return drop_self(ids, scores, query_ids, k)[1]


def measure_qps(index: faiss.Index, queries: np.ndarray, k: int = 10, single_budget_s: float = 1.0,
                ) -> tuple[float, float]:
    """(batch QPS: all queries in one call, all threads; single-query QPS: one call per query, one thread).

    Single queries run on one OpenMP thread, as in a server answering one request per thread: spreading a
    single query over threads mostly measures OpenMP start-up and, on a busy machine, spin-waiting.
    """
    start = time.perf_counter()
    index.search(queries, k)
    batch = len(queries) / max(time.perf_counter() - start, 1e-9)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        done, start = 0, time.perf_counter()
        while done < len(queries) and (done < 10 or time.perf_counter() - start < single_budget_s):
            index.search(queries[done:done + 1], k)
            done += 1
        single = done / max(time.perf_counter() - start, 1e-9)
    finally:
        faiss.omp_set_num_threads(threads)
    return batch, single


def tune(index: faiss.Index, queries: np.ndarray, truth_ids: np.ndarray, target_recall: float,
         query_source: str, query_ids: np.ndarray | None = None, k: int = 10) -> TuneResult:
    """Pick the cheapest setting of `sweep(index)` whose recall@k vs `truth_ids` reaches `target_recall`.

    If none does, the most thorough setting is kept and `target_reached` is False. The chosen setting is left
    applied on `index`.
    """
    points, chosen = [], None
    for params in sweep(index, k):
        apply_params(index, params)
        start = time.perf_counter()
        recall = recall_at_k(search_ids(index, queries, k, query_ids), truth_ids, k)
        qps = len(queries) / max(time.perf_counter() - start, 1e-9)
        points.append({"params": params, "recall_at_10": round(recall, 4), "qps_batch": round(qps, 1)})
        log.info("tuning %s: recall@%d %.4f, %.0f queries/s", params or "(no parameters)", k, recall, qps)
        if recall >= target_recall:
            chosen = (params, recall, True)
            break
    if chosen is None:
        best = max(points, key=lambda p: p["recall_at_10"])
        chosen = (best["params"], best["recall_at_10"], False)
        log.warning("target recall@%d %.3f not reached; best %.4f at %s", k, target_recall, chosen[1], chosen[0])
    apply_params(index, chosen[0])
    qps_batch, qps_single = measure_qps(index, queries, k)
    return TuneResult(params=chosen[0], recall_at_10=float(chosen[1]), target_recall=target_recall,
                      target_reached=chosen[2], qps_batch=qps_batch, qps_single=qps_single,
                      queries=len(queries), query_source=query_source, sweep=points)


__all__ = ["TuneResult", "drop_self", "measure_qps", "search_ids", "tune"]
