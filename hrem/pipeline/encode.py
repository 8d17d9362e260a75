"""Batch encoding of a retrieval split: every unique image once, captions in length-sorted batches.

Both run under `torch.inference_mode()` and the card's autocast. Sorting captions by token count means a
batch pads to the length of similar captions instead of the longest caption in a random batch; results
are scattered back to the input order, so callers never see the sorting. HREM's embeddings are per item
(REFERENCE_HREM.md §0), so neither the batch composition nor the order changes any embedding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from hrem.data.collate import collate_image_rows
from hrem.data.datasets import ImageDataset
from hrem.data.tokenize import TextTokenizer
from hrem.utils.device import autocast


@dataclass(frozen=True)
class EncodeOptions:
    device: torch.device
    batch_size: int = 128
    workers: int = 0
    precision: str = "fp32"       # autocast precision: fp32 | bf16 | fp16


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of items with similar lengths, longest first."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def encode_captions(model: nn.Module, captions: Sequence[str], tokenizer: TextTokenizer,
                    options: EncodeOptions) -> np.ndarray:
    """[M, D] float32 caption embeddings in the order of `captions`."""
    if not captions:
        raise ValueError("encode_captions: expected at least one caption, found none")
    out: np.ndarray | None = None
    counts = tokenizer.token_counts(captions)
    with torch.inference_mode(), autocast(options.device, options.precision):
        for batch in length_sorted_batches(counts, options.batch_size):
            tokens = tokenizer([captions[i] for i in batch]).to(options.device)
            emb = model.encode_text(tokens).float().cpu().numpy()
            if out is None:
                out = np.empty((len(captions), emb.shape[1]), dtype=np.float32)
            out[batch] = emb
    return out


def encode_images(model: nn.Module, dataset: ImageDataset, options: EncodeOptions) -> np.ndarray:
    """[N, D] float32 image embeddings, one per unique image, in row order."""
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.workers,
                        collate_fn=collate_image_rows)
    out: np.ndarray | None = None
    with torch.inference_mode(), autocast(options.device, options.precision):
        for images, rows in loader:
            emb = model.encode_image(images.to(options.device)).float().cpu().numpy()
            if out is None:
                out = np.empty((len(dataset), emb.shape[1]), dtype=np.float32)
            out[rows.numpy()] = emb
    if out is None:
        raise ValueError("encode_images: expected at least one image, found none")
    return out
