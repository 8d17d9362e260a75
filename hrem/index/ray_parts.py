"""The Ray engine of `hrem index --engine ray`: the part files of an on-disk build as parallel Ray tasks.

The driver trains once (on the uniform sample) and puts the serialised trained index in the object store;
each task fills the inverted lists of one group of shards (`hrem.index.ondisk.build_part`) and writes its
part file into the build's staging folder; the driver merges the parts in group order, exactly as the
local engine does. Every step is deterministic, so the index files are byte-identical to a local build.
The staging folder must be visible to every worker (one machine, or a shared filesystem).

`ray_address` joins an existing cluster; without it a local cluster is started for the build and shut
down after. Each task asks for `threads` CPUs (default 1) and runs FAISS on that many threads.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from hrem.index.ondisk import build_part, part_groups, part_path
from hrem.store import Manifest

log = logging.getLogger(__name__)


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--engine ray needs Ray: pip install 'hrem[ray]' (or 'ray[data]')") from exc
    return ray


def _part_task(blob: np.ndarray, emb_dir: str, modality: str, group: list[str], manifest: Manifest,
               path: str, batch_rows: int, threads: int) -> str:
    faiss.omp_set_num_threads(threads)
    trained = faiss.deserialize_index(blob)
    return str(build_part(trained, emb_dir, modality, group, manifest, Path(path), batch_rows))


def build_parts_ray(trained: faiss.Index, emb_dir: str | Path, modality: str, shards: Sequence[str],
                    manifest: Manifest, work_dir: Path, shards_per_part: int, batch_rows: int,
                    ray_address: str | None = None, threads: int = 1) -> list[Path]:
    """The same part files as `hrem.index.ondisk.build_parts`, built by Ray tasks."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    try:
        blob = ray.put(faiss.serialize_index(trained))
        task = ray.remote(num_cpus=max(threads, 1))(_part_task)
        groups = part_groups(shards, shards_per_part)
        log.info("ray engine: %d part task(s) of <= %d shard(s), %d CPU(s) each", len(groups), shards_per_part,
                 max(threads, 1))
        refs = [task.remote(blob, str(Path(emb_dir).resolve()), modality, group, manifest,
                            str(part_path(work_dir, number)), batch_rows, max(threads, 1))
                for number, group in enumerate(groups)]
        return [Path(p) for p in ray.get(refs)]
    finally:
        if started:
            ray.shutdown()


__all__ = ["build_parts_ray", "import_ray"]
