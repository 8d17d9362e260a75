"""`hrem train-detector`, `hrem evaluate-detector`: the ShapesRef region detector (BUTD-style).

The work is in hrem.jobs (run_train_detector, run_evaluate_detector); this module parses flags into jobs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hrem.cli.job_args import job_from_args
from hrem.cli.options import (
    HelpFormatter,
    add_batch_size_argument,
    add_device_argument,
    add_out_argument,
    add_precision_argument,
    add_split_argument,
    add_threads_argument,
    add_workers_argument,
    model_type,
)
from hrem.cli.training_flags import add_training_arguments, job_default
from hrem.jobs.eval_config import EvaluateDetectorJob
from hrem.jobs.train_config import TrainDetectorJob


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-detector", help="train the region detector (boxes + object / attribute region head)",
        description="Train a detector card (kind 'detector', default shapes-detector) on the train split of a "
                    "ShapesRef folder (scene graphs: boxes, shapes, colours, sizes). The best dev model "
                    "(--selection-metric, default ap50+attributes = AP50 + joint attribute accuracy) is saved to "
                    "OUT; re-running the same command resumes; OUT/job.json records the options it ran with (a "
                    "valid --config). The test split is evaluated at the end into OUT/report.json. Batch size "
                    "default 32, workers 0.", formatter_class=HelpFormatter)
    p.add_argument("--card", default=job_default(TrainDetectorJob, "card"), help="detector card name or card JSON")
    _add_data(p)
    add_training_arguments(p, TrainDetectorJob, "region_head.hidden=128",
                           {"epochs": "default 30", "lr": "AdamW lr, default 2e-3"})
    p.add_argument("--dev-limit", type=int, default=job_default(TrainDetectorJob, "dev_limit"),
                   help="dev images per evaluation (0 = all)")
    p.add_argument("--eval-batch-size", type=int, default=job_default(TrainDetectorJob, "eval_batch_size"),
                   help="dev and test evaluation batch")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "evaluate-detector", help="box AP50 and attribute accuracy of a detector",
        description="Evaluate a detector run on a ShapesRef split: class-agnostic box AP50, per-shape mAP50 "
                    "and the shape / colour / size accuracy of each object's best match (IoU >= 0.5); writes "
                    "OUT/report.json with --out. Batch size default 64, workers 0.",
        formatter_class=HelpFormatter)
    e.add_argument("--model", default="packaged:shapes-detector", type=model_type("detector"),
                   help="detector run dir or shipped name (see `hrem models`)")
    _add_data(e)
    add_split_argument(e)
    add_out_argument(e)
    add_device_argument(e)
    add_precision_argument(e)
    add_threads_argument(e)
    add_workers_argument(e)
    add_batch_size_argument(e)
    e.set_defaults(func=run_evaluate)


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None,
                   help="ShapesRef folder (default: the cached demo ShapesRef, generated on first use)")


def run_train(args: argparse.Namespace) -> int:
    from hrem.jobs.detector import run_train_detector

    summary = run_train_detector(job_from_args(TrainDetectorJob, args))
    print("\n".join(summary.lines()))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from hrem.jobs.detector import run_evaluate_detector

    summary = run_evaluate_detector(job_from_args(EvaluateDetectorJob, args))
    print("\n".join(summary.lines))
    return 0
