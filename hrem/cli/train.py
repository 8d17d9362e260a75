"""`hrem train`: train a retrieval card on a ShapesRef/Karpathy folder or a *_precomp folder.

Model selection uses the dev split (never test). Re-running the same command on an existing --out
resumes from RUN/training_state.pt. The work is hrem.jobs.run_train; this module only parses flags
(and --config) into a TrainJob.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hrem.cli.job_args import job_from_args
from hrem.cli.options import HelpFormatter
from hrem.cli.training_flags import add_training_arguments
from hrem.jobs.train_config import TrainJob


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a retrieval model (HREM)",
        description="Train an HREM card. DIR is a Karpathy-style folder (dataset_*.json + images, e.g. ShapesRef) "
                    "or a *_precomp folder ({split}_ims.npy + {split}_caps.txt); the format is detected. The "
                    "best dev model (by --selection-metric, default rsum) is saved to RUN (config.json + "
                    "model.safetensors); RUN/training_state.pt makes a killed run resumable by re-running the "
                    "same command; RUN/job.json records the options it ran with (a valid --config). "
                    "--epochs, --batch-size and --lr default to the card's train section.",
        formatter_class=HelpFormatter)
    p.add_argument("--card", required=True,
                   help="card name (see `hrem models`), path to a card JSON, or a run directory / shipped "
                        "checkpoint whose card to reuse")
    p.add_argument("--data", required=True, type=Path, help="dataset folder")
    add_training_arguments(p, TrainJob, "head.pooling=mean --set instance_relation.enabled=false",
                           {"epochs": "default: the card's train.epochs", "lr": "default: the card's train.lr"})
    p.add_argument("--image-root", type=Path, default=None, help="image folder when not the dataset folder")
    p.add_argument("--group-images", action="store_true",
                   help="batches of images with all their captions (batch-size // 5 images, each encoded once per "
                        "step); hrem option, the reference samples captions")
    p.add_argument("--text-cache", default=None, metavar="FILE",
                   help="share a frozen text backbone's per-caption states across runs: loaded when FILE exists "
                        "(same backbone weights), written at the end of the run otherwise")
    p.add_argument("--eval-batch-size", type=int, default=TrainJob.eval_batch_size, help="dev evaluation batch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrem.jobs.retrieval import run_train

    summary = run_train(job_from_args(TrainJob, args))
    print("\n".join(summary.lines()))
    return 0
