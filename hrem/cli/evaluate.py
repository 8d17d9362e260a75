"""`hrem evaluate`: R@1/5/10, medr, meanr and rsum of a run directory on a dataset split (the work is
hrem.jobs.run_evaluate; this module parses flags into an EvaluateJob)."""
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
    parse_names,
)
from hrem.jobs.eval_config import EvaluateJob


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="R@K report of a model on a dataset split",
        description="Encode every image of the split once and its captions in length-sorted batches, then "
                    "write report.json, report.md and recall_curves.png into --out (default RUN/eval-<split>; "
                    "for a shipped model hrem-out/eval/<name>-<split>). Protocols: f30k (1K test), coco5k, "
                    "coco1k (5-fold mean), all (the whole split); auto picks the dataset's paper protocols. "
                    "Batch size default 128, workers 2.",
        formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, type=model_type("retrieval", Path),
                   help="retrieval run directory (config.json + model.safetensors) or shipped name, e.g. demo")
    p.add_argument("--data", required=True, type=Path, help="dataset folder (Karpathy/ShapesRef or *_precomp)")
    add_split_argument(p)
    p.add_argument("--protocol", dest="protocols", type=parse_names, default="auto",
                   help="comma-separated: auto, all, f30k, coco1k, coco5k")
    add_out_argument(p)
    p.add_argument("--save-sims", action="store_true", help="also save the [images, captions] score matrix sims.npy")
    p.add_argument("--image-root", type=Path, default=None, help="image folder when not the dataset folder")
    add_device_argument(p)
    add_precision_argument(p)
    add_threads_argument(p)
    add_batch_size_argument(p)
    add_workers_argument(p)
    p.add_argument("--index", type=Path, default=None,
                   help="also R@K through this FAISS index (or folder of images/ + captions/ indices), "
                        "side by side with exact search")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrem.jobs.retrieval import run_evaluate

    summary = run_evaluate(job_from_args(EvaluateJob, args))
    print("\n".join(summary.lines))
    return 0
