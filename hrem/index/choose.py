"""Choosing a FAISS factory string from N, dim, a RAM budget and a recall target ("auto").

The memory arithmetic follows ECOSYSTEM.md §2.2 (bytes per vector, ids add 8 B in IVF lists; an IDMap2 adds
its id table and reverse map), the tiers follow the FAISS wiki "Guidelines to choose an index" and
autofaiss:

  N < flat_max_rows (50k)          Flat: exact, and brute force is fast enough at this size
  N < hnsw_max_rows (2M)           HNSW32 with Flat, SQfp16 or SQ8 storage (no training, best CPU QPS)
  larger, or HNSW does not fit     IVF{K}[_HNSW32] with Flat (N < 1M), SQ8, or PQ{m}x8 codes

Within a tier the highest-fidelity storage that fits the budget wins; a target recall of >= 0.999 asks for
exact search (Flat) whenever it fits. When nothing fits, the smallest IVF-PQ is chosen and built on disk.
The reason for the choice is returned so it can be recorded in index.json.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Rough upper bounds of recall@10 vs exact that each vector encoding allows (used only to explain a choice;
# tuning measures the real value).
_CEILING = {"Flat": 1.0, "SQfp16": 0.999, "SQ8": 0.98, "PQ": 0.9}
MIN_POINTS_PER_LIST = 39  # FAISS warns below 39 training points per centroid
IDMAP2_BYTES = 48  # id_map entry (8 B) + unordered_map reverse entry (~40 B)
HNSW_M = 32


@dataclass(frozen=True)
class FactoryChoice:
    factory: str          # a faiss.index_factory string, without any IDMap wrapper
    bytes: int            # estimated RAM of the filled index
    reason: str
    on_disk: bool = False


def nlist_for(n: int) -> int:
    """IVF list count: a power of two near 4*sqrt(N) below 1M (wiki: 4-16 sqrt N), then fixed steps."""
    if n < 1_000_000:
        k = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 1)))
        return int(max(16, min(k, max(16, n // 39))))
    if n < 10_000_000:
        return 16384
    if n < 100_000_000:
        return 65536
    return 262144


def fit_nlist(nlist: int, dim: int, max_memory: int) -> int:
    """Halve `nlist` until its minimum training sample (39 float32 vectors per list) fits in a quarter of the
    budget: 65,536 lists of 512-d need a 5 GiB sample, more than a 6 GiB budget can spare beside the index."""
    while nlist > 16 and MIN_POINTS_PER_LIST * nlist * 4 * dim > max_memory // 4:
        nlist //= 2
    return nlist


def ivf_nlist(factory: str) -> int | None:
    match = re.search(r"IVF(\d+)", factory)
    return int(match.group(1)) if match else None


def is_ivf_factory(factory: str) -> bool:
    return bool(re.search(r"(^|,)(OPQ[^,]*,)?IVF\d+", factory))


def estimate_bytes(factory: str, n: int, dim: int) -> int:
    """Estimated RAM of `factory` holding n vectors of dim d (the arithmetic of ECOSYSTEM.md §2.2)."""
    code = _code_bytes(factory.split(",")[-1], dim)
    ivf = re.search(r"IVF(\d+)(_HNSW(\d+))?", factory)
    if ivf:
        nlist = int(ivf.group(1))
        quantizer = nlist * (4 * dim + (8 * int(ivf.group(3)) if ivf.group(2) else 0))
        return int(n * (code + 8) + quantizer)
    hnsw = re.search(r"HNSW(\d+)", factory)
    links = 8 * int(hnsw.group(1)) if hnsw else 0
    return int(n * (code + links + IDMAP2_BYTES))


def _code_bytes(storage: str, dim: int) -> float:
    if storage in ("Flat", "") or storage.startswith("HNSW"):
        return 4 * dim
    if storage == "SQfp16":
        return 2 * dim
    if storage == "SQ8":
        return dim
    if storage == "SQ4":
        return dim / 2
    pq = re.fullmatch(r"PQ(\d+)(x(\d+))?\w*", storage)
    if pq:
        return int(pq.group(1)) * int(pq.group(3) or 8) / 8
    return 4 * dim  # unknown encodings: assume full precision (conservative)


def _storage(factory: str) -> str:
    last = factory.split(",")[-1]
    return "PQ" if last.startswith("PQ") else ("Flat" if last.startswith("HNSW") else last)


def _candidates(n: int, dim: int, flat_max_rows: int, hnsw_max_rows: int, max_memory: int,
                ) -> list[tuple[str, str]]:
    """(factory, tier description) in order of preference."""
    out: list[tuple[str, str]] = []
    if n < flat_max_rows:
        out.append(("Flat", f"N={n:,} < {flat_max_rows:,}: exact search is fast enough"))
    if n < hnsw_max_rows:
        tier = f"N={n:,} < {hnsw_max_rows:,}: HNSW{HNSW_M} graph, no training, best CPU QPS"
        out += [(f"HNSW{HNSW_M},{s}", tier) for s in ("Flat", "SQfp16", "SQ8")]
    nlist = fit_nlist(nlist_for(n), dim, max_memory)
    coarse = f"IVF{nlist}_HNSW32" if nlist >= 4096 else f"IVF{nlist}"
    tier = f"N={n:,}: inverted lists ({nlist} lists, ~4*sqrt(N)" + (
        ", fewer so that the training sample fits the budget)" if nlist < nlist_for(n) else ")")
    if n < 1_000_000:
        out.append((f"{coarse},Flat", tier))
    out.append((f"{coarse},SQ8", tier))
    # "np": no polysemous training -- it only serves Hamming pre-filtering (unused here) and made training
    # of IVF512,PQ64x8 on 20k vectors 5x slower in our measurement.
    out += [(f"{coarse},PQ{m}x8np", tier) for m in (128, 64, 48, 32, 16, 8) if m < dim and dim % m == 0]
    return out


def choose_factory(n: int, dim: int, max_memory: int, target_recall: float = 0.95,
                   flat_max_rows: int = 50_000, hnsw_max_rows: int = 2_000_000,
                   ivf_only: bool = False) -> FactoryChoice:
    """The factory for N vectors of `dim` dims within `max_memory` bytes (see the module docstring).

    `ivf_only` (asked for by --on-disk) restricts the choice to IVF indices, the only ones FAISS can keep on
    disk.
    """
    if n <= 0 or dim <= 0:
        raise ValueError(f"choose_factory: expected N > 0 and dim > 0, found N={n}, dim={dim}")
    budget = f"--max-memory {max_memory / 2**30:.2f} GiB"
    flat_bytes = estimate_bytes("Flat", n, dim)
    if target_recall >= 0.999 and flat_bytes <= max_memory and not ivf_only:
        return FactoryChoice("Flat", flat_bytes, f"target recall {target_recall} asks for exact search and "
                             f"Flat needs {flat_bytes / 2**30:.2f} GiB <= {budget}")
    candidates = _candidates(n, dim, flat_max_rows, hnsw_max_rows, max_memory)
    if ivf_only:
        candidates = [(f, tier) for f, tier in candidates if is_ivf_factory(f)]
    for factory, tier in candidates:
        need = estimate_bytes(factory, n, dim)
        if need <= max_memory:
            return FactoryChoice(factory, need, _reason(factory, tier, need, budget, target_recall))
    factory, tier = candidates[-1]
    need = estimate_bytes(factory, n, dim)
    return FactoryChoice(factory, need, f"{tier}; no candidate fits {budget} (smallest: {factory}, "
                         f"{need / 2**30:.2f} GiB), so it is built on disk (merge_ondisk) and memory-mapped",
                         on_disk=True)


def budget_candidates(n: int, dim: int, max_memory: int, ivf_only: bool = False, limit: int = 3,
                      flat_max_rows: int = 50_000, hnsw_max_rows: int = 2_000_000) -> list[FactoryChoice]:
    """The IVF factories (highest fidelity first, at most `limit`) that fit `max_memory`: what `auto` tunes
    on a pilot sample to choose by measured recall (hrem.index.pilot) instead of by fidelity alone."""
    budget = f"--max-memory {max_memory / 2**30:.2f} GiB"
    out = []
    for factory, tier in _candidates(n, dim, flat_max_rows, hnsw_max_rows, max_memory):
        need = estimate_bytes(factory, n, dim)
        if is_ivf_factory(factory) and need <= max_memory and len(out) < limit:
            out.append(FactoryChoice(factory, need, f"{tier}; {factory} needs ~{need / 2**30:.2f} GiB <= {budget}"))
    return out


def _reason(factory: str, tier: str, need: int, budget: str, target_recall: float) -> str:
    reason = f"{tier}; {factory} needs ~{need / 2**30:.2f} GiB <= {budget} (highest-fidelity storage that fits)"
    ceiling = _CEILING.get(_storage(factory), 1.0)
    if ceiling < target_recall:
        reason += (f"; warning: {_storage(factory)} codes usually cap recall@10 near {ceiling}, below the "
                   f"target {target_recall} -- raise --max-memory for a finer encoding")
    return reason


__all__ = ["MIN_POINTS_PER_LIST", "FactoryChoice", "budget_candidates", "choose_factory", "estimate_bytes",
           "fit_nlist", "is_ivf_factory", "ivf_nlist", "nlist_for"]
