"""Per-epoch batch order that a resumed run can re-create and skip into.

Each epoch's permutation depends only on (seed, epoch), so a run killed after k batches of epoch e and
resumed skips exactly those k batches (by index, without loading them) and ends with the same number of
steps as an uninterrupted run. Incomplete last batches are dropped, as the reference's training loader.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


def steps_per_epoch(num_items: int, batch_size: int) -> int:
    """Full batches per epoch; a split smaller than one batch gives a single (smaller) batch."""
    if num_items <= 0:
        raise ValueError(f"training split: expected at least one caption, found {num_items}")
    return max(1, num_items // batch_size)


def epoch_permutation(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of one epoch, starting after `skip` batches."""

    def __init__(self, num_items: int, batch_size: int, seed: int, epoch: int, skip: int = 0) -> None:
        self.num_items = num_items
        self.batch_size = min(batch_size, num_items)
        self.order = epoch_permutation(num_items, seed, epoch)
        self.total = steps_per_epoch(num_items, batch_size)
        if not 0 <= skip <= self.total:
            raise ValueError(f"resume position: expected 0..{self.total} batches into the epoch, found {skip}")
        self.skip = skip

    def __len__(self) -> int:
        return self.total - self.skip

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.skip, self.total):
            yield self.order[step * self.batch_size:(step + 1) * self.batch_size].tolist()
