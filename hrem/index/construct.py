"""The three mechanical steps of a build: make the empty index, train it on a sample, add shards with ids.

Ids are always the Parquet `id`s: IVF indices store them natively (`add_with_ids`); every other index is
wrapped in an IndexIDMap2 (which also allows `reconstruct(id)`, used for small filtered searches).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from hrem.index.coarse import train_two_level, uses_two_level
from hrem.index.exact import faiss_metric
from hrem.index.sampling import read_sample
from hrem.store import Manifest, iter_shard_batches

log = logging.getLogger(__name__)

PQ_MIN_TRAIN = 256 * 39  # 8-bit PQ: 256 centroids per sub-quantizer, FAISS warns below 39 points each
SQ_TRAIN_ROWS = 65536    # scalar quantizers only learn per-dimension ranges


def make_index(factory: str, dim: int, metric: str) -> tuple[faiss.Index, str | None]:
    """(empty index, id-map wrapper name or None) for a factory string."""
    try:
        index = faiss.index_factory(dim, factory, faiss_metric(metric))
    except RuntimeError as exc:
        raise ValueError(f"factory {factory!r}: FAISS cannot build it for dim {dim}: "
                         f"{str(exc).strip().splitlines()[-1]}") from None
    if faiss.try_extract_index_ivf(index) is not None:
        return index, None
    if isinstance(index, faiss.IndexIDMap):
        return index, "IDMap2" if isinstance(index, faiss.IndexIDMap2) else "IDMap"
    return faiss.IndexIDMap2(index), "IDMap2"


def train_rows(index: faiss.Index, factory: str, n: int, per_list: int, cap: int) -> int:
    """Training sample size: per_list x nlist for IVF (at least 39 x nlist), enough for PQ codebooks."""
    if index.is_trained:
        return 0
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return min(n, SQ_TRAIN_ROWS)
    rows = max(39 * ivf.nlist, min(per_list * ivf.nlist, cap))
    if "PQ" in factory.split(",")[-1]:
        rows = max(rows, PQ_MIN_TRAIN)
    return min(n, rows)


def train_index(index: faiss.Index, factory: str, emb_dir: str | Path, modality: str, manifest: Manifest,
                shards: Sequence[str], per_list: int, cap: int, seed: int, device: str) -> dict[str, Any]:
    """Train on a seeded uniform sample over `shards`; return the facts recorded in index.json."""
    records = [r for r in manifest.records(modality) if r.name in shards]
    n = sum(r.rows for r in records)
    rows = train_rows(index, factory, n, per_list, cap)
    if rows == 0:
        return {"sample_rows": 0, "sampling": "not needed (index needs no training)", "seed": seed, "seconds": 0.0}
    start = time.perf_counter()
    _, sample = read_sample(emb_dir, modality, manifest, rows, seed, shards=list(shards))
    sampled = time.perf_counter()
    log.info("training %s on %d sampled vectors", factory, len(sample))
    if device == "cuda":
        _use_gpu_kmeans(index)
        index.train(sample)
    elif uses_two_level(index):
        train_two_level(index, sample, seed)
    else:
        index.train(sample)
    done = time.perf_counter()
    return {"sample_rows": len(sample), "seed": seed, "seconds": round(done - start, 3),
            "sample_seconds": round(sampled - start, 3), "train_seconds": round(done - sampled, 3),
            "kmeans": "two-level" if uses_two_level(index) and device != "cuda" else "faiss",
            "sampling": f"uniform without replacement over all {n} rows of {len(records)} shard(s)"}


def require_gpu() -> None:
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        raise RuntimeError("--device cuda: this FAISS build has no GPU support or no GPU is visible "
                           f"(faiss {faiss.__version__}, GPUs seen: {faiss.get_num_gpus()}); install the "
                           "faiss-gpu wheel (pip install 'hrem[gpu]') or use --device cpu")


def _use_gpu_kmeans(index: faiss.Index) -> None:
    # The FAISS wiki's recipe: only the k-means of IVF training runs on the GPU (the index stays on CPU, so
    # HNSW quantizers, on-disk lists and write_index all keep working).
    require_gpu()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        log.info("--device cuda: %s has no k-means to train; building on CPU", type(index).__name__)
        return
    ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(ivf.d))


def add_shards(index: faiss.Index, emb_dir: str | Path, modality: str, shards: Sequence[str],
               manifest: Manifest, batch_rows: int) -> int:
    """Stream the shards' (ids, vectors) into `index` batch by batch; return the rows added."""
    added, current = 0, None
    for name, ids, vectors in iter_shard_batches(emb_dir, modality, batch_rows, shards, manifest):
        if name != current:
            log.info("adding %s/%s", modality, name)
            current = name
        index.add_with_ids(np.ascontiguousarray(vectors), ids)
        added += len(ids)
    return added


__all__ = ["add_shards", "make_index", "require_gpu", "train_index", "train_rows"]
