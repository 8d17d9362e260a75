"""`failures.parquet`: one row per input that could not be embedded, so nothing is dropped silently.

Columns: `modality` string, `shard` string (the shard the input belonged to), `source_index` int64 (the
input's position in the source listing), `key` string, `reason` string. `record_failures` replaces the rows
of one (modality, shard) pair, so re-running a shard on resume does not duplicate its failures; rows are
kept sorted so the file is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hrem.utils.files import atomic_path

FAILURES = "failures.parquet"
SCHEMA = pa.schema([("modality", pa.string()), ("shard", pa.string()), ("source_index", pa.int64()),
                    ("key", pa.string()), ("reason", pa.string())])


@dataclass(frozen=True)
class Failure:
    source_index: int
    key: str
    reason: str


def read_failures(emb_dir: str | Path) -> pa.Table:
    """All failure rows (an empty table when the file does not exist yet)."""
    path = Path(emb_dir) / FAILURES
    if not path.is_file():
        return SCHEMA.empty_table()
    table = pq.read_table(path, use_threads=False)
    if not table.schema.equals(SCHEMA):
        raise ValueError(f"{path}: expected columns {SCHEMA}, found {table.schema}")
    return table


def record_failures(emb_dir: str | Path, modality: str, shard: str, failures: list[Failure]) -> int:
    """Replace the failure rows of (modality, shard) with `failures`; write atomically; return total rows."""
    existing = read_failures(emb_dir)
    same = pc.and_(pc.equal(existing["modality"], modality), pc.equal(existing["shard"], shard))
    kept = existing.filter(pc.invert(same))
    new = pa.table({"modality": [modality] * len(failures), "shard": [shard] * len(failures),
                    "source_index": [f.source_index for f in failures], "key": [f.key for f in failures],
                    "reason": [f.reason for f in failures]}, schema=SCHEMA)
    table = pa.concat_tables([kept, new]).sort_by([("modality", "ascending"), ("shard", "ascending"),
                                                   ("source_index", "ascending")])
    with atomic_path(Path(emb_dir) / FAILURES) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table.num_rows


__all__ = ["FAILURES", "Failure", "read_failures", "record_failures"]
