"""Retrieval datasets over any input of hrem.data.sources: `*_precomp` region features, Karpathy JSON +
images, or a listing (image files or .npy feature files + captions).

`open_retrieval_split(data, split)` opens the input's sources and returns one `RetrievalSplit` with the
same caption -> image mapping whatever the format. Training iterates captions (as the reference: an image
whose captions land in the same batch appears several times, and the loss treats all pairs sharing an
image as positives); evaluation iterates unique images, each encoded once. Unlike the embed job, which
records unreadable inputs as failures, training and evaluation refuse an input with refused image keys or
captions of unknown images.
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
from hrem.data.readers.common import check_files_exist
from hrem.data.sources import FEATURE_FILES, FEATURE_ROWS, Source, detect_input, open_sources
from hrem.data.sources.folders import karpathy_json
from hrem.utils.images import load_image_file

log = logging.getLogger(__name__)

DataFormat = Literal["precomp", "images", "feature_files"]
_FORMAT_OF_KIND = {FEATURE_ROWS: "precomp", FEATURE_FILES: "feature_files"}


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
    image_files: tuple[str, ...] = ()  # images / feature_files: one file per image row (inside the image root)

    @property
    def num_images(self) -> int:
        return int(len(self.image_ids))


def _dataset_name(data: Path) -> str:
    fmt = detect_input(data)
    if fmt == "karpathy":
        return karpathy_json(data).stem.removeprefix("dataset_")
    return (data.stem if fmt == "listing" else data.name).removesuffix("_precomp")


def _caption_rows(images: Source, caption_image_ids: np.ndarray, where: Path) -> np.ndarray:
    """Each caption's image row, from its image id; captions of unknown images are an error."""
    order = np.argsort(images.ids, kind="stable")
    pos = np.searchsorted(images.ids[order], caption_image_ids).clip(0, max(images.count - 1, 0))
    rows = order[pos]
    unknown = np.flatnonzero(images.ids[rows] != caption_image_ids) if images.count else np.arange(len(rows))
    if len(unknown):
        raise ValueError(f"{where}: {len(unknown)} caption(s) name an image id that is not in the input, e.g. "
                         f"caption rows {unknown[:5].tolist()} with image ids {caption_image_ids[unknown[:5]].tolist()}")
    return rows.astype(np.int64)


def open_retrieval_split(data_dir: str | Path, split: str, image_root: str | Path | None = None) -> RetrievalSplit:
    """Read `split` ('train', 'dev'/'val', 'test', 'testall') of any retrieval input."""
    data_dir = Path(data_dir)
    sources = open_sources(data_dir, split, image_root)
    if set(sources) != {"images", "captions"}:
        raise ValueError(f"{data_dir}: retrieval needs images and captions, the input has only {sorted(sources)}")
    images, captions = sources["images"].read_all(), sources["captions"].read_all()
    if images.problems:
        first = sorted(images.problems.items())[:3]
        raise ValueError(f"{data_dir}: {len(images.problems)} image(s) cannot be read, e.g. rows {first}")
    texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in captions.payload]
    rows = _caption_rows(sources["images"], captions.image_ids, data_dir)
    fmt = _FORMAT_OF_KIND.get(sources["images"].kind, "images")
    common = dict(format=fmt, split=split, dataset=_dataset_name(data_dir), source=data_dir, captions=texts,
                  caption_image=rows, image_ids=images.ids)
    if fmt == "precomp":
        return RetrievalSplit(**common, features=images.payload)
    check_files_exist((Path(p) for p in images.payload), data_dir, f"image files of split {split!r}")
    return RetrievalSplit(**common, image_files=tuple(images.payload))


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
        if self.split.format == "feature_files":
            return torch.from_numpy(np.asarray(np.load(self.split.image_files[row]), dtype=np.float32))
        return self.preprocess(load_image_file(self.split.image_files[row]))  # pixel budget, then decode


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
        self.region_drop_p = region_drop_p if split.format != "images" else 0.0

    def __len__(self) -> int:
        return len(self.split.captions)

    def __getitem__(self, index: int) -> CaptionItem:
        row = int(self.split.caption_image[index])
        image = self.load_image(row)
        if self.region_drop_p > 0:
            image = drop_regions(image, self.region_drop_p)
        return CaptionItem(image, self.split.captions[index], row)


@dataclass(frozen=True)
class ImageGroup:
    image: torch.Tensor
    captions: list[str]
    image_row: int


class ImageGroupDataset(Dataset):
    """Image-grouped training (an hrem option, not the reference): items are images with all their
    captions, so a batch of `batch_size` captions holds batch_size // captions-per-image images, each
    encoded once per step. The reference samples captions; its images repeat only by chance."""

    def __init__(self, split: RetrievalSplit, load_image: ImageLoader, batch_size: int,
                 region_drop_p: float = 0.0) -> None:
        self.split, self.load_image = split, load_image
        self.region_drop_p = region_drop_p if split.format != "images" else 0.0
        self.captions: list[list[str]] = [[] for _ in range(split.num_images)]
        for text, row in zip(split.captions, split.caption_image.tolist()):
            self.captions[row].append(text)
        per_image = max(len(c) for c in self.captions)
        self.items_per_batch = max(2, batch_size // per_image)   # the training loop's sampler batch

    def __len__(self) -> int:
        return self.split.num_images

    def __getitem__(self, row: int) -> ImageGroup:
        image = self.load_image(row)
        if self.region_drop_p > 0:
            image = drop_regions(image, self.region_drop_p)
        return ImageGroup(image, self.captions[row], row)


class ImageDataset(Dataset):
    """Unique images of a split, for encoding each image once."""

    def __init__(self, split: RetrievalSplit, load_image: ImageLoader) -> None:
        self.split = split
        self.load_image = load_image

    def __len__(self) -> int:
        return self.split.num_images

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int]:
        return self.load_image(row), row
