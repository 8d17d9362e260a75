"""The region-detector jobs: `run_train_detector` (train on ShapesRef, best dev model kept, test report)
and `run_evaluate_detector` (box AP50 + attribute accuracy on a split).

    summary = run_train_detector(TrainDetectorJob(out="runs/det", card="tiny-detector", max_iters=50))
    report = run_evaluate_detector(EvaluateDetectorJob(model="runs/det", split="dev"))
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from hrem.config.base import to_dict
from hrem.data.detection_dataset import read_detection_split
from hrem.factory import load_card
from hrem.jobs.common import check_resume, command_line, dataset_or_demo, loop_settings, one_writer, record_job
from hrem.jobs.eval_config import EvaluateDetectorJob
from hrem.jobs.summary import EvaluationSummary, TrainSummary
from hrem.jobs.train_config import TrainDetectorJob
from hrem.pipeline.detect import DetectorEvaluator
from hrem.train.detector import build_detector_trainer, detector_train_config
from hrem.utils.device import resolve_device, resolve_precision, set_threads
from hrem.utils.files import write_json_atomic
from hrem.utils.seed import seed_everything

log = logging.getLogger(__name__)


def report_line(report: dict, split: str) -> str:
    acc = report["attribute_accuracy"]
    return (f"{split}: {report['images']} images, {report['objects']} objects; box AP50 {report['ap50']:.2f}, "
            f"per-shape mAP50 {report['map50']:.2f}; accuracy object {acc['object']:.2f}, "
            + ", ".join(f"{k} {v:.2f}" for k, v in acc.items() if k not in ("object", "all"))
            + f", all {acc['all']:.2f}")


def _evaluator(card, records, device: torch.device, workers: int, batch_size: int = 64,
               precision: str = "fp32") -> DetectorEvaluator:
    return DetectorEvaluator(records, card.input_size, card.objects, device, batch_size=batch_size,
                             workers=workers, precision=precision)


@one_writer
def run_train_detector(job: TrainDetectorJob) -> TrainSummary:
    out = Path(job.out)
    check_resume(out, job.resume)
    set_threads(job.threads)
    device = resolve_device(job.device)
    card = load_card(job.card, job.overrides)
    if card.kind != "detector":
        raise ValueError(f"card {job.card}: expected a detector card (kind 'detector'), found kind {card.kind!r}")
    data = dataset_or_demo(job.data)
    precision = resolve_precision(job.precision, device)
    config = detector_train_config(**loop_settings(job, precision, job.selection_metric))
    seed_everything(job.seed)
    train = read_detection_split(data, "train", card.objects, card.attributes)
    dev = read_detection_split(data, "dev", card.objects, card.attributes)
    dev = dev[:job.dev_limit] if job.dev_limit else dev
    evaluate = _evaluator(card, dev, device, job.workers, job.eval_batch_size)
    trainer = build_detector_trainer(card, train, out, config, device, evaluate,
                                     {"data": str(data), "command": command_line(), "job": to_dict(job)},
                                     show_progress=job.progress)
    if job.resume != "never":
        trainer.resume()
    record_job(out, job)   # after resume(): a refused session leaves the run's record alone
    position = trainer.run()
    tests = _test_report(out, card, data, device, job)
    return TrainSummary(out, position.iteration, position.epoch, config.selection_metric, position.best_score,
                        position.best_iteration, tests)


def _test_report(out: Path, card, data: Path, device: torch.device, job: TrainDetectorJob) -> EvaluationSummary:
    """The best (saved) detector on the test split, into OUT/report.json."""
    from hrem.checkpoint import load_run

    model, _, _ = load_run(out, device=device)
    test = read_detection_split(data, "test", card.objects, card.attributes)
    report = _evaluator(card, test, device, job.workers, job.eval_batch_size)(model)
    write_json_atomic(out / "report.json", {"split": "test", "data": str(data), **report})
    return EvaluationSummary({"test": report}, out / "report.json", (report_line(report, "test"),))


def run_evaluate_detector(job: EvaluateDetectorJob) -> EvaluationSummary:
    from hrem.checkpoint.detector import load_detector

    set_threads(job.threads)
    device = resolve_device(job.device)
    loaded = load_detector(job.model, device)
    card = getattr(loaded.module, "card", None)
    if card is None or getattr(card, "kind", None) != "detector":
        raise ValueError(f"model {job.model}: evaluate-detector needs an hrem detector run (ShapesRef labels)")
    records = read_detection_split(dataset_or_demo(job.data), job.split, card.objects, card.attributes)
    evaluator = _evaluator(card, records, device, job.workers, job.batch_size, resolve_precision(job.precision, device))
    report = evaluator(loaded.module)
    lines = [report_line(report, job.split)]
    out = None
    if job.out:
        out = Path(job.out) / "report.json"
        write_json_atomic(out, {"split": job.split, "model": str(job.model), **report})
        lines.append(json.dumps({"wrote": str(out)}))
    return EvaluationSummary({job.split: report}, out, tuple(lines))
