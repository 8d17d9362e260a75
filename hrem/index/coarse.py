"""Training the coarse quantizer of a large IVF index with two-level k-means.

Plain k-means costs n_train x nlist x dim per iteration: at 16,384 lists and 640k training vectors of 512-d
that is ~11 TFLOP per iteration, hours on a small CPU (bench_index stopped such a run after 80 minutes).
Two-level k-means (faiss.contrib.clustering, the recipe of the FAISS billion-scale benchmarks) first splits
the sample into sqrt(nlist) clusters, then splits each one into its share of the nlist centroids: the cost
drops by about sqrt(nlist) / 2. The centroids are added to the quantizer on one thread, so an HNSW
quantizer's graph -- and so every later list assignment -- is the same on every run (multi-threaded HNSW
insertion is not deterministic); the rest of training (SQ ranges, PQ codebooks) is FAISS's own.
"""
from __future__ import annotations

import logging
import math

import faiss
import numpy as np
from faiss.contrib.clustering import two_level_clustering

log = logging.getLogger(__name__)

TWO_LEVEL_MIN_LISTS = 4096  # below this, plain k-means is fast enough and FAISS's default path is kept


def uses_two_level(index: faiss.Index) -> bool:
    ivf = faiss.try_extract_index_ivf(index)
    return ivf is not None and ivf.nlist >= TWO_LEVEL_MIN_LISTS


def train_two_level(index: faiss.Index, sample: np.ndarray, seed: int) -> None:
    """Train `index` (an IVF, possibly under a pre-transform) on `sample` with two-level coarse k-means."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        for number in range(index.chain.size()):
            transform = index.chain.at(number)
            if not transform.is_trained:
                transform.train(sample)
            sample = transform.apply(sample)
        train_two_level(index.index, sample, seed)
        index.is_trained = True
        return
    ivf = faiss.extract_index_ivf(index)
    groups = int(math.sqrt(ivf.nlist))
    log.info("two-level k-means: %d x %d -> %d groups -> %d lists", len(sample), sample.shape[1], groups, ivf.nlist)
    centroids, _ = two_level_clustering(sample, groups, ivf.nlist, seed=seed)
    ivf.quantizer.train(centroids)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        ivf.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(threads)
    index.train(sample)  # the quantizer is full, so FAISS trains only the codes (SQ ranges / PQ codebooks)


__all__ = ["TWO_LEVEL_MIN_LISTS", "train_two_level", "uses_two_level"]
