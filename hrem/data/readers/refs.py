"""RefCOCO-style referring-expression files in the SimREC layout (`{split: [entry, ...]}`, or a plain list
of entries), with per-object masks as `.npy` (refer-style preprocessing) or `.png` (ShapesRef).

Entry: {"iid", "bbox": [x, y, w, h], "cat_id", "refs": [sentence, ...], "mask_id",
        optional "file_name", "category", "mask" (path relative to the dataset root or mask_root)}.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrem.data.readers.common import check_files_exist, load_json_file, pick_split
from hrem.data.splits import refs_splits

REQUIRED_KEYS = ("iid", "bbox", "cat_id", "refs", "mask_id")


@dataclass(frozen=True)
class RefObject:
    ref_id: int                                  # the entry's mask_id
    image_id: int                                # iid
    image_path: Path
    bbox_xywh: tuple[float, float, float, float]
    category: str                                # "category" when given, else str(cat_id)
    sentences: tuple[str, ...]
    mask_path: Path | None
    cat_id: int = -1


def _entries(data: object, split: str, source: Path) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        key = pick_split(split, data.keys(), source, refs_splits(split))
        if not isinstance(data[key], list):
            raise ValueError(f"{source}: split {key!r}: expected a list of entries, found {type(data[key]).__name__}")
        return data[key]
    raise ValueError(f"{source}: expected {{split: [entry, ...]}} or a list of entries, found {type(data).__name__}")


def _check_entry(entry: object, where: str) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object, found {type(entry).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; found keys {sorted(entry)}")
    bbox = entry["bbox"]
    numbers = isinstance(bbox, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    if not numbers or len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[2] <= 0 or bbox[3] <= 0:
        raise ValueError(f"{where}.bbox: expected 4 finite numbers [x, y, w, h] with w > 0 and h > 0, found {bbox!r}")
    refs = entry["refs"]
    if not isinstance(refs, list) or not refs or not all(isinstance(s, str) and s.strip() for s in refs):
        raise ValueError(f"{where}.refs: expected a non-empty list of non-empty sentences, found {refs!r}")


def _dataset_root(path: Path) -> Path:
    # ShapesRef keeps refs in DIR/refs/{split}.json and mask paths relative to DIR.
    return path.parent.parent if path.parent.name == "refs" else path.parent


def _mask_path(entry: dict, path: Path, mask_root: Path | None) -> Path | None:
    if entry.get("mask"):
        return (mask_root if mask_root is not None else _dataset_root(path)) / entry["mask"]
    if mask_root is None:
        return None
    npy = mask_root / f"{entry['mask_id']}.npy"
    png = mask_root / f"{entry['mask_id']}.png"
    return png if png.is_file() and not npy.is_file() else npy


def _ref_object(entry: dict, path: Path, image_root: Path, mask_root: Path | None) -> RefObject:
    iid = int(entry["iid"])
    image = image_root / (entry.get("file_name") or f"COCO_train2014_{iid:012d}.jpg")
    category = entry.get("category")
    return RefObject(ref_id=int(entry["mask_id"]), image_id=iid, image_path=image,
                     bbox_xywh=tuple(float(v) for v in entry["bbox"]),
                     category=str(category) if category is not None else str(entry["cat_id"]),
                     sentences=tuple(s.strip() for s in entry["refs"]), mask_path=_mask_path(entry, path, mask_root),
                     cat_id=int(entry["cat_id"]))


def read_refs(path: str | Path, split: str, image_root: str | Path, mask_root: str | Path | None = None,
              check_files: bool = True) -> list[RefObject]:
    """Read and validate one split's referred objects; images and masks must exist (unless check_files
    is False)."""
    path, image_root = Path(path), Path(image_root)
    mask_root = Path(mask_root) if mask_root is not None else None
    entries = _entries(load_json_file(path), split, path)
    refs = []
    for index, entry in enumerate(entries):
        _check_entry(entry, f"{path}: entry {index}")
        refs.append(_ref_object(entry, path, image_root, mask_root))
    if check_files:
        check_files_exist(sorted({r.image_path for r in refs}), path, f"images under {image_root}")
        check_files_exist([r.mask_path for r in refs if r.mask_path is not None], path, "mask files")
    return refs


def expand_sentences(refs: list[RefObject]) -> list[tuple[RefObject, str]]:
    """One (object, sentence) sample per expression, the unit of REC/RES evaluation."""
    return [(ref, sentence) for ref in refs for sentence in ref.sentences]


def read_mask(path: str | Path) -> np.ndarray:
    """A binary [H, W] bool mask from a .npy (values may exceed 1 where polygons overlap) or an image file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such mask file")
    if path.suffix == ".npy":
        mask = np.load(path)
    else:
        from hrem.utils.images import load_image_file

        mask = np.asarray(load_image_file(path, mode="L"))  # pixel budget from the header, then decode
    if mask.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D mask, found shape {mask.shape}")
    return mask > 0
