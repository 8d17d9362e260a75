"""Generating a whole ShapesRef dataset folder (layout in docs/ARCHITECTURE.md "Data on disk").

Images are drawn in chunks by a process pool and the folder is built under a temporary name, then renamed:
an interrupted run leaves no half-written dataset. Image content depends only on (seed, imgid, size), so
the bytes written do not depend on the number of workers.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from hrem.config.base import require, to_dict
from hrem.data.shapes.records import karpathy_entry, ref_entries
from hrem.data.shapes.vocab import REF_STRIDE, vocabulary_json
from hrem.data.shapes.writer import ChunkTask, write_chunk
from hrem.utils.files import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

FORMAT = "shapesref"
# Version of the captions (= of the folder's content: images, masks and refs are the same in both):
# 1 = the first, generic captions (captions.py); 2 = captions that pin down their image (captions_v2.py).
VERSION = 2
CAPTION_VERSIONS = (1, 2)
SPLITS = ("train", "val", "test")   # on-disk names; hrem's API calls "val" "dev"
CHUNK = 100                         # images per pool task
INLINE_BELOW = 2 * CHUNK            # fewer images than this: no pool (its start-up costs more than it saves)


@dataclass(frozen=True)
class ShapesRefConfig:
    train: int = 8000
    dev: int = 1000
    test: int = 1000
    size: int = 128
    seed: int = 0
    caption_version: int = VERSION

    def validate(self) -> None:
        for name in ("train", "dev", "test"):
            require(getattr(self, name) >= 0, f"{name}: expected a count >= 0, found {getattr(self, name)}")
        require(self.total > 0, f"split counts: expected at least one image, found {self.total}")
        require(48 <= self.size <= 1024, f"size: expected 48..1024 pixels, found {self.size}")
        require(self.seed >= 0, f"seed: expected an integer >= 0, found {self.seed}")
        require(self.caption_version in CAPTION_VERSIONS,
                f"caption_version: expected one of {CAPTION_VERSIONS}, found {self.caption_version}")

    @property
    def total(self) -> int:
        return self.train + self.dev + self.test

    def split_counts(self) -> dict[str, int]:
        return {"train": self.train, "val": self.dev, "test": self.test}


def split_images(images: int) -> tuple[int, int, int]:
    """`--images N`: 80 / 10 / 10 (dev and test get N // 10 each, train the rest)."""
    return images - 2 * (images // 10), images // 10, images // 10


@dataclass(frozen=True)
class GenerationSummary:
    out: Path
    counts: dict
    seconds: float
    workers: int

    @property
    def images_per_second(self) -> float:
        return self.counts["images"] / max(self.seconds, 1e-9)


def _tasks(root: Path, config: ShapesRefConfig, chunk: int, only: tuple[str, ...]) -> list[ChunkTask]:
    # imgid = position over all splits, also when only some splits are drawn: an image's content depends
    # on (seed, imgid, size), so a test-only folder holds exactly the test split of the full dataset.
    wanted = [(i, s) for i, s in enumerate(s for s, n in config.split_counts().items() for _ in range(n))
              if s in only]
    return [ChunkTask(root, config.seed, config.size, tuple(i for i, _ in wanted[start:start + chunk]),
                      tuple(s for _, s in wanted[start:start + chunk]), config.caption_version)
            for start in range(0, len(wanted), chunk)]


def _start_method() -> str:
    # fork starts workers in milliseconds, but forking a process that already runs other threads (torch's
    # OpenMP pool when called from a training or embedding job) can deadlock the children: spawn then.
    return "fork" if threading.active_count() == 1 and "torch" not in sys.modules else "spawn"


def _render_all(tasks: list[ChunkTask], workers: int) -> list[dict]:
    if workers <= 1:
        return [record for task in tasks for record in write_chunk(task)]
    with multiprocessing.get_context(_start_method()).Pool(workers) as pool:
        return [record for chunk in pool.imap(write_chunk, tasks) for record in chunk]


def _write_compact(path: Path, obj: dict) -> None:
    # Compact JSON goes through the C encoder; indent=2 would make writing slower than drawing the images.
    write_text_atomic(path, json.dumps(obj, separators=(",", ":")) + "\n")


def _write_json(root: Path, config: ShapesRefConfig, records: list[dict], only: tuple[str, ...]) -> dict:
    by_split = {s: [r for r in records if r["split"] == s] for s in SPLITS if s in only}
    _write_compact(root / "dataset_shapesref.json",
                      {"dataset": "shapesref", "images": [karpathy_entry(r) for r in records]})
    for split, items in by_split.items():
        _write_compact(root / "refs" / f"{split}.json", {split: [e for r in items for e in ref_entries(r)]})
        _write_compact(root / "scenes" / f"{split}.json", {"split": split, "size": config.size, "images": items})
    counts = {"images": len(records), "objects": sum(len(r["objects"]) for r in records),
              "expressions": sum(len(r["expressions"]) for r in records),
              "captions": sum(len(r["captions"]) for r in records)}
    write_json_atomic(root / "shapesref.json", metadata(config, counts, only))
    return counts


def metadata(config: ShapesRefConfig, counts: dict | None = None, only: tuple[str, ...] = SPLITS) -> dict:
    """shapesref.json: the parameters that decide the content (compared by the cache), then facts."""
    offsets, start = {}, 0
    for split, n in config.split_counts().items():
        offsets[split] = [start, start + n]
        start += n
    return {"format": FORMAT, "version": config.caption_version, "seed": config.seed, "size": config.size,
            "splits": config.split_counts(), "generated_splits": list(only), "imgid_ranges": offsets, "config": to_dict(config),
            "ref_id_rule": f"ref_id = imgid * {REF_STRIDE} + object index; mask file masks/<ref_id:07d>.png",
            "counts": counts or {}, "vocabulary": vocabulary_json()}


def _replace_dir(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise ValueError(f"{out}: already exists; pass overwrite=True (--overwrite) to replace it")
        trash = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def generate_shapesref(out: str | Path, config: ShapesRefConfig = ShapesRefConfig(), workers: int | None = None,
                       overwrite: bool = False, chunk: int = CHUNK,
                       splits: tuple[str, ...] = SPLITS) -> GenerationSummary:
    """Write the dataset folder `out`; return counts and timing.

    workers=None: one process per CPU, or none for small datasets; `chunk` images per pool task. Neither
    changes a byte of the output. `splits` (on-disk names) draws only those splits, with the same imgids
    and content as in the full dataset (the embedded demo needs only "test").
    """
    config.validate()
    if not splits or any(s not in SPLITS for s in splits):
        raise ValueError(f"splits: expected a non-empty subset of {list(SPLITS)}, found {list(splits)}")
    splits = tuple(s for s in SPLITS if s in splits)
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f"{out}: already exists; pass overwrite=True (--overwrite) to replace it")
    if workers is None:
        workers = 1 if config.total < INLINE_BELOW else (os.cpu_count() or 1)
    if workers < 1 or chunk < 1:
        raise ValueError(f"workers and chunk: expected >= 1, found workers={workers}, chunk={chunk}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    try:
        for sub in ("images", "masks", "refs", "scenes"):
            (tmp / sub).mkdir(parents=True)
        records = _render_all(_tasks(tmp, config, chunk, splits), workers)
        counts = _write_json(tmp, config, records, splits)
        _replace_dir(tmp, out, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - start
    log.debug("ShapesRef: %d images, %d objects in %.1f s (%.0f images/s, %d workers) -> %s",
             counts["images"], counts["objects"], seconds, counts["images"] / seconds, workers, out)
    return GenerationSummary(out, counts, seconds, workers)
