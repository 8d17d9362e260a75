"""Detection data from a ShapesRef folder: scenes/{split}.json (objects with box, shape, colour, size).

`read_detection_split(folder, split, objects, attributes)` turns the scene graphs into `DetectionRecord`s
with label indices in the detector card's vocabularies (an object whose attribute value the card does not
know is an error naming the image and the value). `DetectionSet` loads and letterboxes each image
(through the injected `prepare`, hrem.vision.letterbox.letterbox_image); `train=True` adds random
horizontal flips -- every ShapesRef shape is left-right symmetric, and a detector has no "left" in its
labels (the grounding data must not flip: its sentences say left and right).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hrem.data.sources.roots import join_under_root
from hrem.data.splits import refs_file_split
from hrem.utils.images import load_image_file


@dataclass(frozen=True)
class DetectionRecord:
    image_path: Path
    boxes: np.ndarray                  # [K, 4] float32 x1, y1, x2, y2 original pixels
    labels: dict[str, np.ndarray]      # "object" + attributes: int64 [K]


def read_detection_split(folder: str | Path, split: str, objects: Sequence[str],
                         attributes: dict[str, Sequence[str]]) -> list[DetectionRecord]:
    folder = Path(folder)
    path = folder / "scenes" / f"{refs_file_split(split)}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no scene graphs for split {split!r} (expected a ShapesRef folder)")
    scenes = json.loads(path.read_text(encoding="utf-8"))["images"]
    vocab = {"object": list(objects), **{k: list(v) for k, v in attributes.items()}}
    records = []
    for scene in scenes:
        boxes, labels = [], {name: [] for name in vocab}
        for obj in scene["objects"]:
            x, y, w, h = obj["bbox"]
            boxes.append([x, y, x + w, y + h])
            for name, values in vocab.items():
                value = obj["shape" if name == "object" else name]
                if value not in values:
                    raise ValueError(f"{path}: image {scene['filename']}: {name} {value!r} is not in the "
                                     f"detector card's vocabulary {values}")
                labels[name].append(values.index(value))
        records.append(DetectionRecord(join_under_root(folder / "images", scene["filename"]),
                                       np.asarray(boxes, np.float32).reshape(-1, 4),
                                       {k: np.asarray(v, np.int64) for k, v in labels.items()}))
    return records


@dataclass(frozen=True)
class DetectionBatch:
    pixels: torch.Tensor               # [B, 3, S, S]
    boxes: list[torch.Tensor]          # letterbox pixels, [K_b, 4] each
    labels: list[dict[str, torch.Tensor]]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


class DetectionSet(Dataset):
    """Letterboxed images + boxes; `prepare(image, size) -> (pixels [3, S, S], meta)`."""

    def __init__(self, records: Sequence[DetectionRecord], size: int, prepare: Callable, to_letterbox: Callable,
                 train: bool = False, seed: int = 0) -> None:
        self.records, self.size, self.prepare, self.to_letterbox = list(records), size, prepare, to_letterbox
        self.train, self.seed = train, seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        record = self.records[index]
        pixels, meta = self.prepare(load_image_file(record.image_path), self.size)   # pixel budget, then decode
        boxes = np.asarray(self.to_letterbox(record.boxes, meta), np.float32)
        if self.train and float(torch.rand(())) < 0.5:   # torch's RNG: seeded by the run (and per worker)
            pixels = pixels[:, :, ::-1].copy()
            boxes = np.stack([self.size - boxes[:, 2], boxes[:, 1], self.size - boxes[:, 0], boxes[:, 3]], axis=1)
        return (torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(boxes),
                {k: torch.from_numpy(v) for k, v in record.labels.items()})


def collate_detection(items: Sequence[tuple[torch.Tensor, torch.Tensor, dict]]) -> DetectionBatch:
    return DetectionBatch(torch.stack([p for p, _, _ in items]), [b for _, b, _ in items], [lab for _, _, lab in items])
