"""`hrem ground`, `hrem train-grounding`, `hrem evaluate-grounding`: the grounding stage from the shell.

Data is RefCOCO-style: a ShapesRef folder (refs/{train,val,test}.json, the default is the cached demo
ShapesRef) or a SimREC `anns/<dataset>.json` file with --images and --masks. The work is in hrem.jobs
(run_ground, run_train_grounding, run_evaluate_grounding); this module parses flags into their jobs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hrem.cli.job_args import job_from_args
from hrem.cli.options import (
    HelpFormatter,
    add_batch_size_argument,
    add_device_argument,
    add_out_argument,
    add_progress_argument,
    add_splits_argument,
    add_threads_argument,
    add_workers_argument,
    model_type,
    parse_ints,
    parse_names,
)
from hrem.cli.training_flags import add_training_arguments, job_default
from hrem.jobs.eval_config import EvaluateGroundingJob, GroundJob
from hrem.jobs.train_config import TrainGroundingJob


def register(subparsers) -> None:
    _register_ground(subparsers)
    _register_train(subparsers)
    _register_evaluate(subparsers)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None,
                   help="ShapesRef folder, or a RefCOCO-style refs JSON ({split: [entry, ...]}); default: the "
                        "cached demo ShapesRef (generated on first use)")
    p.add_argument("--images", type=Path, default=None, help="image folder (default: DATA/images or beside JSON)")
    p.add_argument("--masks", type=Path, default=None, help="mask folder (<mask_id>.npy / .png) for refs JSON")


def _add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=model_type("grounding", Path), default=None,
                   help="grounding run directory or shipped name (default: demo-grounding)")


def _register_ground(subparsers) -> None:
    p = subparsers.add_parser(
        "ground", help="box + mask of the object a text refers to in an image",
        description="Run a grounding model (default: the shipped demo model) on one image and one or more "
                    "referring expressions; prints box [x1, y1, x2, y2] (original pixels), score and the mask "
                    "area, and writes an overlay PNG with --out (with several --text: OUT with -1, -2, ... "
                    "before the suffix).",
        formatter_class=HelpFormatter)
    p.add_argument("--image", required=True, type=Path, help="image file")
    p.add_argument("--text", dest="texts", required=True, action="append", help="referring expression (repeatable)")
    add_out_argument(p)
    _add_model_arg(p)
    p.add_argument("--no-asnls", dest="asnls", action="store_false", default=None,
                   help="switch ASNLS off (mask not sharpened by the box)")
    p.add_argument("--json", action="store_true", help="print JSON (with the mask as COCO RLE)")
    add_device_argument(p)
    add_threads_argument(p)
    p.set_defaults(func=run_ground)


def _register_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train-grounding", help="train an MCN grounding model (REC box + RES mask)",
        description="Train an MCN card on RefCOCO-style data. Anchors are k-means of the training boxes. The "
                    "best model on the dev split (--selection-metric; auto = Acc@0.5 + mIoU, Acc@0.5 alone for "
                    "--task rec, mIoU alone for --task res) is saved to OUT (config.json + model.safetensors), "
                    "then evaluated on the test split(s) into OUT/report. Re-running the same command resumes "
                    "from OUT/training_state.pt; OUT/job.json records the options it ran with (a valid "
                    "--config). Batch size default 32.",
        formatter_class=HelpFormatter)
    p.add_argument("--card", default=job_default(TrainGroundingJob, "card"), help="MCN card name or card JSON")
    _add_data_args(p)
    add_training_arguments(p, TrainGroundingJob, "losses.mask_weight=0.2",
                           {"epochs": "default 45 (K)", "lr": "Adam(W) lr, default 1e-3 (K)"})
    p.add_argument("--task", choices=("joint", "rec", "res"), default=job_default(TrainGroundingJob, "task"),
                   help="joint = MCN (REC + RES); rec / res = single-task ablations")
    p.add_argument("--no-cem", dest="cem", action="store_false", help="ablation: train without the consistency energy")
    p.add_argument("--no-kmeans", dest="kmeans", action="store_false", help="keep the card's anchors")
    p.add_argument("--train-split", default=job_default(TrainGroundingJob, "train_split"))
    p.add_argument("--dev-split", default=job_default(TrainGroundingJob, "dev_split"), help="model selection split")
    p.add_argument("--test-splits", type=parse_names, default="test",
                   help="comma-separated splits evaluated at the end ('' = none)")
    p.add_argument("--dev-limit", type=int, default=job_default(TrainGroundingJob, "dev_limit"),
                   help="dev expressions per evaluation (0 = all)")
    p.add_argument("--decay-epochs", type=parse_ints, default=None,
                   help="comma-separated epochs where lr /= 10 (default 30,35,40)")
    p.add_argument("--eval-batch-size", type=int, default=job_default(TrainGroundingJob, "eval_batch_size"),
                   help="dev and test evaluation batch")
    p.set_defaults(func=run_train)


def _register_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-grounding", help="Acc@0.5, mIoU, oIoU, Prec@X and IE of a grounding model per split",
        description="Evaluate a grounding run on every (object, expression) of the given splits (RefCOCO: "
                    "val, testA, testB; RefCOCOg: val, test; ShapesRef: val, test) in original image pixels; "
                    "writes report.json + report.md with --out. Batch size default 32, workers 2.",
        formatter_class=HelpFormatter)
    _add_model_arg(p)
    _add_data_args(p)
    add_splits_argument(p)
    p.add_argument("--limit", type=int, default=None, help="first N expressions per split (quick checks)")
    p.add_argument("--no-asnls", dest="asnls", action="store_false", default=None, help="ablation: switch ASNLS off")
    add_out_argument(p)
    add_device_argument(p)
    add_threads_argument(p)
    add_workers_argument(p)
    add_batch_size_argument(p, deprecated=("--eval-batch-size",))
    add_progress_argument(p)
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from hrem.jobs.grounding import run_evaluate_grounding

    summary = run_evaluate_grounding(job_from_args(EvaluateGroundingJob, args))
    print("\n".join(summary.lines))
    return 0


def run_ground(args: argparse.Namespace) -> int:
    from hrem.jobs.grounding import run_ground as ground

    results = ground(job_from_args(GroundJob, args))
    if args.json:
        print(json.dumps([{"text": r.text, **r.grounding.as_dict()} for r in results], indent=2))
        return 0
    for r in results:
        found = r.grounding
        box = ", ".join(f"{v:.1f}" for v in found.box)
        print(f"{r.text!r}: box [{box}]  score {found.score:.3f}  mask {int(found.mask.sum())} px"
              + (f"  overlay {r.overlay}" if r.overlay else ""))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from hrem.jobs.train_grounding import run_train_grounding

    summary = run_train_grounding(job_from_args(TrainGroundingJob, args))
    print("\n".join(summary.lines()))
    return 0
