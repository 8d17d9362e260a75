"""Encoding, in one place: the embed job, `hrem evaluate`, training's dev evaluation and the Searcher all
turn images and captions into vectors through these functions.

Everything runs under `torch.inference_mode()` and the requested autocast precision. Captions go in
length-sorted batches: a batch pads to the length of similar captions instead of the longest caption of a
random batch; results are scattered back to the input order, so callers never see the sorting. HREM's
embeddings are per item (REFERENCE_HREM.md §0), so neither batch composition nor order changes any vector.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from hrem.data.batch import ImageBatch
from hrem.data.collate import collate_image_rows
from hrem.data.datasets import ImageDataset
from hrem.data.tokenize import TextTokenizer, TokenBatch
from hrem.utils.device import autocast


@dataclass(frozen=True)
class EncodeOptions:
    device: torch.device
    batch_size: int = 128
    workers: int = 0
    precision: str = "fp32"       # autocast precision: fp32 | bf16 | fp16


def run_encoder(call: Callable[[], torch.Tensor], options: EncodeOptions) -> np.ndarray:
    """call() under inference mode + autocast -> float32 numpy."""
    with torch.inference_mode(), autocast(options.device, options.precision):
        return call().float().cpu().numpy()


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of items with similar lengths, longest first."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def caption_batches(tokenizer: TextTokenizer, captions: Sequence[str], batch_size: int,
                    counts: Sequence[int] | None = None) -> Iterator[tuple[np.ndarray, TokenBatch]]:
    """(positions, tokens) per length-sorted batch; `counts` = tokenizer.token_counts(captions) if known."""
    counts = tokenizer.token_counts(captions) if counts is None else counts
    for batch in length_sorted_batches(counts, batch_size):
        yield batch, tokenizer([captions[i] for i in batch])


def encode_caption_batch(model: nn.Module, tokens: TokenBatch, options: EncodeOptions) -> np.ndarray:
    return run_encoder(lambda: model.encode_text(tokens.to(options.device)), options)


def encode_image_batch(model: nn.Module, images: ImageBatch, options: EncodeOptions) -> np.ndarray:
    return run_encoder(lambda: model.encode_image(images.to(options.device)), options)


def encode_captions(model: nn.Module, captions: Sequence[str], tokenizer: TextTokenizer,
                    options: EncodeOptions) -> np.ndarray:
    """[M, D] float32 caption embeddings in the order of `captions`."""
    if not captions:
        raise ValueError("encode_captions: expected at least one caption, found none")
    out: np.ndarray | None = None
    for positions, tokens in caption_batches(tokenizer, captions, options.batch_size):
        emb = encode_caption_batch(model, tokens, options)
        if out is None:
            out = np.empty((len(captions), emb.shape[1]), dtype=np.float32)
        out[positions] = emb
    return out


def encode_images(model: nn.Module, dataset: ImageDataset, options: EncodeOptions) -> np.ndarray:
    """[N, D] float32 image embeddings, one per unique image, in row order."""
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.workers,
                        collate_fn=collate_image_rows)
    out: np.ndarray | None = None
    for images, rows in loader:
        emb = encode_image_batch(model, images, options)
        if out is None:
            out = np.empty((len(dataset), emb.shape[1]), dtype=np.float32)
        out[rows.numpy()] = emb
    if out is None:
        raise ValueError("encode_images: expected at least one image, found none")
    return out
