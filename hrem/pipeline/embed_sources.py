"""Inputs of the embed job as `Source`s: one per modality, read by row range (= one shard at a time).

`open_sources(cfg)` recognises the input:
- a ShapesRef / Karpathy folder (`dataset_*.json` + images): images keyed by their path relative to the
  image root, ids = `imgid`; captions keyed by their text, ids = `sentid`, `image_id` = `imgid`;
- a `*_precomp` folder (`{split}_ims.npy` + `{split}_caps.txt`): image ids from the reader (the ids file or
  the row), features memory-mapped; caption id = caption row, `image_id` = its image's id;
- a `.parquet` / `.csv` listing (see `hrem.pipeline.embed_listing`), streamed per shard.
Ids are validated unique per modality (duplicates are an error naming ids and rows). The input
fingerprint hashes what defines the input (listing / JSON / captions file, split, the features' shape and
sampled bytes -- hashing every byte of a 100 GB feature file would cost more than embedding it).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hrem.pipeline import embed_listing as listing
from hrem.pipeline.embed_config import EmbedConfig
from hrem.utils.files import sha256_file, sha256_json

# payload kinds: what `SourceSlice.payload` holds
IMAGE_FILES, FEATURE_ROWS, FEATURE_FILES, TEXTS = "image_files", "feature_rows", "feature_files", "texts"


@dataclass(frozen=True)
class SourceSlice:
    start: int                      # source index of the first row
    ids: np.ndarray                 # int64 [n]
    keys: list[str]                 # image path / caption text (as far as decodable)
    payload: Any                    # paths | [n, R, F] array | texts (str or bytes)
    image_ids: np.ndarray | None = None
    metadata: pa.Table | None = None


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


def _array_source(modality: str, kind: str, ids: np.ndarray, keys: Sequence[str], payload: Any,
                  image_ids: np.ndarray | None, describe: dict) -> Source:
    def read(start: int, stop: int) -> SourceSlice:
        return SourceSlice(start, ids[start:stop], list(keys[start:stop]), payload[start:stop],
                           None if image_ids is None else image_ids[start:stop])
    return Source(modality, kind, ids, read, describe)


def check_unique(ids: np.ndarray, where: str) -> None:
    """Raise ValueError naming the first duplicated ids and their rows."""
    values, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if len(values) == len(ids):
        return
    dup = values[counts > 1][:5]
    rows = {int(v): np.flatnonzero(ids == v)[:4].tolist() for v in dup}
    raise ValueError(f"{where}: ids must be unique, found {int((counts > 1).sum())} duplicated id(s), "
                     f"e.g. id -> rows {rows}")


def _karpathy_sources(data: Path, cfg: EmbedConfig) -> dict[str, Source]:
    from hrem.data.readers import read_karpathy

    json_path = sorted(data.glob("dataset_*.json"))[0]
    split = "val" if cfg.split == "dev" else cfg.split
    root = Path(cfg.image_root) if cfg.image_root else data
    raw = read_karpathy(json_path, root, split)
    base = Path(raw.root)
    image_ids = np.asarray(raw.image_ids, np.int64)
    cap_image = image_ids[np.asarray(raw.caption_image, np.int64)]
    paths = [str(base / p) for p in raw.image_paths]
    # image_root: the folder image keys are relative to (the web server serves images from it only)
    desc = {"format": "karpathy", "json": str(json_path), "split": split, "image_root": str(base)}
    return {"images": _array_source("images", IMAGE_FILES, image_ids, list(raw.image_paths), paths, None, desc),
            "captions": _array_source("captions", TEXTS, np.asarray(raw.caption_ids, np.int64),
                                      list(raw.captions), list(raw.captions), cap_image, desc)}


def _precomp_sources(data: Path, cfg: EmbedConfig) -> dict[str, Source]:
    from hrem.data.readers import read_precomp

    split = "dev" if cfg.split == "val" else cfg.split
    raw = read_precomp(data, split)
    image_ids = np.asarray(raw.image_ids, np.int64)
    keys = [f"{split}_ims.npy#{row}" for row in range(len(image_ids))]
    cap_image = image_ids[np.asarray(raw.caption_image, np.int64)]
    desc = {"format": "precomp", "folder": str(data), "split": split,
            "features_shape": list(raw.features.shape)}
    return {"images": _array_source("images", FEATURE_ROWS, image_ids, keys, raw.features, None, desc),
            "captions": _array_source("captions", TEXTS, np.arange(len(raw.captions), dtype=np.int64),
                                      list(raw.captions), list(raw.captions), cap_image, desc)}


def _listing_sources(path: Path, cfg: EmbedConfig) -> dict[str, Source]:
    cols = listing.detect_columns(path)
    rows, id_columns = listing.scan_ids(path, cols)
    root = Path(cfg.image_root) if cfg.image_root else path.parent
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
        column = cols.image or cols.features
        names = [None if v is None else str(v) for v in table.column(column).to_pylist()]
        paths = [None if n is None else str(root / n) for n in names]
        return SourceSlice(start, sub_ids, [n or "" for n in names], paths, None, meta)
    kind = TEXTS if modality == "captions" else (IMAGE_FILES if cols.image else FEATURE_FILES)
    return Source(modality, kind, ids, read, desc)


def _text_key(text: Any) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    return "" if text is None else str(text)


def open_sources(cfg: EmbedConfig) -> dict[str, Source]:
    """The requested modalities of the input, ids validated unique; missing modalities are an error."""
    data = Path(cfg.data)
    if data.is_file():
        sources = _listing_sources(data, cfg)
    elif not data.is_dir():
        raise FileNotFoundError(f"{data}: expected a dataset folder or a .parquet/.csv listing, found nothing")
    elif any(data.glob("*_ims.npy")):
        sources = _precomp_sources(data, cfg)
    elif any(data.glob("dataset_*.json")):
        sources = _karpathy_sources(data, cfg)
    else:
        raise FileNotFoundError(f"{data}: expected a *_precomp folder ({{split}}_ims.npy), a Karpathy folder "
                                f"(dataset_*.json) or a listing file; found neither")
    missing = [m for m in cfg.modalities if m not in sources]
    if missing:
        raise ValueError(f"{data}: --modalities asks for {missing}, but the input has only {sorted(sources)}")
    chosen = {m: sources[m] for m in (cfg.modalities or sources)}
    for modality, source in chosen.items():
        check_unique(source.ids, f"{data} ({modality})")
    return chosen


def input_fingerprint(cfg: EmbedConfig, sources: dict[str, Source]) -> str:
    """SHA-256 over what defines the input: files' hashes, split, the shard sizes and the modalities."""
    data = Path(cfg.data)
    parts: dict[str, Any] = {"modalities": sorted(sources), "split": cfg.split,
                             "shard_sizes": {m: cfg.shard_size(m) for m in sources},
                             "counts": {m: s.count for m, s in sources.items()}}
    if data.is_file():
        parts["listing"] = sha256_file(data)
    elif any(data.glob("*_ims.npy")):
        parts["precomp"] = _precomp_digest(data, cfg.split)
    else:
        parts["karpathy"] = sha256_file(sorted(data.glob("dataset_*.json"))[0])
    return sha256_json(parts)


def _precomp_digest(data: Path, split: str) -> dict[str, str]:
    split = "dev" if split == "val" else split
    out = {}
    for path in sorted(data.glob(f"{split}_*")):
        if path.suffix == ".npy":
            out[path.name] = _sampled_digest(path)
        else:
            out[path.name] = sha256_file(path)
    return out


def _sampled_digest(path: Path, block: int = 1 << 20) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        for offset in sorted({0, max(size // 2 - block // 2, 0), max(size - block, 0)}):
            handle.seek(offset)
            digest.update(handle.read(block))
    return digest.hexdigest()
