"""One shard of `hrem regions`: decode + letterbox images (DataLoader workers), detect, write the rows.

Images that cannot be read become failure rows (hrem.store failures.parquet, shard `<split>/part-NNNNN`),
never a crash; the shard file `.parts/<split>/part-NNNNN.npz` holds the kept rows only:
    rows [n] int64 source positions, ids [n] int64, features [n, R, F'] float32,
    boxes [n, R, 4] float32 (x1, y1, x2, y2 in original-image pixels), scores [n, R] float32.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from hrem.data.sources import SourceSlice
from hrem.pipeline.embed.inputs import DecodeDataset, collate_decoded
from hrem.store import Failure
from hrem.utils.device import autocast
from hrem.utils.files import sha256_file, write_bytes_atomic
from hrem.vision.preprocess import LetterboxPreprocessor
from hrem.vision.region_rows import boxes_to_original, extract_regions


@dataclass(frozen=True)
class ShardOutput:
    path: Path
    rows: int                 # input rows of the shard
    kept: int                 # rows written (the others are failures)
    failures: list[Failure]

    def record(self) -> dict:
        return {"rows": self.rows, "kept": self.kept, "bytes": self.path.stat().st_size,
                "sha256": sha256_file(self.path)}


class RegionShardRunner:
    def __init__(self, detector: torch.nn.Module, regions: int, geometry: bool, batch_size: int, workers: int,
                 device: torch.device, precision: str = "fp32") -> None:
        self.detector, self.regions, self.geometry = detector, regions, geometry
        self.batch_size, self.workers, self.device, self.precision = batch_size, workers, device, precision
        self.preprocess = LetterboxPreprocessor(int(detector.input_size))

    def run(self, items: SourceSlice, path: Path, progress=None) -> ShardOutput:
        dataset = DecodeDataset(items.payload, self.preprocess, items.problems)
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.workers,
                            collate_fn=collate_decoded)
        kept: list[int] = []
        parts: dict[str, list[np.ndarray]] = {"features": [], "boxes": [], "scores": []}
        failures = []
        for batch in loader:
            failures += [Failure(items.start + pos, items.keys[pos], reason) for pos, reason in batch.failures]
            if batch.positions:
                for name, value in self._detect(batch.images).items():
                    parts[name].append(value)
                kept += batch.positions
            if progress:
                progress(len(batch.positions) + len(batch.failures))
        self._write(path, items, kept, parts)
        return ShardOutput(path, len(items.ids), len(kept), sorted(failures, key=lambda f: f.source_index))

    def _detect(self, images) -> dict[str, np.ndarray]:
        pixels, content = images.pixels.to(self.device), images.content.to(self.device)
        with torch.inference_mode(), autocast(self.device, self.precision):
            rows = extract_regions(self.detector, pixels, content, self.regions, self.geometry)
        return {"features": rows.features.float().cpu().numpy(),
                "boxes": boxes_to_original(rows.boxes.float(), content.float()).cpu().numpy(),
                "scores": rows.scores.float().cpu().numpy()}

    @staticmethod
    def _write(path: Path, items: SourceSlice, kept: list[int], parts: dict[str, list[np.ndarray]]) -> None:
        def stacked(name: str, width: tuple[int, ...]) -> np.ndarray:
            return np.concatenate(parts[name]) if parts[name] else np.zeros((0, *width), np.float32)
        arrays = {"rows": np.asarray(kept, np.int64) + items.start, "ids": items.ids[kept].astype(np.int64),
                  "features": stacked("features", (0, 0)), "boxes": stacked("boxes", (0, 4)),
                  "scores": stacked("scores", (0,))}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_bytes_atomic(path, buffer.getvalue())


def read_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
