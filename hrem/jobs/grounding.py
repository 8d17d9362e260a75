"""The grounding jobs that use a trained model: `run_evaluate_grounding` (metrics per split, report) and
`run_ground` (one image, some expressions -> boxes, masks, overlays).

    summary = run_evaluate_grounding(EvaluateGroundingJob(model="runs/mcn", splits=("val", "test")))
    found = run_ground(GroundJob(image="scene.png", texts=("the red circle",), out="overlay.png"))
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from hrem.eval.report import write_report
from hrem.grounding import GroundingModel
from hrem.jobs.common import dataset_or_demo
from hrem.jobs.eval_config import EvaluateGroundingJob, GroundJob
from hrem.jobs.summary import EvaluationSummary
from hrem.pipeline.ground import Grounder, Grounding, evaluate_grounding, read_grounding_split
from hrem.utils.device import resolve_device, set_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroundingResult:
    text: str
    grounding: Grounding            # box, score, mask in original image pixels
    overlay: Path | None            # the overlay PNG written for it, if any


def default_splits(data: Path) -> list[str]:
    """Every split of the data but train (a ShapesRef folder: val and test)."""
    if data.is_dir():
        return [s for s in ("val", "test") if (data / "refs" / f"{s}.json").is_file()]
    names = json.loads(data.read_text(encoding="utf-8"))
    return [s for s in names if s != "train"] if isinstance(names, dict) else ["test"]


def format_summary(split: str, s: dict) -> str:
    parts = [f"{split}: n={s['n_samples']}", f"Acc@0.5 {s.get('acc@0.5', float('nan')):.2f}"]
    if "miou" in s:
        parts += [f"mIoU {s['miou']:.2f}", f"oIoU {s['oiou']:.2f}", f"P@0.5 {s['prec@0.50']:.2f}",
                  f"P@0.7 {s['prec@0.70']:.2f}", f"P@0.9 {s['prec@0.90']:.2f}", f"IE {s.get('ie', 0):.2f}"]
    return "  ".join(parts)


def evaluate_splits(model: GroundingModel, tokenizer, data: Path, splits: Sequence[str], *, images: str | None,
                    masks: str | None, device: torch.device, batch_size: int, workers: int,
                    asnls: bool | None = None, limit: int | None = None,
                    progress: bool = True) -> dict[str, dict]:
    """{"refs-<split>": metrics} for each split (every (object, expression) pair, original pixels)."""
    results = {}
    for split in splits:
        refs = read_grounding_split(data, split, images, masks)
        results[f"refs-{split}"] = evaluate_grounding(model, tokenizer, refs, device, batch_size, workers, asnls,
                                                      limit, progress=progress)
    return results


def splits_summary(results: dict[str, dict], out: Path | None, meta: dict) -> EvaluationSummary:
    """The results as summary lines, and report.json + report.md in `out` when given."""
    lines = [format_summary(name.removeprefix("refs-"), summary) for name, summary in results.items()]
    if out is not None:
        paths = write_report(out, results, meta)
        lines.append(f"report: {paths['markdown']}")
    return EvaluationSummary(results, out, tuple(lines))


def run_evaluate_grounding(job: EvaluateGroundingJob) -> EvaluationSummary:
    set_threads(job.threads)
    grounder = Grounder.load(job.model, device=resolve_device(job.device))
    data = dataset_or_demo(job.data)
    splits = list(job.splits) if job.splits else default_splits(data)
    results = evaluate_splits(grounder.model, grounder.tokenizer, data, splits, images=job.images,
                              masks=job.masks, device=grounder.device, batch_size=job.batch_size,
                              workers=job.workers, asnls=job.asnls, limit=job.limit, progress=job.progress)
    asnls = grounder.card.inference.asnls if job.asnls is None else job.asnls
    meta = {"model": str(grounder.source), "fingerprint": grounder.fingerprint, "data": str(data), "asnls": asnls}
    return splits_summary(results, Path(job.out) if job.out else None, meta)


def overlay_path(out: Path, number: int, count: int) -> Path:
    """OUT for one expression; OUT with -1, -2, ... before the suffix for several."""
    return out if count == 1 else out.with_name(f"{out.stem}-{number}{out.suffix}")


def run_ground(job: GroundJob) -> list[GroundingResult]:
    from hrem.pipeline.overlay import write_overlay

    set_threads(job.threads)
    grounder = Grounder.load(job.model, device=resolve_device(job.device))
    found = grounder.ground([job.image] * len(job.texts), list(job.texts), asnls=job.asnls)
    results = []
    for number, (text, grounding) in enumerate(zip(job.texts, found), 1):
        overlay = None
        if job.out:
            overlay = overlay_path(Path(job.out), number, len(job.texts))
            write_overlay(overlay, job.image, grounding.box, grounding.score, grounding.mask, text)
            log.info("overlay: %s", overlay)
        results.append(GroundingResult(text, grounding, overlay))
    return results
