"""The Parquet schema of an embeddings shard and the numpy <-> Arrow conversions.

Columns, in this order: `id` int64, `key` string, `image_id` int64 (captions only), pass-through metadata
columns, `embedding` fixed_size_list<float32 | float16>[D]. Conversions never loop in Python: the fixed-size
list is one contiguous values buffer that numpy views as [rows, D].
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

EMBEDDING = "embedding"
RESERVED = ("id", "key", "image_id", EMBEDDING)
DTYPES = {"float32": pa.float32(), "float16": pa.float16()}


def embedding_type(dim: int, dtype: str = "float32") -> pa.DataType:
    if dtype not in DTYPES:
        raise ValueError(f"embedding dtype: expected one of {sorted(DTYPES)}, found {dtype!r}")
    return pa.list_(DTYPES[dtype], dim)


def build_table(ids: Any, keys: Any, embeddings: np.ndarray, image_ids: Any | None = None,
                metadata: Mapping[str, Any] | pa.Table | None = None, dtype: str = "float32") -> pa.Table:
    """A shard table from numpy: ids [N] int64, keys [N] str, embeddings [N, D], optional image_ids [N]
    (captions) and pass-through metadata columns (a mapping of name -> array-like, or an Arrow table)."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings: expected a 2-D array [rows, dim], found shape {embeddings.shape}")
    rows, dim = embeddings.shape
    columns: dict[str, pa.Array] = {"id": _int64_column("id", ids, rows), "key": pa.array(list(keys), pa.string())}
    if len(columns["key"]) != rows:
        raise ValueError(f"keys: expected {rows} values (one per embedding), found {len(columns['key'])}")
    if image_ids is not None:
        columns["image_id"] = _int64_column("image_id", image_ids, rows)
    for name, column in _metadata_columns(metadata, rows).items():
        columns[name] = column
    values = np.ascontiguousarray(embeddings, dtype=np.dtype(dtype)).reshape(-1)
    columns[EMBEDDING] = pa.FixedSizeListArray.from_arrays(pa.array(values, DTYPES[dtype]), dim)
    return pa.table(columns)


def _int64_column(name: str, values: Any, rows: int) -> pa.Array:
    array = np.asarray(values)
    if array.shape != (rows,):
        raise ValueError(f"{name}: expected shape ({rows},), found {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: expected integers, found dtype {array.dtype}")
    return pa.array(array.astype(np.int64, copy=False), pa.int64())


def _metadata_columns(metadata: Mapping[str, Any] | pa.Table | None, rows: int) -> dict[str, pa.Array]:
    if metadata is None:
        return {}
    if isinstance(metadata, pa.Table):
        items = {name: metadata.column(name).combine_chunks() for name in metadata.column_names}
    else:
        items = {name: values if isinstance(values, pa.Array) else pa.array(list(values))
                 for name, values in metadata.items()}
    for name, column in items.items():
        if name in RESERVED:
            raise ValueError(f"metadata column {name!r}: the name is reserved ({', '.join(RESERVED)})")
        if len(column) != rows:
            raise ValueError(f"metadata column {name!r}: expected {rows} values, found {len(column)}")
    return items


def check_schema(schema: pa.Schema, where: str, dim: int | None = None, dtype: str | None = None) -> None:
    """Raise ValueError naming `where` unless `schema` is a valid shard schema (matching dim/dtype if given)."""
    for name, expected in (("id", pa.int64()), ("key", pa.string())):
        field = schema.field(name) if name in schema.names else None
        if field is None or field.type != expected:
            found = field.type if field is not None else "missing"
            raise ValueError(f"{where}: column '{name}': expected {expected}, found {found}")
    if "image_id" in schema.names and schema.field("image_id").type != pa.int64():
        raise ValueError(f"{where}: column 'image_id': expected int64, found {schema.field('image_id').type}")
    if EMBEDDING not in schema.names:
        raise ValueError(f"{where}: column '{EMBEDDING}': expected fixed_size_list<float>[D], found missing")
    found = schema.field(EMBEDDING).type
    if not pa.types.is_fixed_size_list(found) or found.value_type not in DTYPES.values():
        raise ValueError(f"{where}: column '{EMBEDDING}': expected fixed_size_list<float32|float16>[D], "
                         f"found {found}")
    if dim is not None and found.list_size != dim:
        raise ValueError(f"{where}: column '{EMBEDDING}': expected dim {dim} (manifest), found {found.list_size}")
    if dtype is not None and found.value_type != DTYPES[dtype]:
        raise ValueError(f"{where}: column '{EMBEDDING}': expected {dtype} (manifest), found {found.value_type}")


def embeddings_to_numpy(column: pa.Array | pa.ChunkedArray, where: str = "embedding") -> np.ndarray:
    """fixed_size_list<float>[D] -> float32 ndarray [rows, D] (zero-copy for float32 without nulls)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        raise ValueError(f"{where}: {column.null_count} null embedding(s); every row needs a vector")
    dim = column.type.list_size
    values = column.flatten()  # respects slice offsets, unlike .values
    return values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)


def ids_to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


__all__ = [
    "DTYPES",
    "EMBEDDING",
    "build_table",
    "check_schema",
    "embedding_type",
    "embeddings_to_numpy",
    "ids_to_numpy",
]
