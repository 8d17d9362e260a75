"""Reading an embeddings directory with bounded memory.

- `iter_embeddings(emb_dir, modality, batch_rows)` yields (ids int64 [n], embeddings float32 [n, D]) batch
  by batch across the manifest's shards, reading only the two needed columns; memory is one batch plus one
  Parquet row group. `iter_shard_batches` does the same for named shards and also yields the shard name.
- `read_rows_at(emb_dir, modality, shard, positions)` reads the rows at given positions of one shard,
  touching only the row groups that contain them (training samples, tuning queries).
- `read_metadata(emb_dir, modality, ids, columns)` returns the rows for result ids, in the order asked.
- `select_ids(emb_dir, modality, expression)` evaluates a pyarrow compute expression or a filter-language
  text (hrem.store.where) on the metadata columns and returns the ids of the matching rows (metadata
  filters for search); `metadata_schema` gives the columns such a filter may use.
- `count_rows`, `find_duplicate_ids` (error naming both shards).

Every shard is checked against the manifest (dim, dtype, row count) before it is used. Parquet is read with
use_threads=False: pyarrow's thread pool and the OpenMP runtime bundled with faiss-cpu abort the process at
interpreter exit when both are active, and these reads are I/O-bound anyway.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from hrem.store.manifest import Manifest, ShardRecord, load_manifest
from hrem.store.schema import EMBEDDING, check_schema, embeddings_to_numpy, ids_to_numpy
from hrem.store.shards import shard_path
from hrem.store.where import parse_where


def _records(manifest: Manifest, modality: str, shards: Sequence[str] | None,
             emb_dir: str | Path) -> list[ShardRecord]:
    records = manifest.records(modality)
    if not records and shards is None:
        raise FileNotFoundError(f"{Path(emb_dir) / 'manifest.json'}: no '{modality}' shards listed "
                                f"(modalities present: {manifest.modalities})")
    if shards is None:
        return list(records)
    by_name = {r.name: r for r in records}
    missing = [name for name in shards if name not in by_name]
    if missing:
        raise ValueError(f"{Path(emb_dir) / 'manifest.json'}: shards {missing} of '{modality}' are not listed")
    return [by_name[name] for name in shards]


def open_shard(emb_dir: str | Path, modality: str, record: ShardRecord, manifest: Manifest) -> pq.ParquetFile:
    """Open one shard and check it against the manifest (schema, dim, dtype, row count)."""
    path = shard_path(emb_dir, modality, record.name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: listed in manifest.json but missing")
    parquet = pq.ParquetFile(path)
    check_schema(parquet.schema_arrow, where=str(path), dim=manifest.dim, dtype=manifest.dtype)
    if parquet.metadata.num_rows != record.rows:
        raise ValueError(f"{path}: expected {record.rows} rows (manifest.json), found {parquet.metadata.num_rows}")
    return parquet


def iter_shard_batches(emb_dir: str | Path, modality: str, batch_rows: int = 65536,
                       shards: Sequence[str] | None = None, manifest: Manifest | None = None,
                       ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield (shard name, ids [n], embeddings float32 [n, D]) for the given shards (default: all)."""
    manifest = manifest or load_manifest(emb_dir)
    for record in _records(manifest, modality, shards, emb_dir):
        parquet = open_shard(emb_dir, modality, record, manifest)
        where = str(shard_path(emb_dir, modality, record.name))
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=["id", EMBEDDING], use_threads=False):
            yield record.name, ids_to_numpy(batch.column(0)), embeddings_to_numpy(batch.column(1), where)


def iter_embeddings(emb_dir: str | Path, modality: str, batch_rows: int = 65536,
                    shards: Sequence[str] | None = None, manifest: Manifest | None = None,
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (ids int64 [n], embeddings float32 [n, D]) across shards, at most `batch_rows` rows at a time."""
    for _, ids, vectors in iter_shard_batches(emb_dir, modality, batch_rows, shards, manifest):
        yield ids, vectors


def read_rows_at(emb_dir: str | Path, modality: str, shard: str, positions: np.ndarray,
                 manifest: Manifest | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, embeddings float32) of the rows at `positions` (0-based, within the shard), in sorted order."""
    manifest = manifest or load_manifest(emb_dir)
    record = _records(manifest, modality, [shard], emb_dir)[0]
    positions = np.unique(np.asarray(positions, dtype=np.int64))
    if positions.size and (positions[0] < 0 or positions[-1] >= record.rows):
        raise ValueError(f"{shard}: positions must lie in [0, {record.rows}), found "
                         f"[{positions[0]}, {positions[-1]}]")
    parquet = open_shard(emb_dir, modality, record, manifest)
    starts = np.cumsum([0] + [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)])
    groups = np.searchsorted(starts, positions, side="right") - 1
    ids, vectors = [], []
    for group in np.unique(groups):
        local = positions[groups == group] - starts[group]
        table = parquet.read_row_group(int(group), columns=["id", EMBEDDING], use_threads=False)
        table = table.take(pa.array(local))
        ids.append(ids_to_numpy(table.column("id")))
        vectors.append(embeddings_to_numpy(table.column(EMBEDDING), shard))
    if not ids:
        return np.empty(0, np.int64), np.empty((0, manifest.dim), np.float32)
    return np.concatenate(ids), np.concatenate(vectors)


def _dataset(emb_dir: str | Path, modality: str, manifest: Manifest) -> ds.Dataset:
    files = [str(shard_path(emb_dir, modality, r.name)) for r in _records(manifest, modality, None, emb_dir)]
    return ds.dataset(files, format="parquet")


def read_metadata(emb_dir: str | Path, modality: str, ids: Iterable[int], columns: Sequence[str] | None = None,
                  manifest: Manifest | None = None) -> pa.Table:
    """Rows for `ids` in the order given (all non-embedding columns unless `columns` is set).

    Raises KeyError naming the ids that are not in the modality's shards.
    """
    manifest = manifest or load_manifest(emb_dir)
    wanted = np.asarray(list(ids), dtype=np.int64)
    dataset = _dataset(emb_dir, modality, manifest)
    names = list(columns) if columns is not None else [n for n in dataset.schema.names if n != EMBEDDING]
    if "id" not in names:
        names = ["id", *names]
    table = dataset.to_table(columns=names, filter=pc.field("id").isin(pa.array(np.unique(wanted))),
                             use_threads=False)
    found = ids_to_numpy(table.column("id"))
    order = np.argsort(found, kind="stable")
    slots = np.searchsorted(found[order], wanted)
    slots = np.minimum(slots, max(len(found) - 1, 0))
    hit = (found[order][slots] == wanted) if len(found) else np.zeros(len(wanted), bool)
    if not hit.all():
        missing = wanted[~hit][:10].tolist()
        raise KeyError(f"{Path(emb_dir) / modality}: ids {missing} not found")
    return table.take(pa.array(order[slots]))


def metadata_schema(emb_dir: str | Path, modality: str, manifest: Manifest | None = None) -> pa.Schema:
    """The columns a filter may use: the shards' schema without the embedding column."""
    return _filterable(_dataset(emb_dir, modality, manifest or load_manifest(emb_dir)).schema)


def _filterable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if f.name != EMBEDDING])


def select_ids(emb_dir: str | Path, modality: str, expression: pc.Expression | str,
               manifest: Manifest | None = None) -> np.ndarray:
    """Sorted unique ids of the rows where `expression` is true: a pyarrow expression
    (pc.field("split") == "test") or filter-language text ("split = 'test'", hrem.store.where; checked
    against the shards' columns and types)."""
    manifest = manifest or load_manifest(emb_dir)
    dataset = _dataset(emb_dir, modality, manifest)
    if isinstance(expression, str):
        expression = parse_where(expression, _filterable(dataset.schema))
    try:
        table = dataset.to_table(columns=["id"], filter=expression, use_threads=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"filter {expression}: cannot be evaluated on {Path(emb_dir) / modality} "
                         f"(columns {dataset.schema.names}): {exc}") from None
    return np.unique(ids_to_numpy(table.column("id")))


def count_rows(emb_dir: str | Path, modality: str, manifest: Manifest | None = None) -> int:
    """Rows of a modality according to the manifest (0 when the modality is absent)."""
    return (manifest or load_manifest(emb_dir)).rows(modality)


def find_duplicate_ids(emb_dir: str | Path, modality: str, shards: Sequence[str] | None = None,
                       manifest: Manifest | None = None) -> None:
    """Raise ValueError naming an id and the two shards holding it, if any id occurs twice."""
    manifest = manifest or load_manifest(emb_dir)
    ids, owners = [], []
    names = [r.name for r in _records(manifest, modality, shards, emb_dir)]
    for number, name in enumerate(names):
        column = pq.read_table(shard_path(emb_dir, modality, name), columns=["id"], use_threads=False)["id"]
        ids.append(ids_to_numpy(column))
        owners.append(np.full(len(ids[-1]), number, dtype=np.int32))
    if not ids:
        return
    all_ids, all_owners = np.concatenate(ids), np.concatenate(owners)
    order = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[order]
    repeats = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if repeats.size:
        first, second = order[repeats[0]], order[repeats[0] + 1]
        a, b = names[all_owners[first]], names[all_owners[second]]
        where = f"in both {a} and {b}" if a != b else f"twice in {a}"
        raise ValueError(f"{Path(emb_dir) / modality}: id {int(all_ids[first])} occurs {where} "
                         f"({repeats.size} duplicate id(s) in total); ids must be unique across shards")


__all__ = [
    "count_rows",
    "find_duplicate_ids",
    "iter_embeddings",
    "iter_shard_batches",
    "open_shard",
    "read_metadata",
    "read_rows_at",
    "select_ids",
]
