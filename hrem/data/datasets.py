"""Retrieval datasets over the two on-disk inputs: `*_precomp` region features and Karpathy JSON + images.

`open_retrieval_split(data_dir, split)` detects the format, reads it with `hrem.data.readers` and returns
one `RetrievalSplit` with the same caption -> image mapping either way. Training iterates captions
(as the reference: an image whose captions land in the same batch appears several times, and the loss
treats all pairs sharing an image as positives); evaluation iterates unique images, each encoded once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from hrem.data.augment import drop_regions

log = logging.getLogger(__name__)

DataFormat = Literal["precomp", "images"]
PRECOMP_SPLITS = {"val": "dev", "dev": "dev", "test": "test", "testall": "testall", "train": "train"}


@dataclass(frozen=True)
class RetrievalSplit:
    """One split, whatever the format. `caption_image[j]` is the row (0..N-1) of caption j's image."""
    format: DataFormat
    split: str
    dataset: str                       # "f30k", "coco", "shapesref", ... (from the folder / JSON name)
    source: Path
    captions: list[str]
    caption_image: np.ndarray          # int64 [M]
    image_ids: np.ndarray              # int64 [N]
    features: Any = None               # [N, R, F] float32 (memmap) for precomp
    image_root: Path | None = None     # images format: paths are relative to this
    image_paths: tuple[str, ...] = ()

    @property
    def num_images(self) -> int:
        return int(len(self.image_ids))


def detect_format(data_dir: str | Path) -> DataFormat:
    """'precomp' when the folder holds `*_ims.npy`, 'images' when it holds `dataset_*.json`."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: expected a dataset folder, found no such directory")
    if any(data_dir.glob("*_ims.npy")):
        return "precomp"
    if any(data_dir.glob("dataset_*.json")):
        return "images"
    found = sorted(p.name for p in data_dir.iterdir())[:8]
    raise FileNotFoundError(f"{data_dir}: expected a *_precomp folder ({{split}}_ims.npy + {{split}}_caps.txt) "
                            f"or a Karpathy folder (dataset_*.json + images), found {found}")


def _dataset_name(data_dir: Path, fmt: DataFormat) -> str:
    if fmt == "images":
        json_name = sorted(data_dir.glob("dataset_*.json"))[0].stem
        return json_name.removeprefix("dataset_")
    return data_dir.name.removesuffix("_precomp")


def open_retrieval_split(data_dir: str | Path, split: str, image_root: str | Path | None = None) -> RetrievalSplit:
    """Read `split` ('train', 'dev'/'val', 'test', 'testall') of a precomp or Karpathy folder."""
    from hrem.data.readers import read_karpathy, read_precomp

    data_dir = Path(data_dir)
    fmt = detect_format(data_dir)
    name = _dataset_name(data_dir, fmt)
    if fmt == "precomp":
        if split not in PRECOMP_SPLITS:
            raise ValueError(f"{data_dir}: unknown split '{split}'; expected one of {sorted(PRECOMP_SPLITS)}")
        raw = read_precomp(data_dir, PRECOMP_SPLITS[split])
        return RetrievalSplit("precomp", split, name, Path(raw.source), list(raw.captions),
                              np.asarray(raw.caption_image, np.int64), np.asarray(raw.image_ids, np.int64),
                              features=raw.features)
    karpathy_split = "val" if split == "dev" else split
    json_path = sorted(data_dir.glob("dataset_*.json"))[0]
    raw = read_karpathy(json_path, Path(image_root) if image_root else data_dir, karpathy_split)
    return RetrievalSplit("images", split, name, json_path, list(raw.captions),
                          np.asarray(raw.caption_image, np.int64), np.asarray(raw.image_ids, np.int64),
                          image_root=Path(raw.root), image_paths=tuple(raw.image_paths))


class ImageLoader:
    """Picklable `row -> image tensor`: region features [R, F] or preprocessed pixels [3, H, W]."""

    def __init__(self, split: RetrievalSplit, preprocess: Callable[[Any], torch.Tensor] | None) -> None:
        if split.format == "images" and preprocess is None:
            raise ValueError(f"{split.source}: an image folder needs the card's image preprocessor")
        self.split = split
        self.preprocess = preprocess

    def __call__(self, row: int) -> torch.Tensor:
        if self.split.format == "precomp":
            return torch.from_numpy(np.array(self.split.features[row], dtype=np.float32))
        from PIL import Image

        path = self.split.image_root / self.split.image_paths[row]
        with Image.open(path) as image:
            return self.preprocess(image.convert("RGB"))


@dataclass(frozen=True)
class CaptionItem:
    image: torch.Tensor     # [R, F] regions or [3, H, W] pixels
    caption: str
    image_row: int          # positives share this


class CaptionDataset(Dataset):
    """Training items are captions; each brings its image (regions dropped with p when training)."""

    def __init__(self, split: RetrievalSplit, load_image: ImageLoader, region_drop_p: float = 0.0) -> None:
        self.split = split
        self.load_image = load_image
        self.region_drop_p = region_drop_p if split.format == "precomp" else 0.0

    def __len__(self) -> int:
        return len(self.split.captions)

    def __getitem__(self, index: int) -> CaptionItem:
        row = int(self.split.caption_image[index])
        image = self.load_image(row)
        if self.region_drop_p > 0:
            image = drop_regions(image, self.region_drop_p)
        return CaptionItem(image, self.split.captions[index], row)


class ImageDataset(Dataset):
    """Unique images of a split, for encoding each image once."""

    def __init__(self, split: RetrievalSplit, load_image: ImageLoader) -> None:
        self.split = split
        self.load_image = load_image

    def __len__(self) -> int:
        return self.split.num_images

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int]:
        return self.load_image(row), row
