"""Grounding-aware re-ranking of text -> image hits (hrem's addition; neither paper nor peer tool has it).

The retrieval model scores a whole image against the whole query; the grounding head looks for the referred
object and reports how sure it is that its box holds it (sigma of the chosen box's objectness). Over the top
`depth` hits each (query, image) pair is grounded and the hits are re-ordered by

    combined = retrieval score + weight * grounding score

then cut to k. Each re-ranked hit keeps its retrieval score (`SearchHit.retrieval_score`) and its grounding,
so a caller sees why it moved. The cost is one grounding forward per (query, hit) pair within `depth`:
docs/search.md gives the measured cost per query and the measured effect (none, with the shipped models)
that set the default weight and keeps re-ranking off by default.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Measured (benchmarks/rerank_eval.py, docs/search.md): with the shipped models no weight > 0 beat plain
# retrieval on dev (best 0); 0.05 was the best non-zero one (dev R@1 -0.1, test +0.1: noise), so --rerank is
# off by default and uses 0.05 when asked for.
DEFAULT_DEPTH = 10
DEFAULT_WEIGHT = 0.05


@dataclass(frozen=True)
class RerankOptions:
    depth: int = DEFAULT_DEPTH      # hits retrieved and grounded per query (>= k)
    weight: float = DEFAULT_WEIGHT  # of the grounding score in the combined score

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"rerank depth: expected >= 1 hits to re-rank, found {self.depth}")
        if not self.weight >= 0:   # also refuses NaN
            raise ValueError(f"rerank weight: expected a number >= 0, found {self.weight}")


def combined_score(retrieval_score: float, grounding_score: float, weight: float) -> float:
    return float(retrieval_score) + float(weight) * float(grounding_score)


def rerank_row(hits: Sequence[Any], weight: float, k: int) -> list[Any]:
    """One query's grounded hits, re-ordered by the combined score (ties keep retrieval order), top k."""
    missing = [hit.id for hit in hits if hit.grounding is None]
    if missing:
        raise ValueError(f"rerank: hits {missing[:5]} carry no grounding; ground them first")
    scored = [dataclasses.replace(hit, score=combined_score(hit.score, hit.grounding.score, weight),
                                  retrieval_score=hit.score) for hit in hits]
    order = sorted(range(len(scored)), key=lambda i: -scored[i].score)   # sorted() is stable
    return [scored[i] for i in order[:k]]


def rerank_hits(rows: Sequence[Sequence[Any]], options: RerankOptions, k: int) -> list[list[Any]]:
    return [rerank_row(row, options.weight, k) for row in rows]


__all__ = ["DEFAULT_DEPTH", "DEFAULT_WEIGHT", "RerankOptions", "combined_score", "rerank_hits", "rerank_row"]
