"""The SCAN/BUTD `*_precomp` folder: `{split}_ims.npy` [N, R, F] region features (memory-mapped),
`{split}_caps.txt` (5 captions per image, caption i belongs to image i // 5) and optional `{split}_ids.txt`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrem.data.readers.common import require_file
from hrem.data.splits import precomp_split

CAPTIONS_PER_IMAGE = 5
PRECOMP_SPLITS = ("train", "dev", "test", "testall")


@dataclass(frozen=True)
class PrecompSplit:
    features: np.ndarray        # [N, R, F] float memmap (float32 in the SCAN release)
    captions: list[str]         # [5N]
    caption_image: np.ndarray   # int64 [5N], row of the caption's image in `features`
    image_ids: np.ndarray       # int64 [N], from {split}_ids.txt when present, else 0..N-1
    source: Path                # the folder


def _load_features(path: Path) -> np.ndarray:
    require_file(path, "the region features of this split")
    try:
        features = np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise ValueError(f"{path}: expected a .npy array, found an unreadable file ({exc})") from None
    if features.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D array [images, regions, features], found shape {features.shape}")
    if not np.issubdtype(features.dtype, np.floating):
        raise ValueError(f"{path}: expected float features, found dtype {features.dtype}")
    return features


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: expected UTF-8 text, found an invalid byte at offset {exc.start}") from None
    lines = text.splitlines()
    empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if empty:
        raise ValueError(f"{path}: expected one non-empty caption per line, found empty line(s) {empty[:5]}")
    return lines


def _read_ids(path: Path, n_images: int, features_path: Path) -> np.ndarray:
    """Image ids, one per image; a file with one id per caption (5 equal ids per image) is accepted too."""
    if not path.is_file():
        return np.arange(n_images, dtype=np.int64)
    values = path.read_text(encoding="utf-8").split()
    try:
        ids = np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        bad = next(v for v in values if not v.lstrip("-").isdigit())
        raise ValueError(f"{path}: expected integer image ids, found {bad!r}") from None
    if len(ids) == CAPTIONS_PER_IMAGE * n_images and n_images > 0:
        groups = ids.reshape(n_images, CAPTIONS_PER_IMAGE)
        if (groups != groups[:, :1]).any():
            row = int(np.nonzero((groups != groups[:, :1]).any(axis=1))[0][0])
            raise ValueError(f"{path}: one id per caption must repeat 5 times per image; image {row} has "
                             f"ids {groups[row].tolist()}")
        return groups[:, 0].copy()
    if len(ids) != n_images:
        raise ValueError(f"{path}: expected {n_images} image ids (one per image in {features_path.name}), "
                         f"found {len(ids)}")
    return ids


def read_precomp(folder: str | Path, split: str) -> PrecompSplit:
    """Read one split of a precomp folder, validating array shape, caption count and ids."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory (expected a *_precomp folder)")
    name = precomp_split(split)
    if name not in PRECOMP_SPLITS:
        found = sorted(p.name.removesuffix("_ims.npy") for p in folder.glob("*_ims.npy"))
        raise ValueError(f"{folder}: unknown precomp split {split!r}; expected one of {list(PRECOMP_SPLITS)} "
                         f"(splits with features here: {found})")
    features_path = folder / f"{name}_ims.npy"
    features = _load_features(features_path)
    captions_path = folder / f"{name}_caps.txt"
    require_file(captions_path, "the captions of this split")
    captions = _read_lines(captions_path)
    n = features.shape[0]
    if len(captions) != CAPTIONS_PER_IMAGE * n:
        raise ValueError(f"{captions_path}: expected {CAPTIONS_PER_IMAGE * n} captions ({CAPTIONS_PER_IMAGE} per "
                         f"image for {n} images in {features_path.name}), found {len(captions)}")
    caption_image = np.arange(len(captions), dtype=np.int64) // CAPTIONS_PER_IMAGE
    image_ids = _read_ids(folder / f"{name}_ids.txt", n, features_path)
    return PrecompSplit(features, captions, caption_image, image_ids, folder)
