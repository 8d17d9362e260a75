"""The flags every train command has (the fields of hrem.jobs.TrainingJob), defined once: `hrem train`,
`hrem train-grounding` and `hrem train-detector` add them with their job's defaults."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from hrem.cli.config_file import add_config_argument
from hrem.cli.options import (
    add_batch_size_argument,
    add_device_argument,
    add_out_argument,
    add_precision_argument,
    add_progress_argument,
    add_set_argument,
    add_threads_argument,
    add_workers_argument,
    parse_fractions,
)


def job_default(job_cls: type, name: str) -> Any:
    """The default of a job field (what a flag left out means)."""
    field = next(f for f in dataclasses.fields(job_cls) if f.name == name)
    return None if field.default is dataclasses.MISSING else field.default


def add_training_arguments(p: argparse.ArgumentParser, job_cls: type, set_example: str,
                           budget_help: dict[str, str] | None = None) -> None:
    """`budget_help`: per-command help of --epochs / --lr (their defaults come from the card or trainer)."""
    helps = {"epochs": "default: the trainer's", "lr": "default: the trainer's", **(budget_help or {})}
    add_out_argument(p, required=True)
    add_config_argument(p)
    add_set_argument(p, set_example)
    p.add_argument("--resume", choices=("auto", "must", "never"), default=job_default(job_cls, "resume"),
                   help="auto: resume when OUT has a training state; must: fail without one; never: fail if "
                        "one exists")
    add_device_argument(p)
    add_precision_argument(p)
    add_threads_argument(p)
    add_workers_argument(p)
    add_batch_size_argument(p)
    add_progress_argument(p)
    p.add_argument("--seed", type=int, default=job_default(job_cls, "seed"))
    p.add_argument("--epochs", type=int, default=None, help=helps["epochs"])
    p.add_argument("--lr", type=float, default=None, help=helps["lr"])
    _add_budget_arguments(p, job_cls)
    p.add_argument("--selection-metric", choices=job_cls.selection_metrics(), default=job_default(job_cls, "selection_metric"),
                   help="dev score that picks the best model (higher is better); recorded in the run")


def _add_budget_arguments(p: argparse.ArgumentParser, job_cls: type) -> None:
    p.add_argument("--max-iters", type=int, default=None, help="stop (resumably) after this many iterations in total")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="stop (resumably) after MIN minutes of training (dev evaluations included)")
    p.add_argument("--decay-fractions", type=parse_fractions, default=None,
                   help="comma-separated fractions of the budget (--time-budget / --max-iters) where the lr "
                        "decays, e.g. 0.75 (default none)")
    p.add_argument("--eval-every", type=int, default=job_default(job_cls, "eval_every"),
                   help="iterations between dev evaluations; 0 = every epoch")
    p.add_argument("--save-every", type=int, default=job_default(job_cls, "save_every"),
                   help="iterations between training states; 0 = every epoch")
    p.add_argument("--log-every", type=int, default=job_default(job_cls, "log_every"),
                   help="iterations between metrics.jsonl lines")
