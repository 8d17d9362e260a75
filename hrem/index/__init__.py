"""FAISS indices over an embeddings directory (numpy, pyarrow, faiss only; never torch or the model).

Index directory (PRODUCT.md): `index.faiss` (ids = the Parquet `id`s) + `index.json` (hrem.index.info),
plus `index.ivfdata` for on-disk IVF indices.

Public API:
    build_index(emb_dir, out_dir, modality="images", factory="auto", metric="ip", max_memory="4G",
                target_recall=0.95, seed=0, device="cpu", append=False, on_disk=False, ...) -> IndexInfo
    load_index(index_dir, mmap=False, emb_dir=None) -> (faiss.Index, IndexInfo)
    VectorSearcher(index_dir, emb_dir=None, mmap=False).search(queries, k, filter=None) -> (scores, ids)
    exact_search(queries, database, k, metric, ids) / exact_search_stream(queries, batches, k, metric)
    choose_factory(n, dim, max_memory_bytes, target_recall) -> FactoryChoice(factory, bytes, reason, on_disk)
    read_info(index_dir) -> IndexInfo;  recall_at_k(found_ids, true_ids, k)
"""
from hrem.index.build import build_index
from hrem.index.choose import FactoryChoice, choose_factory, estimate_bytes, nlist_for
from hrem.index.exact import exact_search, exact_search_stream, recall_at_k
from hrem.index.info import EmbeddingsRef, IndexedShard, IndexInfo, read_info
from hrem.index.loading import load_index
from hrem.index.searcher import VectorSearcher

__all__ = [
           "EmbeddingsRef",
           "FactoryChoice",
           "IndexInfo",
           "IndexedShard",
           "VectorSearcher",
           "build_index",
           "choose_factory",
           "estimate_bytes",
           "exact_search",
           "exact_search_stream",
           "load_index",
           "nlist_for",
           "read_info",
           "recall_at_k",
]
