"""`VectorSearcher`: vectors in, (scores, ids) out, with the tuned parameters and metadata filters.

    searcher = VectorSearcher("hrem-out/index")            # emb_dir defaults to the one in index.json
    scores, ids = searcher.search(queries, k=10)             # float32 [Q, D] -> [Q, k'], [Q, k']
    scores, ids = searcher.search(queries, 10, filter="split = 'test' and width >= 100")
    scores, ids = searcher.search(queries, 10, filter=pc.field("split") == "test")     # built in Python
    rows = searcher.metadata(ids[0])                         # pyarrow.Table of those ids, in order

A filter is filter-language text (hrem.store.where, docs/filters.md; checked against the metadata
columns, never run as code), a pyarrow compute expression over the embeddings' metadata columns (both
evaluated with hrem.store.select_ids) or an array of allowed ids. The allowed ids become a
faiss.IDSelectorBatch passed through per-call SearchParameters, which flat, IVF and HNSW indices honour
inside the scan. A selective filter (at most `exact_filter_rows` ids) is answered exactly instead: IDMap2
indices reconstruct the allowed vectors and brute-force them, IVF indices scan every list (nprobe = nlist)
-- graph and list pruning would otherwise miss most of a tiny allowed set.

Results: k' = min(k, candidates); columns that are -1 in every row are dropped; a row can still hold -1
where an approximate index found fewer than k' neighbours (`search_lists` removes them per query).
Scores are inner products (higher first) or squared L2 distances (lower first), as in index.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hrem.index.exact import exact_search
from hrem.index.info import IndexInfo
from hrem.index.loading import check_indexed_shards, load_index
from hrem.index.params import exhaustive, index_kind, search_parameters
from hrem.store import load_manifest, read_metadata, select_ids, shard_path
from hrem.utils.hash_stamps import sha256_files_cached

Filter = str | pc.Expression | np.ndarray | list | None


class VectorSearcher:
    def __init__(self, index_dir: str | Path, emb_dir: str | Path | None = None, mmap: bool = False,
                 exact_filter_rows: int = 4096) -> None:
        self.index, self.info = load_index(index_dir, mmap=mmap, emb_dir=emb_dir)
        self.emb_dir = Path(emb_dir) if emb_dir is not None else Path(self.info.embeddings.path)
        verify_indexed_shards(self.emb_dir, self.info, Path(index_dir))
        self.modality = self.info.modality
        self.exact_filter_rows = exact_filter_rows

    @property
    def dim(self) -> int:
        return self.info.dim

    def _check_queries(self, queries: Any) -> np.ndarray:
        queries = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries: expected shape [Q, {self.dim}] (index dim), found {queries.shape}")
        if not np.isfinite(queries).all():
            raise ValueError("queries: contain NaN or infinite values")
        return queries

    def allowed_ids(self, filter: Filter) -> np.ndarray:
        """The ids a filter allows (sorted, unique)."""
        if isinstance(filter, (str, pc.Expression)):
            return select_ids(self.emb_dir, self.modality, filter)
        return np.unique(np.asarray(filter, dtype=np.int64))

    def search(self, queries: Any, k: int = 10, filter: Filter = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k'], ids [Q, k']) of the k nearest vectors, optionally among allowed ids only."""
        queries = self._check_queries(queries)
        if k <= 0:
            raise ValueError(f"k: expected a positive integer, found {k}")
        if filter is None:
            scores, ids = self.index.search(queries, min(k, max(self.index.ntotal, 1)))
            return _trim(scores, ids)
        allowed = self.allowed_ids(filter)
        if allowed.size == 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        k = min(k, allowed.size)
        if allowed.size <= self.exact_filter_rows:
            return _trim(*self._search_small_subset(queries, k, allowed))
        params = search_parameters(self.index, self.info.search_params, faiss.IDSelectorBatch(allowed))
        return _trim(*self.index.search(queries, k, params=params))

    def _search_small_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray,
                             ) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.index, faiss.IndexIDMap2):
            present = allowed[np.isin(allowed, faiss.vector_to_array(self.index.id_map))]
            vectors = self.index.reconstruct_batch(present) if present.size else np.empty((0, self.dim), np.float32)
            return exact_search(queries, vectors, k, self.info.metric, ids=present)
        params = dict(self.info.search_params)
        if index_kind(self.index) == "ivf":
            params.update(exhaustive(self.index))
        selector = faiss.IDSelectorBatch(allowed)
        return self.index.search(queries, k, params=search_parameters(self.index, params, selector))

    def search_lists(self, queries: Any, k: int = 10, filter: Filter = None,
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query (scores, ids) with every -1 slot removed."""
        scores, ids = self.search(queries, k, filter)
        return [(s[i >= 0], i[i >= 0]) for s, i in zip(scores, ids)]

    def metadata(self, ids: Any, columns: list[str] | None = None) -> pa.Table:
        """Metadata rows (no embedding column) of result ids, in the order given; -1 ids are skipped."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        try:
            return read_metadata(self.emb_dir, self.modality, ids[ids >= 0], columns)
        except KeyError as exc:     # a row the index returns is gone: the shards changed after the build
            raise ValueError(f"{exc.args[0]}: the index returned them but the embeddings no longer hold them; "
                             f"rebuild the index with `hrem index`") from None


def verify_indexed_shards(emb_dir: Path, info: IndexInfo, index_dir: Path) -> None:
    """Every shard the index was built from must still be listed and on disk with its SHA-256, so that the
    ids and metadata a search returns are the rows that were indexed (an edited key or a dropped row would
    otherwise be returned as is, or end in a missing-id error). Hashed once per file version
    (hrem.utils.hash_stamps)."""
    check_indexed_shards(info, load_manifest(emb_dir), index_dir)
    paths = [shard_path(emb_dir, info.modality, shard.name) for shard in info.shards]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; the index was built from it (index.json lists it); "
                                    f"rebuild the index or point --embeddings at the right folder")
    for path, shard, found in zip(paths, info.shards, sha256_files_cached(paths)):
        if found != shard.sha256:
            raise ValueError(f"{path}: expected sha256 {shard.sha256} (the shard the index was built from), found "
                             f"{found}; the embeddings changed after the build -- rebuild with `hrem index`")


def _trim(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = (ids >= 0).any(axis=0)
    last = int(np.flatnonzero(keep)[-1]) + 1 if keep.any() else 0
    return scores[:, :last], ids[:, :last]


__all__ = ["VectorSearcher"]
