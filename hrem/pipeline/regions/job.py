"""`hrem regions`: images -> a region detector -> the SCAN/BUTD precomp layout that `hrem train`,
`hrem evaluate` and `hrem embed` read (files in hrem.pipeline.regions.assemble, state in .state).

    summary = run_regions(RegionsConfig(detector="packaged:shapes-detector", data="shapes/", out="precomp/"))

Per split: open the images (and captions) through hrem.data.sources, cut them into shards of
`shard_size` images, run each pending shard (decode in workers, letterbox, detect, keep `regions` rows per
image by BUTD's fill rule), record it, and assemble the split's files once all its shards are recorded.
Killing the job at any moment and re-running it gives the same folder as an uninterrupted run.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hrem.data.readers.common import load_json_file
from hrem.data.sources import Source, detect_input, input_fingerprint, open_sources
from hrem.data.sources.folders import karpathy_json
from hrem.data.splits import canonical_split
from hrem.pipeline.regions.assemble import assemble_split, captions_by_image
from hrem.pipeline.regions.config import RegionsConfig
from hrem.pipeline.regions.runner import RegionShardRunner
from hrem.pipeline.regions.state import PARTS, RegionsState, open_state, shard_file, split_files
from hrem.store import record_failures, shard_name
from hrem.utils.device import resolve_device, resolve_precision
from hrem.utils.locks import output_lock
from hrem.utils.paths import refuse_overlap
from hrem.vision.region_rows import GEOMETRY_COLUMNS, row_width

log = logging.getLogger(__name__)
SPLIT_ORDER = ("train", "dev", "test", "testall")


@dataclass(frozen=True)
class RegionsSummary:
    out: Path
    images: dict[str, int]          # split -> images written
    failures: int
    seconds: float
    processed: int                  # images detected by this run (skipped shards excluded)

    def lines(self) -> list[str]:
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        splits = ", ".join(f"{s}: {n}" for s, n in self.images.items())
        return [f"precomp regions: {self.out}  ({splits} images; failures: {self.failures}, failures.parquet)",
                f"time: {self.seconds:.1f} s, {rate:.1f} images/s"]


def input_splits(data: Path, requested: tuple[str, ...]) -> tuple[str, ...]:
    """The splits to write: the requested ones, or every split of a Karpathy folder (a listing: 'test')."""
    fmt = detect_input(data)
    if fmt == "precomp":
        raise ValueError(f"{data}: is a precomp folder (region features already); `hrem regions` reads images")
    if requested:
        return tuple(dict.fromkeys(canonical_split(s) for s in requested))
    if fmt == "listing":
        return ("test",)
    found = {canonical_split("train" if i.get("split") == "restval" else str(i.get("split")))
             for i in load_json_file(karpathy_json(data)).get("images", [])}
    return tuple(s for s in SPLIT_ORDER if s in found) + tuple(sorted(found - set(SPLIT_ORDER)))


def _identity(cfg: RegionsConfig, fingerprint: str) -> dict:
    return {"detector": cfg.detector, "detector_fingerprint": fingerprint, "regions": cfg.regions,
            "geometry": cfg.geometry, "input_size": cfg.input_size, "shard_size": cfg.shard_size}


def _layout(detector: torch.nn.Module, geometry: bool) -> dict:
    return {"feature_dim": int(detector.feature_dim), "geometry_columns": list(GEOMETRY_COLUMNS) if geometry else [],
            "row_width": row_width(detector, geometry), "input_size": int(detector.input_size),
            "boxes": "x1, y1, x2, y2 in original-image pixels"}


def _start_split(state: RegionsState, split: str, images: Source, fingerprint: str, cfg: RegionsConfig) -> None:
    record = state.splits.get(split)
    if record and record.get("complete") and not all(p.is_file() for p in split_files(state.out, split)[:4]):
        log.warning("%s: split %r was complete but its files are gone; writing it again", state.out, split)
        record = None
    elif record and record["input_fingerprint"] != fingerprint:
        if not cfg.overwrite:
            raise ValueError(f"{state.out}: split {split!r} was made from another input (fingerprint "
                             f"{record['input_fingerprint'][:12]} vs {fingerprint[:12]}); use --overwrite")
        record = None
    if record is None:
        for path in split_files(state.out, split):
            path.unlink(missing_ok=True)
        shutil.rmtree(state.out / PARTS / split, ignore_errors=True)
        state.splits[split] = {"input_fingerprint": fingerprint, "count": images.count,
                               "shard_size": cfg.shard_size, "shards": {}, "complete": False}
        state.save()


def run_regions(cfg: RegionsConfig, show_progress: bool = True, detector: torch.nn.Module | None = None,
                fingerprint: str | None = None) -> RegionsSummary:
    """Write the precomp folder `cfg.out`; `detector` (+ its `fingerprint`) may be passed in already loaded."""
    from hrem.checkpoint.detector import load_detector

    cfg.validate()
    start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if detector is None:
        loaded = load_detector(cfg.detector, device, cfg.input_size)
        detector, fingerprint = loaded.module, loaded.fingerprint
    data, out = Path(cfg.data), Path(cfg.out)
    refuse_overlap(out, data=data, image_root=cfg.image_root)
    with output_lock(out, command="hrem regions"):
        return _run_locked(cfg, data, out, detector, fingerprint, device, start, show_progress)


def _run_locked(cfg: RegionsConfig, data: Path, out: Path, detector: torch.nn.Module, fingerprint: str | None,
                device: torch.device, start: float, show_progress: bool) -> RegionsSummary:
    splits = input_splits(data, cfg.splits)
    opened = {s: open_sources(data, s, cfg.image_root) for s in splits}
    state = open_state(out, _identity(cfg, fingerprint or ""), _layout(detector, cfg.geometry), cfg.overwrite)
    for split, sources in opened.items():
        _start_split(state, split, sources["images"], input_fingerprint(data, split, sources), cfg)
    runner = RegionShardRunner(detector.eval(), cfg.regions, cfg.geometry, cfg.batch_size, cfg.workers, device,
                               resolve_precision(cfg.precision, device))
    processed = _run_shards(state, opened, runner, cfg, show_progress)
    images = {}
    for split, sources in opened.items():
        images[split] = _finish_split(state, split, sources, cfg)
    failures = sum(r["rows"] - r["kept"] for s in splits for r in state.splits[s]["shards"].values())
    return RegionsSummary(out, images, failures, time.perf_counter() - start, processed)


def _pending(state: RegionsState, split: str, count: int, size: int) -> list[tuple[int, int, int]]:
    if state.splits[split]["complete"]:
        return []
    return [(i, lo, min(lo + size, count)) for i, lo in enumerate(range(0, count, size))
            if not state.shard_done(split, shard_name(i).removesuffix(".parquet"))]


def _run_shards(state: RegionsState, opened: dict, runner: RegionShardRunner, cfg: RegionsConfig,
                show_progress: bool) -> int:
    todo = {s: _pending(state, s, src["images"].count, cfg.shard_size) for s, src in opened.items()}
    total = sum(src["images"].count for src in opened.values())
    left = sum(hi - lo for tasks in todo.values() for _, lo, hi in tasks)
    log.info("%s: %d image(s) in %d split(s), %d to detect", state.out, total, len(opened), left)
    with tqdm(total=total, initial=total - left, unit="img", desc="regions", disable=not show_progress,
              dynamic_ncols=True) as bar:
        for split, tasks in todo.items():
            for index, lo, hi in tasks:
                name = shard_name(index).removesuffix(".parquet")
                result = runner.run(opened[split]["images"].read(lo, hi), shard_file(state.out, split, name),
                                    bar.update)
                record_failures(state.out, "images", f"{split}/{name}", result.failures)
                state.splits[split]["shards"][name] = result.record()
                state.save()
                bar.set_postfix_str(f"{split}/{name}")
    return left


def _finish_split(state: RegionsState, split: str, sources: dict, cfg: RegionsConfig) -> int:
    record = state.splits[split]
    if not record["complete"]:
        names = sorted(record["shards"])
        captions = captions_by_image(sources.get("captions")) if detect_input(cfg.data) == "karpathy" else None
        record["images"] = assemble_split(state.out, split, [shard_file(state.out, split, n) for n in names],
                                          state.layout, cfg.regions, captions)
        record["complete"] = True
        state.save()
        shutil.rmtree(state.out / PARTS / split, ignore_errors=True)
        if (state.out / PARTS).is_dir() and not any((state.out / PARTS).iterdir()):
            (state.out / PARTS).rmdir()
    return int(record["images"])
