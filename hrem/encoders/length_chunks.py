"""Run a text backbone on length-sorted sub-batches, each cut to its own longest caption.

A training batch of 128 captions is padded to its longest one (ShapesRef: ~20 of 34 tokens are real, so
~40 % of the backbone's FLOPs go to padding, which every consumer masks). Sorting the rows by length and
running the backbone on a few equal-size chunks, each truncated to its own maximum, gives the same states
at every real token (the backbone is per-sequence; padding is masked out of attention) for ~60 % of the
work; the chunks are re-padded and put back in the caller's row order, with zeros at padding positions
(as the frozen-feature cache returns them). Gradients flow through the re-assembly unchanged.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

BackboneFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def plan_chunks(lengths: torch.Tensor, max_chunks: int = 4, min_rows: int = 16,
                min_saving: float = 0.1) -> list[torch.Tensor] | None:
    """Row-index chunks (ascending length) or None when chunking would save < `min_saving` of the tokens."""
    count = min(max_chunks, lengths.numel() // min_rows)
    if count < 2:
        return None
    order = torch.argsort(lengths, stable=True)
    chunks = list(torch.tensor_split(order, count))
    chunked = sum(len(c) * int(lengths[c].max()) for c in chunks)
    if chunked > (1 - min_saving) * lengths.numel() * int(lengths.max()):
        return None
    return chunks


def is_right_padded(attention_mask: torch.Tensor) -> bool:
    lengths = attention_mask.sum(dim=1, keepdim=True)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None]
    return bool(torch.equal(attention_mask.bool(), positions < lengths))


def run_length_chunked(backbone: BackboneFn, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       max_chunks: int = 4) -> torch.Tensor:
    """[B, L, H] = backbone(input_ids, attention_mask) at real tokens, zeros at padding."""
    lengths = attention_mask.sum(dim=1)
    chunks = plan_chunks(lengths, max_chunks) if is_right_padded(attention_mask) else None
    if chunks is None:
        return backbone(input_ids, attention_mask)
    width = input_ids.shape[1]
    parts = []
    for rows in chunks:
        cut = int(lengths[rows].max())
        states = backbone(input_ids[rows, :cut], attention_mask[rows, :cut])
        states = states * attention_mask[rows, :cut, None].to(states.dtype)     # zeros at padding
        parts.append(F.pad(states, (0, 0, 0, width - cut)))
    inverse = torch.argsort(torch.cat(chunks))
    return torch.cat(parts)[inverse]
