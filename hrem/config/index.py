"""Options of the index stage (`hrem index`, `hrem.index.build_index`), validated into a frozen dataclass.

Memory sizes are strings such as "4G", "512M" or "1.5T" (powers of 1024, an optional trailing "B"), or a
plain number of bytes; `parse_memory` turns them into bytes. Stdlib only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from hrem.config.base import ConfigError, require

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_MEMORY_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)B?\s*$", re.IGNORECASE)


def parse_memory(value: str | float, where: str = "max_memory") -> int:
    """'4G' -> 4 * 1024**3 bytes; ints and floats are taken as bytes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigError(f"{where}: expected a positive size, found {value!r}")
        return int(value)
    match = _MEMORY_RE.match(str(value))
    if not match:
        raise ConfigError(f"{where}: expected a size such as '4G', '512M' or a byte count, found {value!r}")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size <= 0:
        raise ConfigError(f"{where}: expected a positive size, found {value!r}")
    return size


@dataclass(frozen=True)
class IndexBuildConfig:
    """Everything `build_index` needs besides the two folders."""

    modality: str = "images"                # which embeddings sub-folder is indexed
    factory: str = "auto"                   # "auto" or a FAISS index_factory string ("HNSW32,Flat", ...)
    metric: Literal["ip", "l2"] = "ip"      # inner product for L2-normalised embeddings
    max_memory: str = "4G"                  # RAM budget of the finished index (auto choice, on-disk switch)
    target_recall: float = 0.95             # recall@10 vs exact that tuning must reach
    seed: int = 0                           # training sample and tuning queries
    device: Literal["cpu", "cuda"] = "cpu"  # cuda: train IVF k-means on the GPU (faiss GPU build needed)
    append: bool = False                    # add only the shards not yet in the index
    on_disk: bool = False                   # IVF only: per-shard-group parts merged with merge_ondisk
    batch_rows: int = 65536                 # rows read per Parquet batch while adding (bounded memory)
    train_rows_per_list: int = 64           # training sample = this x nlist (FAISS: 30-256), capped
    max_train_rows: int = 1_000_000         # cap on the training sample
    tune_queries: int = 1000                # held-out queries used for tuning and the recall/QPS report
    shards_per_part: int = 4                # on-disk build: shards added per part file before the merge
    threads: int = 0                        # faiss OpenMP threads; 0 = leave FAISS's default
    engine: Literal["local", "ray"] = "local"  # ray: the part files of an on-disk build as Ray tasks
    ray_address: str = ""                   # engine ray: join this cluster ("" = start a local one)
    pilot_rows: int = 100_000               # auto under a budget: database sample each candidate is tuned on

    def validate(self) -> None:
        require(bool(re.fullmatch(r"[A-Za-z0-9_\-]+", self.modality)),
                f"modality: expected a folder name such as 'images' or 'captions', found {self.modality!r}")
        require(bool(self.factory.strip()), "factory: expected 'auto' or a FAISS factory string, found ''")
        require(0.0 < self.target_recall <= 1.0,
                f"target_recall: expected a value in (0, 1], found {self.target_recall}")
        for name in ("batch_rows", "train_rows_per_list", "max_train_rows", "tune_queries", "shards_per_part",
                     "pilot_rows"):
            value = getattr(self, name)
            require(value > 0, f"{name}: expected a positive integer, found {value}")
        require(self.threads >= 0, f"threads: expected >= 0, found {self.threads}")
        require(not (self.append and self.on_disk),
                "append and on_disk: appending to an on-disk (merged) index is not supported; rebuild it")
        require(not (self.engine == "ray" and self.append),
                "engine ray: builds the parts of an on-disk index; --append runs locally (drop --engine ray)")
        parse_memory(self.max_memory)

    @property
    def max_memory_bytes(self) -> int:
        return parse_memory(self.max_memory)


__all__ = ["IndexBuildConfig", "parse_memory"]
