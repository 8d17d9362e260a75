"""Streaming access to a Parquet or CSV listing of inputs (image paths, feature files, captions, metadata).

A listing is read by row range, one shard at a time, so memory does not grow with its length: Parquet
through its row groups, CSV through pyarrow's streaming reader (skipping earlier batches). Caption columns
are read as raw bytes so that a non-UTF-8 caption becomes one failure row instead of failing the file.

Column roles (the first name found wins; every other column is pass-through metadata):
    image path:   image, image_path, path, filepath, file_name, filename (relative to --image-root or the
                  listing's folder)
    feature file: features (a .npy file [R, F] per row, for region-feature models)
    caption:      caption, text, sentence
    ids:          id (the row's image id, or caption id when the listing has only captions), image_id,
                  caption_id
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hrem.data.sources.source import check_non_negative

IMAGE_COLUMNS = ("image", "image_path", "path", "filepath", "file_name", "filename")
CAPTION_COLUMNS = ("caption", "text", "sentence")
FEATURE_COLUMN = "features"
ID_COLUMNS = ("id", "image_id", "caption_id")
CSV_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class ListingColumns:
    image: str | None
    features: str | None
    caption: str | None
    ids: tuple[str, ...]            # which of ID_COLUMNS are present
    metadata: tuple[str, ...]

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(c for c in (self.image, self.features, self.caption) if c)


def listing_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise ValueError(f"{path}: expected a .parquet or .csv listing, found suffix {suffix!r}")


def _csv_reader(path: Path, columns: list[str] | None, caption: str | None) -> pacsv.CSVStreamingReader:
    types = {caption: pa.binary()} if caption else {}
    for name in ID_COLUMNS:
        types[name] = pa.int64()
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                          parse_options=pacsv.ParseOptions(delimiter=delimiter),
                          convert_options=pacsv.ConvertOptions(column_types=types, include_columns=columns))


def listing_schema(path: Path) -> pa.Schema:
    if listing_format(path) == "parquet":
        return pq.ParquetFile(path).schema_arrow
    try:
        return _csv_reader(path, None, None).schema
    except pa.ArrowInvalid as exc:
        raise _csv_id_error(path, exc) from None


def _csv_id_error(path: Path, exc: Exception) -> ValueError:
    """pyarrow names the column but not the row of a bad value; find the first one (error path only)."""
    import csv

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        for row, record in enumerate(csv.DictReader(handle, delimiter=delimiter), start=1):
            for name in ID_COLUMNS:
                value = (record.get(name) or "").strip()
                if name in record and not value.lstrip("-").isdigit():
                    return ValueError(f"{path}: column '{name}', row {row} (line {row + 1}): expected an integer "
                                      f"id, found {value!r}")
    return ValueError(f"{path}: could not read the listing: {exc}")


def detect_columns(path: Path) -> ListingColumns:
    names = listing_schema(path).names
    image = next((c for c in IMAGE_COLUMNS if c in names), None)
    caption = next((c for c in CAPTION_COLUMNS if c in names), None)
    features = FEATURE_COLUMN if FEATURE_COLUMN in names else None
    if not (image or caption or features):
        raise ValueError(f"{path}: expected an image column ({', '.join(IMAGE_COLUMNS)}), a "
                         f"'{FEATURE_COLUMN}' column or a caption column ({', '.join(CAPTION_COLUMNS)}); "
                         f"found columns {names}")
    ids = tuple(c for c in ID_COLUMNS if c in names)
    used = {image, caption, features, *ids}
    return ListingColumns(image, features, caption, ids, tuple(c for c in names if c not in used))


def iter_listing(path: Path, columns: list[str] | None = None, caption: str | None = None):
    """Record batches of the listing, in order, reading only `columns`."""
    if listing_format(path) == "parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=columns, use_threads=False)
        return
    yield from _csv_reader(path, columns, caption)


def scan_ids(path: Path, cols: ListingColumns) -> tuple[int, dict[str, np.ndarray]]:
    """One streaming pass over the id columns only: (row count, {id column: int64 values})."""
    if listing_format(path) == "parquet" and not cols.ids:
        return pq.ParquetFile(path).metadata.num_rows, {}
    rows = 0
    parts: dict[str, list[np.ndarray]] = {name: [] for name in cols.ids}
    read = list(cols.ids) or [cols.roles[0]]
    try:
        for batch in iter_listing(path, read, cols.caption if read == [cols.caption] else None):
            for name in cols.ids:
                parts[name].append(_checked_ids(path, name, batch.column(name), rows))
            rows += batch.num_rows
    except pa.ArrowInvalid as exc:     # e.g. "CSV conversion error to int64: invalid value 'x'"
        raise _csv_id_error(path, exc) if listing_format(path) == "csv" else ValueError(f"{path}: {exc}") from None
    return rows, {name: np.concatenate(p) if p else np.zeros(0, np.int64) for name, p in parts.items()}


def _checked_ids(path: Path, name: str, column: pa.Array, first_row: int) -> np.ndarray:
    """int64 ids of one batch; ids are non-negative (FAISS uses -1 for "no result", so a negative id would
    be embedded and indexed but never returned). Rows are numbered from 1, the header not counted."""
    if column.null_count:
        row = first_row + 1 + column.is_null().to_numpy(zero_copy_only=False).argmax()
        raise ValueError(f"{path}: column '{name}', row {row}: expected an integer id, found an empty value")
    values = _whole_numbers(path, name, column.to_numpy(zero_copy_only=False), first_row)
    check_non_negative(values, lambda row: f"{path}: column '{name}', row {first_row + 1 + row}")
    return values


def _whole_numbers(path: Path, name: str, values: np.ndarray, first_row: int) -> np.ndarray:
    """int64 of an integer column, or of a float column holding whole numbers (pandas writes an integer
    column as float once it had a gap); a fraction, or a value int64 cannot hold, is refused with its row."""
    if np.issubdtype(values.dtype, np.integer) and not (values.dtype.kind == "u" and values.size
                                                         and values.max() > np.iinfo(np.int64).max):
        return values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{path}: column '{name}': expected integer ids, found values of type {values.dtype} "
                         f"(first: {values[:1].tolist()})")
    floats = values.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(floats) | (floats != np.round(floats)) | (np.abs(floats) >= 2.0 ** 63))
    if bad.size:
        raise ValueError(f"{path}: column '{name}', row {first_row + 1 + bad[0]}: expected an integer id "
                         f"(0 .. 2^63-1), found {values[bad[0]]}")
    return floats.astype(np.int64)


def read_rows(path: Path, start: int, stop: int, caption: str | None) -> pa.Table:
    """Rows [start, stop) of the listing as one Arrow table, touching only the batches that overlap."""
    if listing_format(path) == "parquet":
        return _parquet_rows(pq.ParquetFile(path), start, stop)
    batches, offset = [], 0
    for batch in iter_listing(path, None, caption):
        end = offset + batch.num_rows
        if end > start and offset < stop:
            batches.append(batch.slice(max(start - offset, 0), min(stop, end) - max(start, offset)))
        offset = end
        if offset >= stop:
            break
    return pa.Table.from_batches(batches) if batches else pa.table({})


def _parquet_rows(pf: pq.ParquetFile, start: int, stop: int) -> pa.Table:
    groups, first_row, offset = [], None, 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if offset + n > start and offset < stop:
            groups.append(g)
            first_row = offset if first_row is None else first_row
        offset += n
    if not groups:
        return pf.schema_arrow.empty_table()
    table = pf.read_row_groups(groups, use_threads=False)
    return table.slice(start - first_row, stop - start)
