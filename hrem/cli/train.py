"""`hrem train`: train a retrieval card on a ShapesRef/Karpathy folder or a *_precomp folder.

Model selection uses the dev split (never test). Re-running the same command on an existing --out
resumes from RUN/training_state.pt.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from hrem.cli.options import add_threads_argument, parse_fractions

log = logging.getLogger("hrem.train")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a retrieval model (HREM)",
        description="Train an HREM card. DIR is a Karpathy-style folder (dataset_*.json + images, e.g. ShapesRef) "
                    "or a *_precomp folder ({split}_ims.npy + {split}_caps.txt); the format is detected. The "
                    "best dev-rsum model is saved to RUN (config.json + model.safetensors); RUN/training_state.pt "
                    "makes a killed run resumable by re-running the same command.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--card", required=True, help="card name (see `hrem models`) or path to a card JSON")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=JSON",
                   help="override a card field, e.g. --set head.pooling=mean --set instance_relation.enabled=false "
                        "(value parsed as JSON, else taken as a string); repeatable")
    p.add_argument("--data", required=True, type=Path, help="dataset folder")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--image-root", type=Path, default=None, help="image folder when not the dataset folder")
    p.add_argument("--resume", choices=("auto", "must", "never"), default="auto",
                   help="auto: resume when RUN has a training state; must: fail without one; never: fail if one exists")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="autocast precision; auto = fp16 on CUDA, fp32 on CPU")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (image decoding, tokenising)")
    p.add_argument("--seed", type=int, default=0)
    add_threads_argument(p)
    p.add_argument("--epochs", type=int, default=None, help="default: the card's train.epochs")
    p.add_argument("--batch-size", type=int, default=None, help="default: the card's train.batch_size")
    p.add_argument("--lr", type=float, default=None, help="default: the card's train.lr")
    p.add_argument("--max-iters", type=int, default=None, help="stop (resumably) after this many iterations in total")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="stop (resumably) after MIN minutes of training (dev evaluations included)")
    p.add_argument("--decay-fractions", type=parse_fractions, default=None,
                   help="comma-separated fractions of the budget (--time-budget / --max-iters) where the lr is "
                        "multiplied by train.decay_rate, e.g. 0.75 (default none)")
    p.add_argument("--eval-every", type=int, default=0, help="iterations between dev evaluations; 0 = every epoch")
    p.add_argument("--save-every", type=int, default=0, help="iterations between training states; 0 = every epoch")
    p.add_argument("--log-every", type=int, default=10, help="iterations between metrics.jsonl lines")
    p.add_argument("--group-images", action="store_true",
                   help="batches of images with all their captions (batch-size // 5 images, each encoded once per "
                        "step); hrem option, the reference samples captions")
    p.add_argument("--text-cache", default=None, metavar="FILE",
                   help="share a frozen text backbone's per-caption states across runs: loaded when FILE exists "
                        "(same backbone weights), written at the end of the run otherwise")
    p.add_argument("--eval-batch-size", type=int, default=128)
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict:
    """["head.pooling=mean", "instance_relation.enabled=false"] -> {"head.pooling": "mean", ...}."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected KEY=VALUE, found {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _recordable(args: argparse.Namespace) -> dict:
    """The parsed flags as JSON-ready values (what this run was started with)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}


def _check_resume(run_dir: Path, mode: str) -> None:
    has_state = (run_dir / "training_state.pt").is_file()
    if mode == "must" and not has_state:
        raise FileNotFoundError(f"{run_dir}/training_state.pt: --resume must, but there is no state to resume")
    if mode == "never" and has_state:
        raise ValueError(f"{run_dir}/training_state.pt exists and --resume never was given; use a new --out")


def run(args: argparse.Namespace) -> int:
    from hrem.data.datasets import open_retrieval_split
    from hrem.factory import create_image_preprocessor, create_tokenizer, load_card
    from hrem.pipeline.encode import EncodeOptions
    from hrem.pipeline.evaluate import SplitEvaluator
    from hrem.train.run import build_trainer, record_or_check_args, save_text_cache, train_config_from_card
    from hrem.utils.device import resolve_device, set_threads
    from hrem.utils.seed import seed_everything

    _check_resume(args.out, args.resume)
    set_threads(args.threads)
    device = resolve_device(args.device)
    precision = args.precision if args.precision != "auto" else ("fp16" if device.type == "cuda" else "fp32")
    card = load_card(args.card, overrides=parse_overrides(args.overrides))
    config = train_config_from_card(
        card, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, precision=precision,
        workers=args.workers, seed=args.seed, log_every=args.log_every, eval_every=args.eval_every,
        save_every=args.save_every, max_iters=args.max_iters, time_budget_min=args.time_budget,
        decay_fractions=args.decay_fractions, text_cache_file=args.text_cache, group_images=args.group_images)
    seed_everything(args.seed)
    train_split = open_retrieval_split(args.data, "train", args.image_root)
    dev_split = open_retrieval_split(args.data, "dev", args.image_root)
    log.info("data %s: %s format, train %d images / dev %d images", args.data, train_split.format,
             train_split.num_images, dev_split.num_images)
    tokenizer = create_tokenizer(card)
    preprocess = create_image_preprocessor(card) if train_split.format == "images" else None
    options = EncodeOptions(device=device, batch_size=args.eval_batch_size, workers=args.workers, precision=precision)
    evaluate = SplitEvaluator(dev_split, preprocess, tokenizer, options, ("all",))
    args.out.mkdir(parents=True, exist_ok=True)
    record_or_check_args(args.out, card, config, {"data": str(args.data), "format": train_split.format,
                                                   "arguments": _recordable(args)})
    trainer = build_trainer(card, train_split, preprocess, tokenizer, args.out, config, device, evaluate)
    if args.resume != "never":
        trainer.resume()
    position = trainer.run()
    save_text_cache(trainer.model, card, config)
    print(f"trained {position.iteration} iterations ({position.epoch} full epochs); best dev rsum "
          f"{position.best_rsum:.2f} at iteration {position.best_iteration}; model in {args.out}")
    return 0
