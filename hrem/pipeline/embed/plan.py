"""The shard plan: the input split deterministically, by input order, into shards of a fixed size.

Shard i of a modality holds source rows [i * size, min((i + 1) * size, count)) and is written to
`<modality>/part-%05d.parquet`. The plan depends only on the counts and sizes, so a re-run (or another
engine) produces the same tasks; the plan is recorded in the manifest before the first shard is written.
"""
from __future__ import annotations

from dataclasses import dataclass

from hrem.store import shard_name


@dataclass(frozen=True)
class ShardTask:
    modality: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return shard_name(self.index)

    @property
    def rows(self) -> int:
        return self.stop - self.start


def plan_shards(counts: dict[str, int], sizes: dict[str, int]) -> list[ShardTask]:
    """All shard tasks, images first then captions, each in input order."""
    tasks = []
    for modality in sorted(counts, key=lambda m: (m != "images", m)):
        count, size = counts[modality], sizes[modality]
        if size <= 0:
            raise ValueError(f"shard size of {modality}: expected a positive integer, found {size}")
        for index, start in enumerate(range(0, count, size)):
            tasks.append(ShardTask(modality, index, start, min(start + size, count)))
    return tasks


def plan_summary(counts: dict[str, int], sizes: dict[str, int]) -> dict[str, dict[str, int]]:
    """What the manifest records: per modality the item count, the shard size and the number of shards."""
    return {m: {"count": counts[m], "shard_size": sizes[m], "shards": -(-counts[m] // sizes[m])}
            for m in sorted(counts)}
