"""`auto` under a memory budget: choose among the IVF candidates that fit by MEASURED recall.

autofaiss picks the fastest index that fits the memory and tunes it for latency; at a tight budget that
can be a PQ index whose recall never reaches what search needs. Here each candidate that fits
(hrem.index.choose.budget_candidates: SQ8 and PQ codes behind the same coarse quantizer) is built on a
pilot: a seeded uniform sample of the database (`pilot_rows`, default 100k) with its list count scaled so
that lists hold as many vectors as they will at full size, and tuned on the tuning queries (the other
modality: cross-modal) against exact search over the pilot. The candidate chosen is the fastest (batch
QPS) of those reaching the target recall@10; if none does, the one with the highest recall. Every
candidate's pilot figures -- recall, QPS, parameters, why it was kept or rejected -- go to index.json.

Pilot figures are estimates: full-size QPS is lower (more lists to rank, a larger file to page in), and
recall at the tuned nprobe carries over only as far as the list sizes do; the full build is tuned again.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrem.index.choose import MIN_POINTS_PER_LIST, FactoryChoice, ivf_nlist
from hrem.index.construct import make_index, train_rows
from hrem.index.exact import exact_search
from hrem.index.sampling import read_sample
from hrem.index.tune import tune
from hrem.store import Manifest

log = logging.getLogger(__name__)


def pilot_factory(factory: str, n: int, pilot_n: int) -> str:
    """`factory` with its list count scaled by pilot_n / n: the nearest power of two, capped so that lists
    hold >= 39 vectors (the cap need not be a power of two)."""
    nlist = ivf_nlist(factory)
    if nlist is None or pilot_n >= n:
        return factory
    scaled = max(1, round(nlist * pilot_n / n))
    scaled = min(2 ** round(np.log2(scaled)), max(1, pilot_n // MIN_POINTS_PER_LIST))
    return re.sub(r"IVF\d+", f"IVF{scaled}", factory, count=1)


def run_pilot(choice: FactoryChoice, n: int, base_ids: np.ndarray, base: np.ndarray, queries: np.ndarray,
              truth: np.ndarray, metric: str, target_recall: float, source: str) -> dict[str, Any]:
    """Build `choice` (scaled) on the pilot database, tune it, return its figures for index.json."""
    start = time.perf_counter()
    factory = pilot_factory(choice.factory, n, len(base))
    index, _ = make_index(factory, base.shape[1], metric)
    rows = train_rows(index, factory, len(base), MIN_POINTS_PER_LIST, len(base))  # the minimum: pilots are many
    if rows:
        index.train(base[:rows])  # a prefix of a uniform sample is a uniform sample
    index.add_with_ids(base, base_ids)
    result = tune(index, queries, truth, target_recall, source)
    return {"factory": choice.factory, "pilot_factory": factory, "estimated_bytes": choice.bytes,
            "pilot_rows": len(base), "params": result.params, "recall_at_10": round(result.recall_at_10, 4),
            "target_reached": result.target_reached, "qps_batch": round(result.qps_batch, 1),
            "seconds": round(time.perf_counter() - start, 2)}


def pick(results: list[dict[str, Any]]) -> int:
    """Index of the chosen candidate: fastest reaching the target, else the highest recall."""
    reached = [i for i, r in enumerate(results) if r["target_reached"]]
    if reached:
        return max(reached, key=lambda i: results[i]["qps_batch"])
    return max(range(len(results)), key=lambda i: results[i]["recall_at_10"])


def verdicts(results: list[dict[str, Any]], chosen: int) -> list[dict[str, Any]]:
    best = results[chosen]
    out = []
    for i, r in enumerate(results):
        if i == chosen:
            why = "chosen: " + ("fastest candidate reaching the target recall" if r["target_reached"]
                                else "no candidate reached the target; highest recall")
        elif best["target_reached"] and not r["target_reached"]:
            why = f"rejected: recall@10 {r['recall_at_10']} below the target"
        elif best["target_reached"]:
            why = f"rejected: reaches the target but slower ({r['qps_batch']} vs {best['qps_batch']} QPS)"
        else:
            why = f"rejected: lower recall@10 ({r['recall_at_10']} vs {best['recall_at_10']})"
        out.append({**r, "verdict": why})
    return out


def choose_by_pilot(choices: Sequence[FactoryChoice], emb_dir: str | Path, modality: str, manifest: Manifest,
                    shards: Sequence[str], queries: np.ndarray, source: str, metric: str, target_recall: float,
                    seed: int, pilot_rows: int, k: int = 10) -> tuple[FactoryChoice, list[dict[str, Any]]]:
    """(the chosen candidate, every candidate's pilot figures with its verdict)."""
    base_ids, base = read_sample(emb_dir, modality, manifest, pilot_rows, seed + 2, shards)
    _, truth = exact_search(queries, base, k, metric, base_ids)
    n = sum(r.rows for r in manifest.records(modality) if r.name in set(shards))
    results = []
    for choice in choices:
        results.append(run_pilot(choice, n, base_ids, base, queries, truth, metric, target_recall, source))
        log.info("pilot %s: recall@10 %.4f at %s, %.0f QPS", choice.factory, results[-1]["recall_at_10"],
                 results[-1]["params"], results[-1]["qps_batch"])
    chosen = pick(results)
    return choices[chosen], verdicts(results, chosen)


__all__ = ["choose_by_pilot", "pick", "pilot_factory", "run_pilot"]
