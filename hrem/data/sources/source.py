"""`Source`: one modality of an input, read by row range (= one shard, one training split, ...).

A `SourceSlice` holds ids, keys and the payload of rows [start, stop): image file paths, region-feature
rows, feature-file paths or caption texts (`kind`). Rows whose input is unusable before any decoding (an
image key outside the image root, an empty path) carry a reason in `problems` instead of a payload, so the
embed job records them as failures and stricter readers (training) can refuse them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

# payload kinds: what `SourceSlice.payload` holds
IMAGE_FILES, FEATURE_ROWS, FEATURE_FILES, TEXTS = "image_files", "feature_rows", "feature_files", "texts"


@dataclass(frozen=True)
class SourceSlice:
    start: int                      # source index of the first row
    ids: np.ndarray                 # int64 [n]
    keys: list[str]                 # image key (relative path) / caption text (as far as decodable)
    payload: Any                    # paths (None where unusable) | [n, R, F] array | texts (str or bytes)
    image_ids: np.ndarray | None = None
    metadata: pa.Table | None = None
    problems: dict[int, str] = field(default_factory=dict)   # position -> why the row cannot be read


@dataclass(frozen=True)
class Source:
    modality: str
    kind: str
    ids: np.ndarray                 # int64 [count], all ids (8 bytes per row: the uniqueness check needs them)
    read: Callable[[int, int], SourceSlice]
    describe: dict

    @property
    def count(self) -> int:
        return len(self.ids)

    def read_all(self) -> SourceSlice:
        return self.read(0, self.count)


def array_source(modality: str, kind: str, ids: np.ndarray, keys: Sequence[str], payload: Any,
                 image_ids: np.ndarray | None, describe: dict,
                 problems: dict[int, str] | None = None) -> Source:
    """A Source over in-memory (or memory-mapped) columns."""
    problems = problems or {}

    def read(start: int, stop: int) -> SourceSlice:
        found = {i - start: reason for i, reason in problems.items() if start <= i < stop}
        return SourceSlice(start, ids[start:stop], list(keys[start:stop]), payload[start:stop],
                           None if image_ids is None else image_ids[start:stop], None, found)
    return Source(modality, kind, ids, read, describe)


def check_unique(ids: np.ndarray, where: str) -> None:
    """Raise ValueError naming the first duplicated ids and their rows."""
    values, counts = np.unique(ids, return_counts=True)
    if len(values) == len(ids):
        return
    dup = values[counts > 1][:5]
    rows = {int(v): np.flatnonzero(ids == v)[:4].tolist() for v in dup}
    raise ValueError(f"{where}: ids must be unique, found {int((counts > 1).sum())} duplicated id(s), "
                     f"e.g. id -> rows {rows}")


def check_non_negative(ids: np.ndarray, where: Callable[[int], str]) -> None:
    """Raise ValueError at the first negative id, `where(row)` naming its file, row and field: ids are
    non-negative int64 because FAISS returns -1 for "no result", so a negative id would be indexed but
    never found."""
    negative = np.flatnonzero(np.asarray(ids) < 0)
    if negative.size:
        row = int(negative[0])
        raise ValueError(f"{where(row)}: expected a non-negative integer id, found {int(ids[row])} "
                         f"({negative.size} negative id(s) in all)")
