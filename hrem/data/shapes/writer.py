"""Worker side of generation: draw a chunk of images and write their PNGs (scene + one mask per object)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrem.data.shapes.build import build_scene
from hrem.data.shapes.png import encode_png
from hrem.data.shapes.records import image_name, mask_name, ref_id, scene_record


@dataclass(frozen=True)
class ChunkTask:
    root: Path
    seed: int
    side: int
    imgids: tuple[int, ...]
    splits: tuple[str, ...]   # the split of each imgid
    caption_version: int = 2


def _write(path: Path, data: bytes) -> None:
    # Plain writes: the whole dataset folder is renamed into place at the end, which is what makes it atomic.
    with open(path, "wb") as handle:
        handle.write(data)


def write_chunk(task: ChunkTask) -> list[dict]:
    """Render and write every image of the chunk; return their scene records (in imgid order)."""
    records = []
    for imgid, split in zip(task.imgids, task.splits):
        rendered = build_scene(task.seed, imgid, task.side, task.caption_version)
        _write(task.root / "images" / image_name(imgid), encode_png(np.asarray(rendered.image)))
        for obj, mask in zip(rendered.scene.objects, rendered.masks):
            _write(task.root / mask_name(ref_id(imgid, obj.index)), encode_png(np.asarray(mask)))
        records.append(scene_record(rendered.scene, split))
    return records
