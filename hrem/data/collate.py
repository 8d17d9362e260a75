"""Batching: images into an `ImageBatch`, captions tokenised in the collate and the batch sorted by length.

Tokenising here (inside DataLoader workers) keeps the training process free for the model; sorting the
batch by caption length (longest first) follows the reference and keeps padding at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from hrem.data.batch import ImageBatch
from hrem.data.datasets import CaptionItem
from hrem.data.tokenize import TokenBatch


def collate_images(images: Sequence[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]) -> ImageBatch:
    """[3, H, W] tensors -> pixels [B, 3, H, W]; [R, F] tensors -> zero-padded regions + lengths;
    (pixels [3, S, S], content [6]) pairs (letterboxed images for a detector) -> pixels + content."""
    first = images[0]
    if isinstance(first, tuple):
        return ImageBatch(pixels=torch.stack([p for p, _ in images]), content=torch.stack([c for _, c in images]))
    if first.dim() == 3:
        return ImageBatch(pixels=torch.stack(list(images)), regions=None, lengths=None)
    if first.dim() != 2:
        raise ValueError(f"image tensors: expected [3, H, W] pixels or [R, F] regions, found shape "
                         f"{tuple(first.shape)}")
    lengths = torch.tensor([im.shape[0] for im in images], dtype=torch.long)
    regions = first.new_zeros((len(images), int(lengths.max()), first.shape[1]))
    for i, im in enumerate(images):
        regions[i, : im.shape[0]] = im
    return ImageBatch(pixels=None, regions=regions, lengths=lengths)


@dataclass(frozen=True)
class TrainBatch:
    images: ImageBatch
    texts: TokenBatch
    image_rows: torch.Tensor   # [B] int64; equal values = positive pairs
    image_index: torch.Tensor | None = None   # [B] caption -> row of `images` (image-grouped batches only)

    def __len__(self) -> int:
        return int(self.image_rows.shape[0])

    def to(self, device: torch.device | str) -> "TrainBatch":
        index = None if self.image_index is None else self.image_index.to(device)
        return TrainBatch(self.images.to(device), self.texts.to(device), self.image_rows.to(device), index)


def sort_by_length(tokens: TokenBatch) -> torch.Tensor:
    """Permutation that orders captions longest first (stable, so ties keep their sampled order)."""
    return torch.argsort(tokens.lengths, descending=True, stable=True)


class TrainCollate:
    """Picklable collate: CaptionItems -> TrainBatch, captions tokenised (and augmented) then sorted."""

    def __init__(self, encode_texts: Callable[[Sequence[str]], TokenBatch]) -> None:
        self.encode_texts = encode_texts   # a TextTokenizer, or a CaptionAugmenter when training with noise

    def __call__(self, items: Sequence[CaptionItem]) -> TrainBatch:
        tokens = self.encode_texts([item.caption for item in items])
        order = sort_by_length(tokens).tolist()
        tokens = TokenBatch(tokens.input_ids[order], tokens.attention_mask[order])
        images = collate_images([items[i].image for i in order])
        rows = torch.tensor([items[i].image_row for i in order], dtype=torch.long)
        return TrainBatch(images, tokens, rows)


class GroupedTrainCollate(TrainCollate):
    """Image groups (hrem.data.datasets.ImageGroup) -> TrainBatch with each image once and `image_index`
    mapping every caption (sorted longest first, as TrainCollate) to its image."""

    def __call__(self, items) -> TrainBatch:  # type: ignore[override]
        captions = [c for item in items for c in item.captions]
        owner = torch.tensor([g for g, item in enumerate(items) for _ in item.captions], dtype=torch.long)
        tokens = self.encode_texts(captions)
        order = sort_by_length(tokens)
        tokens = TokenBatch(tokens.input_ids[order], tokens.attention_mask[order])
        rows = torch.tensor([item.image_row for item in items], dtype=torch.long)
        index = owner[order]
        return TrainBatch(collate_images([item.image for item in items]), tokens, rows[index], index)


def collate_image_rows(items: Sequence[tuple[torch.Tensor, int]]) -> tuple[ImageBatch, torch.Tensor]:
    """For ImageDataset: (ImageBatch, rows [B])."""
    return collate_images([im for im, _ in items]), torch.tensor([r for _, r in items], dtype=torch.long)
