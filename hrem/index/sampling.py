"""Seeded uniform samples across ALL shards, for IVF/PQ training and tuning queries.

autofaiss trains on the first rows of the first files (autofaiss#99); when shards follow the input order
(by folder, date, source) that sample is biased. Here positions are drawn uniformly without replacement
from the global row range [0, N) using the row counts in the manifest, mapped to (shard, local position),
and read through `read_rows_at`, which touches only the row groups holding sampled rows.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hrem.store import Manifest, read_rows_at


def sample_positions(shard_rows: Sequence[int], size: int, seed: int) -> list[np.ndarray]:
    """Per-shard sorted local positions of a uniform sample of `size` rows out of sum(shard_rows)."""
    total = int(sum(shard_rows))
    size = min(int(size), total)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=size, replace=False)) if size else np.empty(0, np.int64)
    bounds = np.cumsum([0, *shard_rows])
    owner = np.searchsorted(bounds, chosen, side="right") - 1
    return [chosen[owner == s] - bounds[s] for s in range(len(shard_rows))]


def read_sample(emb_dir: str | Path, modality: str, manifest: Manifest, size: int, seed: int,
                shards: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 vectors) of a uniform random sample of `size` rows over the given shards (default all)."""
    records = [r for r in manifest.records(modality) if shards is None or r.name in shards]
    per_shard = sample_positions([r.rows for r in records], size, seed)
    total = sum(len(p) for p in per_shard)
    # filled in place: concatenating per-shard arrays would hold the sample twice (2 GiB at 1M x 512-d)
    ids, vectors = np.empty(total, np.int64), np.empty((total, manifest.dim), np.float32)
    start = 0
    for record, positions in zip(records, per_shard):
        if positions.size:
            shard_ids, shard_vectors = read_rows_at(emb_dir, modality, record.name, positions, manifest)
            ids[start:start + len(shard_ids)] = shard_ids
            vectors[start:start + len(shard_ids)] = shard_vectors
            start += len(shard_ids)
    return ids, vectors


__all__ = ["read_sample", "sample_positions"]
