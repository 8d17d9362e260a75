"""Writing and verifying shard files `<emb_dir>/<modality>/part-NNNNN.parquet`.

A shard appears complete or not at all (temporary name, fsync, rename). Its bytes depend only on the table:
pyarrow writes no timestamps, and the writer options below are fixed, so re-running a shard reproduces the
same file and the same SHA-256 -- which is what lets the embed job skip finished shards on resume.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hrem.store.manifest import ShardRecord
from hrem.store.schema import check_schema
from hrem.utils.files import atomic_path, sha256_file

log = logging.getLogger(__name__)

# Row groups of 8192 rows: at 1024-d float32 one group is 32 MiB, the unit a reader has to hold in memory.
ROW_GROUP_ROWS = 8192
# zstd: about 5% smaller than uncompressed for float32 vectors, much smaller for ids/keys/metadata, and
# no slower to read (see docs/index.md for the measurement).
COMPRESSION = "zstd"


def shard_name(shard_index: int) -> str:
    if shard_index < 0:
        raise ValueError(f"shard_index: expected >= 0, found {shard_index}")
    return f"part-{shard_index:05d}.parquet"


def shard_path(emb_dir: str | Path, modality: str, name: str) -> Path:
    return Path(emb_dir) / modality / name


def write_shard(emb_dir: str | Path, modality: str, shard_index: int, table: pa.Table,
                timings: dict[str, float] | None = None, compression: str = COMPRESSION) -> ShardRecord:
    """Write `table` (see hrem.store.schema) as shard `shard_index` of `modality`, atomically.

    `timings` (e.g. {"read": s, "encode": s}) is copied into the record together with the measured "write".
    """
    name = shard_name(shard_index)
    path = shard_path(emb_dir, modality, name)
    check_schema(table.schema, where=f"shard table for {path}")
    start = time.perf_counter()
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression, row_group_size=ROW_GROUP_ROWS,
                       write_statistics=["id"], store_schema=True)
    all_timings = {**(timings or {}), "write": round(time.perf_counter() - start, 4)}
    record = ShardRecord(name=name, rows=table.num_rows, sha256=sha256_file(path),
                         bytes=path.stat().st_size, timings=all_timings)
    log.debug("wrote %s (%d rows, %d bytes)", path, record.rows, record.bytes)
    return record


def verify_shard(emb_dir: str | Path, modality: str, record: ShardRecord) -> bool:
    """True when the shard file exists with the recorded size and SHA-256 (the resume test)."""
    path = shard_path(emb_dir, modality, record.name)
    if not path.is_file() or path.stat().st_size != record.bytes:
        return False
    return sha256_file(path) == record.sha256


def check_shard(emb_dir: str | Path, modality: str, record: ShardRecord) -> None:
    """Like verify_shard but raises an error naming the file and what differs."""
    path = shard_path(emb_dir, modality, record.name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: listed in manifest.json but missing")
    size = path.stat().st_size
    if size != record.bytes:
        raise ValueError(f"{path}: expected {record.bytes} bytes (manifest.json), found {size}")
    digest = sha256_file(path)
    if digest != record.sha256:
        raise ValueError(f"{path}: expected sha256 {record.sha256} (manifest.json), found {digest}")


__all__ = [
    "COMPRESSION",
    "ROW_GROUP_ROWS",
    "check_shard",
    "shard_name",
    "shard_path",
    "verify_shard",
    "write_shard",
]
