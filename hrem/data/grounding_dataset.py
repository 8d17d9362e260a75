"""Grounding datasets over RefCOCO-style refs: letterboxed images, boxes and masks for MCN.

- `GroundingTrainSet`: one item per referred object; each time it is read, one of its sentences is drawn
  at random (K: one random expression per ref per epoch). Boxes and masks are letterboxed.
- `GroundingEvalSet`: one item per (object, sentence), the unit of REC / RES evaluation; it keeps the
  original box and mask so metrics are computed in original image pixels.
- `GroundingCollate`: stacks pixels and tokenises the sentences (inside DataLoader workers).

No augmentation: a horizontal flip would have to swap "left" and "right" in the sentence, and colour
jitter would change the colour words ShapesRef refers by.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from hrem.data.readers.refs import RefObject, read_mask
from hrem.data.tokenize import TokenBatch
from hrem.utils.images import load_image_file

# (image, box xyxy, mask | None) -> (pixels [3, S, S], box [4], mask [S, S] | None, meta); the caller passes
# hrem.vision.letterbox.SampleLetterbox (data sits below grounding in the layering, so it is injected).
Prepare = Callable[[Image.Image, np.ndarray, "np.ndarray | None"], tuple[np.ndarray, np.ndarray, Any, Any]]


@dataclass(frozen=True)
class GroundingItem:
    pixels: torch.Tensor                 # [3, S, S] letterboxed, [0, 1]
    sentence: str
    box_letterbox: torch.Tensor          # [4] x1, y1, x2, y2 in input pixels
    mask_letterbox: torch.Tensor | None  # [S, S] uint8 0/1, None when the ref has no mask
    meta: Any                            # hrem.grounding.LetterboxMeta
    box_xyxy: np.ndarray                 # [4] float64 original pixels
    mask: np.ndarray | None              # bool [H, W] original pixels
    index: int


@dataclass(frozen=True)
class GroundingBatch:
    pixels: torch.Tensor                 # [B, 3, S, S]
    tokens: TokenBatch
    boxes_letterbox: torch.Tensor        # [B, 4]
    masks_letterbox: torch.Tensor | None  # [B, S, S] (None unless every item has a mask)
    metas: list[Any]                     # LetterboxMeta per sample
    boxes_xyxy: np.ndarray               # [B, 4] original pixels
    masks: list[np.ndarray] | None
    sentences: list[str]
    indices: list[int]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def ref_box_xyxy(ref: RefObject) -> np.ndarray:
    x, y, w, h = ref.bbox_xywh
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def load_item(ref: RefObject, sentence: str, prepare: Prepare, index: int) -> GroundingItem:
    """Read and letterbox one (object, sentence) sample."""
    box = ref_box_xyxy(ref)
    mask = read_mask(ref.mask_path) if ref.mask_path is not None else None
    image = load_image_file(ref.image_path)      # pixel budget checked from the header before decoding
    if mask is not None and mask.shape != (image.height, image.width):
        raise ValueError(f"{ref.mask_path}: expected a {image.height}x{image.width} mask like its image "
                         f"{ref.image_path}, found {mask.shape[0]}x{mask.shape[1]}")
    pixels, box_lb, mask_lb, meta = prepare(image, box, mask)
    mask_lb = None if mask_lb is None else torch.from_numpy(np.asarray(mask_lb, dtype=np.uint8))
    box_lb = torch.from_numpy(np.asarray(box_lb, dtype=np.float32))
    return GroundingItem(torch.from_numpy(pixels), sentence, box_lb, mask_lb, meta, box, mask, index)


class GroundingTrainSet(Dataset):
    """One item per referred object, with a random sentence each time (torch RNG: seeded per worker)."""

    def __init__(self, refs: Sequence[RefObject], prepare: Prepare, input_size: int) -> None:
        if not refs:
            raise ValueError("grounding training split: expected at least one referred object, found none")
        self.refs, self.prepare, self.input_size = list(refs), prepare, input_size

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> GroundingItem:
        ref = self.refs[index]
        choice = int(torch.randint(len(ref.sentences), ())) if len(ref.sentences) > 1 else 0
        return load_item(ref, ref.sentences[choice], self.prepare, index)

    def letterbox_boxes_wh(self) -> np.ndarray:
        """[N, 2] widths and heights of every training box in input pixels (for k-means anchors)."""
        out = np.zeros((len(self.refs), 2), dtype=np.float64)
        for row, ref in enumerate(self.refs):
            with Image.open(ref.image_path) as image:
                width, height = image.size
            scale = self.input_size / max(width, height)
            out[row] = (ref.bbox_xywh[2] * scale, ref.bbox_xywh[3] * scale)
        return out


class GroundingEvalSet(Dataset):
    """One item per (object, sentence); `limit` keeps the first samples (a quick dev evaluation)."""

    def __init__(self, refs: Sequence[RefObject], prepare: Prepare, limit: int | None = None) -> None:
        self.samples = [(ref, s) for ref in refs for s in ref.sentences][:limit]
        if not self.samples:
            raise ValueError("grounding evaluation split: expected at least one expression, found none")
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> GroundingItem:
        ref, sentence = self.samples[index]
        return load_item(ref, sentence, self.prepare, index)


class GroundingCollate:
    """Items -> GroundingBatch; `tokenizer` maps a list of sentences to a TokenBatch."""

    def __init__(self, tokenizer: Callable[[list[str]], TokenBatch]) -> None:
        self.tokenizer = tokenizer

    def __call__(self, items: Sequence[GroundingItem]) -> GroundingBatch:
        sentences = [item.sentence for item in items]
        has_masks = all(item.mask_letterbox is not None for item in items)
        return GroundingBatch(
            pixels=torch.stack([item.pixels for item in items]),
            tokens=self.tokenizer(sentences),
            boxes_letterbox=torch.stack([item.box_letterbox for item in items]),
            masks_letterbox=torch.stack([item.mask_letterbox for item in items]) if has_masks else None,
            metas=[item.meta for item in items],
            boxes_xyxy=np.stack([item.box_xyxy for item in items]),
            masks=[item.mask for item in items] if has_masks else None,
            sentences=sentences,
            indices=[item.index for item in items],
        )

