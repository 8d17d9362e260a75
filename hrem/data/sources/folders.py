"""Sources of the two dataset folders: Karpathy JSON + images (ShapesRef writes one) and SCAN `*_precomp`.

Karpathy: images keyed by their path relative to the image root (default: the JSON's folder), ids =
`imgid`; captions keyed by their text, ids = `sentid`, `image_id` = `imgid`. Precomp: image ids from the
reader (the ids file or the row), features memory-mapped, keys `{split}_ims.npy#row`; caption id = caption
row, `image_id` = its image's id.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hrem.data.readers import read_karpathy, read_precomp
from hrem.data.sources.roots import join_under_root, key_problem
from hrem.data.sources.source import (
    FEATURE_ROWS,
    IMAGE_FILES,
    TEXTS,
    Source,
    array_source,
    check_non_negative,
)
from hrem.data.splits import karpathy_splits, precomp_split


def karpathy_json(data: Path) -> Path:
    found = sorted(data.glob("dataset_*.json"))
    if not found:
        raise FileNotFoundError(f"{data}: expected a Karpathy caption file dataset_*.json, found none")
    return found[0]


def karpathy_sources(data: Path, split: str, image_root: str | Path | None = None) -> dict[str, Source]:
    json_path = karpathy_json(data)
    root = Path(image_root) if image_root else data
    raw = read_karpathy(json_path, root, split, check_images=False)
    image_ids = np.asarray(raw.image_ids, np.int64)
    cap_image = image_ids[np.asarray(raw.caption_image, np.int64)]
    _check_karpathy_ids(json_path, karpathy_splits(split)[0], raw, image_ids)
    problems = {row: reason for row, key in enumerate(raw.image_paths) if (reason := key_problem(key))}
    paths = [None if row in problems else str(join_under_root(root, key)) for row, key in enumerate(raw.image_paths)]
    # image_root: the folder image keys are relative to (the web server serves images from it only)
    desc = {"format": "karpathy", "json": str(json_path), "split": karpathy_splits(split)[0],
            "image_root": str(root)}
    return {"images": array_source("images", IMAGE_FILES, image_ids, list(raw.image_paths), paths, None, desc,
                                   problems),
            "captions": array_source("captions", TEXTS, np.asarray(raw.caption_ids, np.int64),
                                     list(raw.captions), list(raw.captions), cap_image, desc)}


def precomp_sources(data: Path, split: str) -> dict[str, Source]:
    name = precomp_split(split)
    raw = read_precomp(data, name)
    image_ids = np.asarray(raw.image_ids, np.int64)
    check_non_negative(image_ids, lambda row: f"{_ids_line(data / f'{name}_ids.txt', row, len(image_ids))}: id")
    keys = [f"{name}_ims.npy#{row}" for row in range(len(image_ids))]
    cap_image = image_ids[np.asarray(raw.caption_image, np.int64)]
    desc = {"format": "precomp", "folder": str(data), "split": name, "features_shape": list(raw.features.shape)}
    return {"images": array_source("images", FEATURE_ROWS, image_ids, keys, raw.features, None, desc),
            "captions": array_source("captions", TEXTS, np.arange(len(raw.captions), dtype=np.int64),
                                     list(raw.captions), list(raw.captions), cap_image, desc)}


def _check_karpathy_ids(json_path: Path, split: str, raw, image_ids: np.ndarray) -> None:
    rows = f"{json_path}: images of split {split!r}"
    check_non_negative(image_ids, lambda r: f"{rows}, row {r + 1} ({raw.image_paths[r]}): imgid")
    caption_ids = np.asarray(raw.caption_ids, np.int64)
    image_of = np.asarray(raw.caption_image, np.int64)
    check_non_negative(caption_ids, lambda c: f"{rows}, row {image_of[c] + 1} ({raw.image_paths[image_of[c]]}), "
                                              f"caption {c + 1} of the split: sentid (missing reads as -1)")


def _ids_line(path: Path, row: int, n_images: int) -> str:
    """Where image `row`'s id is written: line row + 1, or 5 * row + 1 when the file lists one id per caption
    (hrem.data.readers.precomp accepts both)."""
    per_caption = len(path.read_text(encoding="utf-8").split()) == 5 * n_images and n_images > 0
    return f"{path}: line {5 * row + 1 if per_caption else row + 1}"
