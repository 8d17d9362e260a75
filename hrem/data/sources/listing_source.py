"""Sources of a Parquet / CSV listing (column roles in hrem.data.sources.listing), streamed per row range.

Ids: `id` is the row's image id (or caption id when the listing has only captions), `caption_id` and
`image_id` name the caption and its image; missing id columns fall back to the row number. Image paths
are keys relative to the image root (default: the listing's folder); a key outside the root becomes a
problem row (hrem.data.sources.roots), not a path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hrem.data.sources import listing
from hrem.data.sources.roots import join_under_root, key_problem
from hrem.data.sources.source import FEATURE_FILES, IMAGE_FILES, TEXTS, Source, SourceSlice


def listing_sources(path: Path, image_root: str | Path | None = None) -> dict[str, Source]:
    cols = listing.detect_columns(path)
    rows, id_columns = listing.scan_ids(path, cols)
    root = Path(image_root) if image_root else path.parent
    has_images = bool(cols.image or cols.features)
    row_index = np.arange(rows, dtype=np.int64)
    image_ids = id_columns.get("id", row_index) if has_images else None
    caption_ids = id_columns.get("caption_id", row_index if has_images else id_columns.get("id", row_index))
    caption_image = id_columns.get("image_id", image_ids)
    desc = {"format": "listing", "path": str(path), "columns": list(cols.roles), "image_root": str(root)}
    sources = {}
    if has_images:
        sources["images"] = _listing_source("images", path, cols, root, image_ids, None, desc)
    if cols.caption:
        sources["captions"] = _listing_source("captions", path, cols, root, caption_ids, caption_image, desc)
    return sources


def _listing_source(modality: str, path: Path, cols: listing.ListingColumns, root: Path, ids: np.ndarray,
                    image_ids: np.ndarray | None, desc: dict) -> Source:
    def read(start: int, stop: int) -> SourceSlice:
        table = listing.read_rows(path, start, stop, cols.caption)
        meta = table.select(list(cols.metadata)) if cols.metadata else None
        sub_ids = ids[start:stop]
        sub_image = None if image_ids is None else image_ids[start:stop]
        if modality == "captions":
            texts = table.column(cols.caption).to_pylist()
            return SourceSlice(start, sub_ids, [_text_key(t) for t in texts], texts, sub_image, meta)
        names = [None if v is None else str(v) for v in table.column(cols.image or cols.features).to_pylist()]
        problems = {pos: reason for pos, name in enumerate(names) if (reason := key_problem(name))}
        paths = [None if pos in problems else str(join_under_root(root, name)) for pos, name in enumerate(names)]
        return SourceSlice(start, sub_ids, [n or "" for n in names], paths, None, meta, problems)
    kind = TEXTS if modality == "captions" else (IMAGE_FILES if cols.image else FEATURE_FILES)
    return Source(modality, kind, ids, read, desc)


def _text_key(text: Any) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    return "" if text is None else str(text)
