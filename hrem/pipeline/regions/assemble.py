"""Turning the recorded shards of one split into the SCAN/BUTD precomp files:

    {split}_ims.npy     float32 [N, R, F'] region rows (detector features [+ 5 geometry columns])
    {split}_boxes.npy   float32 [N, R, 4] x1, y1, x2, y2 in original-image pixels
    {split}_scores.npy  float32 [N, R] detection confidence
    {split}_ids.txt     one image id per line (the input's ids: Karpathy imgid, listing id)
    {split}_caps.txt    5 captions per image, caption i belongs to image i // 5 (Karpathy inputs only)

N counts the images that could be read; the others are rows of failures.parquet, and their captions are
left out with them. Each file is written under a temporary name and renamed, large arrays through a
memory map (bounded memory whatever N).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from hrem.data.sources import Source
from hrem.pipeline.regions.runner import read_shard
from hrem.utils.files import atomic_path, write_text_atomic

CAPTIONS_PER_IMAGE = 5


def _write_array(path: Path, shards: list[Path], name: str, shape_tail: tuple[int, ...], total: int) -> None:
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, *shape_tail))
        start = 0
        for shard in shards:
            block = read_shard(shard)[name]
            out[start:start + len(block)] = block
            start += len(block)
        out.flush()
        del out


def captions_by_image(captions: Source | None) -> dict[int, list[str]] | None:
    """image id -> its captions in input order (None for inputs without captions)."""
    if captions is None:
        return None
    part = captions.read_all()
    grouped: dict[int, list[str]] = defaultdict(list)
    for image_id, text in zip(part.image_ids.tolist(), part.payload):
        grouped[int(image_id)].append(text.decode("utf-8") if isinstance(text, bytes) else str(text))
    return grouped


def assemble_split(out: Path, split: str, shards: list[Path], layout: dict, regions: int,
                   captions: dict[int, list[str]] | None) -> int:
    """Write the precomp files of `split` from its shards (in order); returns the number of images."""
    ids = np.concatenate([read_shard(s)["ids"] for s in shards]) if shards else np.zeros(0, np.int64)
    total = len(ids)
    _write_array(out / f"{split}_ims.npy", shards, "features", (regions, layout["row_width"]), total)
    _write_array(out / f"{split}_boxes.npy", shards, "boxes", (regions, 4), total)
    _write_array(out / f"{split}_scores.npy", shards, "scores", (regions,), total)
    write_text_atomic(out / f"{split}_ids.txt", "".join(f"{int(i)}\n" for i in ids))
    if captions is not None:
        lines = []
        for image_id in ids.tolist():
            texts = captions.get(int(image_id), [])
            if len(texts) < CAPTIONS_PER_IMAGE:
                raise ValueError(f"{split}: image id {image_id} has {len(texts)} caption(s); the precomp format "
                                 f"needs {CAPTIONS_PER_IMAGE} per image")
            lines += [t.replace("\n", " ") for t in texts[:CAPTIONS_PER_IMAGE]]
        write_text_atomic(out / f"{split}_caps.txt", "".join(f"{t}\n" for t in lines))
    return total
