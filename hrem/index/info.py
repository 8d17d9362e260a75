"""`index.json`: what an index directory holds and how it was built, validated on load.

    {"format": "hrem-index", "format_version": 1,
     "factory": "HNSW32,Flat", "id_map": "IDMap2" | null, "metric": "ip", "dim": 1024, "ntotal": N,
     "modality": "images", "on_disk": false, "index_bytes": size of index.faiss,
     "search_params": {"efSearch": 64},
     "auto_reason": "why auto chose the factory" | null, "estimated_bytes": ...,
     "embeddings": {"path", "manifest_sha256", "model_fingerprint", "dtype", "normalized"},
     "shards": [{"name", "sha256", "rows"}],       # exactly the shards whose vectors are in the index
     "training": {"sample_rows", "sampling", "seed", "seconds"},
     "tuning": {"recall_at_10", "target_recall", "target_reached", "qps_batch", "qps_single", "queries",
                "query_source", "params", "sweep"},
     "build_seconds", "timings": {"sample", "train", "pilot", "add", "merge", "tune"},   # index.json is written after build_seconds is taken
     "candidates": [{"factory", "pilot_factory", "recall_at_10", "qps_batch", "params", "verdict", ...}],
     "engine": "local" | "ray", "faiss_version", "device", "seed"}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hrem.config.base import from_dict, load_json, require, require_format, to_dict
from hrem.utils.files import write_json_atomic

INDEX_JSON = "index.json"
INDEX_FAISS = "index.faiss"
IVF_DATA = "index.ivfdata"
FORMAT = "hrem-index"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EmbeddingsRef:
    path: str
    manifest_sha256: str
    model_fingerprint: str
    dtype: str = "float32"
    normalized: bool = True


@dataclass(frozen=True)
class IndexedShard:
    name: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class IndexInfo:
    factory: str
    metric: Literal["ip", "l2"]
    dim: int
    ntotal: int
    modality: str
    embeddings: EmbeddingsRef
    shards: tuple[IndexedShard, ...]
    index_bytes: int
    id_map: str | None = None
    index_sha256: str = ""                  # of index.faiss; "" in index.json files written before it
    on_disk: bool = False
    search_params: dict[str, int] = field(default_factory=dict)
    auto_reason: str | None = None
    estimated_bytes: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)        # seconds per phase (sample, train, ...)
    candidates: tuple[dict[str, Any], ...] = ()                     # auto under a budget: pilot figures
    engine: str = "local"
    faiss_version: str = ""
    device: str = "cpu"
    seed: int = 0
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def validate(self) -> None:
        require_format((self.format, self.format_version), (FORMAT, FORMAT_VERSION))
        require(self.dim > 0, f"dim: expected a positive integer, found {self.dim}")
        rows = sum(s.rows for s in self.shards)
        require(rows == self.ntotal, f"ntotal: expected {rows} (sum of shard rows), found {self.ntotal}")

    def to_json(self) -> dict[str, Any]:
        return to_dict(self)


def read_info(index_dir: str | Path) -> IndexInfo:
    path = Path(index_dir) / INDEX_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no index.json; is {index_dir} an index directory written by "
                                f"`hrem index`?")
    return from_dict(IndexInfo, load_json(path), where=str(path))


def write_info(index_dir: str | Path, info: IndexInfo) -> Path:
    path = Path(index_dir) / INDEX_JSON
    write_json_atomic(path, info.to_json())
    return path


__all__ = [
    "INDEX_FAISS",
    "INDEX_JSON",
    "IVF_DATA",
    "EmbeddingsRef",
    "IndexInfo",
    "IndexedShard",
    "read_info",
    "write_info",
]
