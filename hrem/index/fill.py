"""Filling a trained index with the shards' vectors: in RAM, or as part files merged on disk, the parts
built here one after another (engine local) or in parallel Ray tasks (engine ray). Records the seconds of
the add and merge phases in `timings`."""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import faiss

from hrem.config.index import IndexBuildConfig
from hrem.index.construct import add_shards
from hrem.index.info import IVF_DATA
from hrem.index.ondisk import build_parts, merge_parts, require_ivf
from hrem.store import Manifest


def fill_index(index: faiss.Index, on_disk: bool, cfg: IndexBuildConfig, emb_dir: Path, manifest: Manifest,
               shards: Sequence[str], staging: Path, timings: dict[str, float]) -> faiss.Index:
    start = time.perf_counter()
    if not on_disk:
        add_shards(index, emb_dir, cfg.modality, shards, manifest, cfg.batch_rows)
        timings["add"] = round(time.perf_counter() - start, 3)
        return index
    require_ivf(index)
    staging.mkdir(parents=True, exist_ok=True)
    parts = _parts(index, cfg, emb_dir, manifest, shards, staging)
    timings["add"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    merged = merge_parts(index, parts, staging / IVF_DATA)
    timings["merge"] = round(time.perf_counter() - start, 3)
    return merged


def _parts(index: faiss.Index, cfg: IndexBuildConfig, emb_dir: Path, manifest: Manifest, shards: Sequence[str],
           staging: Path) -> list[Path]:
    if cfg.engine == "ray":
        from hrem.index.ray_parts import build_parts_ray

        return build_parts_ray(index, emb_dir, cfg.modality, shards, manifest, staging, cfg.shards_per_part,
                               cfg.batch_rows, cfg.ray_address or None, threads=max(cfg.threads, 1))
    return build_parts(index, emb_dir, cfg.modality, shards, manifest, staging, cfg.shards_per_part, cfg.batch_rows)


__all__ = ["fill_index"]
