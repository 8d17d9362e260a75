"""`run_train_grounding`: an MCN card on RefCOCO-style data, the best dev model kept (by the job's
selection metric), then evaluated on the test split(s) into OUT/report.

    summary = run_train_grounding(TrainGroundingJob(out="runs/mcn", card="mcn-tiny", max_iters=100))
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from hrem.config.base import to_dict
from hrem.factory import load_card
from hrem.grounding import GroundingTask
from hrem.jobs.common import check_resume, command_line, dataset_or_demo, loop_settings, one_writer, record_job
from hrem.jobs.grounding import evaluate_splits, format_summary, splits_summary
from hrem.jobs.summary import EvaluationSummary, TrainSummary
from hrem.jobs.train_config import GROUNDING_SCORE, TrainGroundingJob
from hrem.pipeline.ground import Grounder, evaluate_grounding, read_grounding_split
from hrem.train.grounding_run import build_grounding_trainer, grounding_train_config
from hrem.utils.device import resolve_device, resolve_precision, set_threads

log = logging.getLogger(__name__)


class DevEvaluator:
    """model -> the dev split's grounding scores, plus GROUNDING_SCORE (Acc@0.5 + mIoU) when both exist."""

    def __init__(self, job: TrainGroundingJob, data: Path, device: torch.device, asnls: bool | None) -> None:
        self.job, self.device, self.asnls = job, device, asnls
        self.refs = read_grounding_split(data, job.dev_split, job.images, job.masks)
        self.tokenizer = None   # the trainer's collate tokenizer, set once the trainer exists

    def __call__(self, model) -> dict:
        job = self.job
        summary = evaluate_grounding(model.eval(), self.tokenizer, self.refs, self.device, job.eval_batch_size, 0,
                                     self.asnls, job.dev_limit or None)
        log.info("dev %s", format_summary(job.dev_split, summary))
        if "acc@0.5" in summary and "miou" in summary:
            summary[GROUNDING_SCORE] = summary["acc@0.5"] + summary["miou"]
        return summary


def _train_config(job: TrainGroundingJob, device: torch.device):
    precision = resolve_precision(job.precision, device)
    return grounding_train_config(**loop_settings(job, precision, job.resolved_selection_metric()),
                                  decay_epochs=job.decay_epochs)


@one_writer
def run_train_grounding(job: TrainGroundingJob) -> TrainSummary:
    out = Path(job.out)
    check_resume(out, job.resume)
    set_threads(job.threads)
    card = load_card(job.card, job.overrides)
    if card.kind != "mcn":
        raise ValueError(f"card {job.card}: expected a grounding card (kind 'mcn'), found kind {card.kind!r}")
    device, data = resolve_device(job.device), dataset_or_demo(job.data)
    task = GroundingTask(job.task, cem=job.cem)
    asnls = False if task.task == "res" else None  # a RES-only model has no trained box to sharpen with
    evaluate = DevEvaluator(job, data, device, asnls)
    train_refs = read_grounding_split(data, job.train_split, job.images, job.masks)
    config = _train_config(job, device)
    trainer = build_grounding_trainer(card, train_refs, out, config, task, device, evaluate, kmeans=job.kmeans,
                                      extra_args={"data": str(data), "command": command_line(),
                                                  "job": to_dict(job)},
                                      show_progress=job.progress)
    evaluate.tokenizer = trainer.collate.tokenizer
    if job.resume != "never":
        trainer.resume()
    record_job(out, job)   # after resume(): a refused session leaves the run's record alone
    position = trainer.run()
    tests = _evaluate_tests(job, out, data, device, task, asnls) if job.test_splits else None
    return TrainSummary(out, position.iteration, position.epoch, config.selection_metric, position.best_score,
                        position.best_iteration, tests)


def _evaluate_tests(job: TrainGroundingJob, out: Path, data: Path, device: torch.device, task: GroundingTask,
                    asnls: bool | None) -> EvaluationSummary:
    """The best (saved) model on every test split, into OUT/report."""
    best = Grounder.load(out, device=device, batch_size=job.eval_batch_size)
    results = evaluate_splits(best.model, best.tokenizer, data, job.test_splits, images=job.images,
                              masks=job.masks, device=device, batch_size=job.eval_batch_size, workers=job.workers,
                              asnls=asnls, progress=job.progress)
    meta = {"model": str(out), "fingerprint": best.fingerprint, "data": str(data), "task": task.task,
            "cem": task.uses_cem}
    return splits_summary(results, out / "report", meta)
