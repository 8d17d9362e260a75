"""`hrem ground`, `hrem train-grounding`, `hrem evaluate-grounding`: the grounding stage from the shell.

Data is RefCOCO-style: a ShapesRef folder (refs/{train,val,test}.json, the default is the cached demo
ShapesRef) or a SimREC `anns/<dataset>.json` file with --images and --masks.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from hrem.cli.options import add_threads_argument, parse_fractions

log = logging.getLogger("hrem.ground")


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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--eval-batch-size", type=int, default=32)
    add_threads_argument(p)


def _register_ground(subparsers) -> None:
    p = subparsers.add_parser(
        "ground", help="box + mask of the object a text refers to in an image",
        description="Run a grounding model (default: the shipped demo model) on one image and one or more "
                    "referring expressions; prints box [x1, y1, x2, y2] (original pixels), score and the mask "
                    "area, and writes an overlay PNG with --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--image", required=True, type=Path, help="image file")
    p.add_argument("--text", required=True, action="append", help="referring expression (repeatable)")
    p.add_argument("--out", type=Path, default=None,
                   help="overlay PNG (with several --text: OUT with -1, -2, ... before the suffix)")
    p.add_argument("--model", type=Path, default=None, help="grounding run directory (default: the demo model)")
    p.add_argument("--no-asnls", action="store_true", help="switch ASNLS off (mask not sharpened by the box)")
    p.add_argument("--json", action="store_true", help="print JSON (with the mask as COCO RLE)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    add_threads_argument(p)
    p.set_defaults(func=run_ground)


def _register_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train-grounding", help="train an MCN grounding model (REC box + RES mask)",
        description="Train an MCN card on RefCOCO-style data. Anchors are k-means of the training boxes. The "
                    "best model on the dev split (Acc@0.5 + mIoU) is saved to OUT (config.json + "
                    "model.safetensors), then evaluated on the test split(s) into OUT/report. Re-running the "
                    "same command resumes from OUT/training_state.pt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--card", default="mcn-demo", help="MCN card name or card JSON")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=JSON",
                   help="override a card field, e.g. --set losses.mask_weight=0.2 (repeatable)")
    _add_data_args(p)
    p.add_argument("--task", choices=("joint", "rec", "res"), default="joint",
                   help="joint = MCN (REC + RES); rec / res = single-task ablations")
    p.add_argument("--no-cem", action="store_true", help="ablation: train without the consistency energy")
    p.add_argument("--no-kmeans", action="store_true", help="keep the card's anchors")
    p.add_argument("--train-split", default="train")
    p.add_argument("--dev-split", default="val", help="model selection split")
    p.add_argument("--test-splits", default="test", help="comma-separated splits evaluated at the end ('' = none)")
    p.add_argument("--dev-limit", type=int, default=1000, help="dev expressions per evaluation (0 = all)")
    p.add_argument("--resume", choices=("auto", "never"), default="auto",
                   help="auto: resume when OUT has a training state; never: fail if one exists")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="default 45 (K)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--lr", type=float, default=None, help="Adam(W) lr, default 1e-3 (K)")
    p.add_argument("--decay-epochs", default=None, help="comma-separated epochs where lr /= 10 (default 30,35,40)")
    p.add_argument("--decay-fractions", type=parse_fractions, default=None,
                   help="comma-separated fractions of the budget (--time-budget / --max-iters) where lr /= 10, "
                        "e.g. 0.75: a step schedule for budgeted runs (default none)")
    p.add_argument("--max-iters", type=int, default=None, help="stop (resumably) after this many iterations")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="stop (resumably) after MIN min")
    p.add_argument("--eval-every", type=int, default=0, help="iterations between dev evaluations; 0 = each epoch")
    p.add_argument("--save-every", type=int, default=0, help="iterations between training states; 0 = each epoch")
    p.add_argument("--log-every", type=int, default=10, help="iterations between metrics.jsonl lines")
    p.set_defaults(func=run_train)


def _register_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-grounding", help="Acc@0.5, mIoU, oIoU, Prec@X and IE of a grounding model per split",
        description="Evaluate a grounding run on every (object, expression) of the given splits (RefCOCO: "
                    "val, testA, testB; RefCOCOg: val, test; ShapesRef: val, test) in original image pixels; "
                    "writes report.json + report.md with --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="grounding run directory (default: the demo model)")
    _add_data_args(p)
    p.add_argument("--splits", default=None, help="comma-separated (default: every split but train)")
    p.add_argument("--limit", type=int, default=None, help="first N expressions per split (quick checks)")
    p.add_argument("--no-asnls", action="store_true", help="ablation: switch ASNLS off")
    p.add_argument("--out", type=Path, default=None, help="report directory")
    p.set_defaults(func=run_evaluate)


def _set_threads(args: argparse.Namespace) -> None:
    from hrem.utils.device import set_threads

    set_threads(getattr(args, "threads", None))


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return args.data
    from hrem.data.cache import ensure_shapesref

    return ensure_shapesref()


def _splits(args: argparse.Namespace, data: Path, given: str | None) -> list[str]:
    if given:
        return [s.strip() for s in given.split(",") if s.strip()]
    if data.is_dir():
        return [s for s in ("val", "test") if (data / "refs" / f"{s}.json").is_file()]
    names = json.loads(data.read_text(encoding="utf-8"))
    return [s for s in names if s != "train"] if isinstance(names, dict) else ["test"]


def evaluate_splits(grounder, data: Path, splits: list[str], args: argparse.Namespace,
                    asnls: bool | None = None) -> dict[str, dict]:
    from hrem.pipeline.ground import evaluate_grounding, read_grounding_split

    results = {}
    for split in splits:
        refs = read_grounding_split(data, split, args.images, args.masks)
        summary = evaluate_grounding(grounder.model, grounder.tokenizer, refs, grounder.device,
                                     args.eval_batch_size, args.workers, asnls,
                                     getattr(args, "limit", None), progress=True)
        results[f"refs-{split}"] = summary
        print(format_summary(split, summary))
    return results


def format_summary(split: str, s: dict) -> str:
    parts = [f"{split}: n={s['n_samples']}", f"Acc@0.5 {s.get('acc@0.5', float('nan')):.2f}"]
    if "miou" in s:
        parts += [f"mIoU {s['miou']:.2f}", f"oIoU {s['oiou']:.2f}", f"P@0.5 {s['prec@0.50']:.2f}",
                  f"P@0.7 {s['prec@0.70']:.2f}", f"P@0.9 {s['prec@0.90']:.2f}", f"IE {s.get('ie', 0):.2f}"]
    return "  ".join(parts)


def run_evaluate(args: argparse.Namespace) -> int:
    from hrem.eval.report import write_report
    from hrem.pipeline.ground import Grounder
    from hrem.utils.device import resolve_device

    _set_threads(args)
    grounder = Grounder.load(args.model, device=resolve_device(args.device))
    data = _data_dir(args)
    results = evaluate_splits(grounder, data, _splits(args, data, args.splits), args,
                              asnls=False if args.no_asnls else None)
    if args.out:
        meta = {"model": str(grounder.source), "fingerprint": grounder.fingerprint, "data": str(data),
                "asnls": not args.no_asnls and grounder.card.inference.asnls}
        paths = write_report(args.out, results, meta)
        print(f"report: {paths['markdown']}")
    return 0


def run_ground(args: argparse.Namespace) -> int:
    from hrem.pipeline.ground import Grounder
    from hrem.pipeline.overlay import write_overlay
    from hrem.utils.device import resolve_device

    _set_threads(args)
    grounder = Grounder.load(args.model, device=resolve_device(args.device))
    results = grounder.ground([args.image] * len(args.text), args.text, asnls=False if args.no_asnls else None)
    for number, (text, found) in enumerate(zip(args.text, results), 1):
        if args.out:
            out = args.out if len(args.text) == 1 else args.out.with_name(f"{args.out.stem}-{number}{args.out.suffix}")
            write_overlay(out, args.image, found.box, found.score, found.mask, text)
            log.info("overlay: %s", out)
        if not args.json:
            box = ", ".join(f"{v:.1f}" for v in found.box)
            print(f"{text!r}: box [{box}]  score {found.score:.3f}  mask {int(found.mask.sum())} px"
                  + (f"  overlay {out}" if args.out else ""))
    if args.json:
        print(json.dumps([{"text": t, **g.as_dict()} for t, g in zip(args.text, results)], indent=2))
    return 0


def _train_config(args: argparse.Namespace):
    from hrem.train.grounding_run import grounding_train_config

    decay = tuple(int(e) for e in args.decay_epochs.split(",") if e.strip()) if args.decay_epochs else None
    return grounding_train_config(lr=args.lr, epochs=args.epochs, decay_epochs=decay,
                                  decay_fractions=args.decay_fractions,
                                  batch_size=args.batch_size,
                                  precision=args.precision, workers=args.workers, seed=args.seed,
                                  log_every=args.log_every, eval_every=args.eval_every,
                                  save_every=args.save_every, max_iters=args.max_iters,
                                  time_budget_min=args.time_budget)


def run_train(args: argparse.Namespace) -> int:
    from hrem.cli.train import parse_overrides
    from hrem.factory import load_card
    from hrem.pipeline.ground import Grounder, evaluate_grounding, read_grounding_split
    from hrem.train.grounding import GroundingTask
    from hrem.train.grounding_run import build_grounding_trainer
    from hrem.utils.device import resolve_device

    if args.resume == "never" and (args.out / "training_state.pt").is_file():
        raise ValueError(f"{args.out}/training_state.pt exists and --resume never was given; use a new --out")
    _set_threads(args)
    card = load_card(args.card, parse_overrides(args.overrides))
    if card.kind != "mcn":
        raise ValueError(f"--card {args.card}: expected a grounding card (kind 'mcn'), found kind {card.kind!r}")
    device, data = resolve_device(args.device), _data_dir(args)
    task = GroundingTask(args.task, cem=not args.no_cem)
    dev_refs = read_grounding_split(data, args.dev_split, args.images, args.masks)
    limit = args.dev_limit or None
    asnls = False if task.task == "res" else None  # a RES-only model has no trained box to sharpen with

    def evaluate(model) -> dict:
        summary = evaluate_grounding(model.eval(), tokenizer, dev_refs, device, args.eval_batch_size, 0, asnls,
                                     limit)
        print(format_summary(args.dev_split, summary))
        # the Trainer keeps the best by "rsum": here the grounding selection score
        return {"rsum": summary.get("acc@0.5", 0.0) * task.rec + summary.get("miou", 0.0) * task.res, **summary}

    train_refs = read_grounding_split(data, args.train_split, args.images, args.masks)
    trainer = build_grounding_trainer(card, train_refs, args.out, _train_config(args), task, device, evaluate,
                                      kmeans=not args.no_kmeans,
                                      extra_args={"data": str(data), "command": _command(args)})
    tokenizer = trainer.collate.tokenizer
    trainer.resume()
    trainer.run()
    tests = [s for s in args.test_splits.split(",") if s.strip()]
    if tests:
        from hrem.eval.report import write_report

        best = Grounder.load(args.out, device=device, batch_size=args.eval_batch_size)
        results = evaluate_splits(best, data, tests, args, asnls)
        write_report(args.out / "report", results, {"model": str(args.out), "fingerprint": best.fingerprint,
                                                    "data": str(data), "task": task.task, "cem": task.uses_cem})
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line as typed (`hrem ...` for the console script and `python -m hrem`)."""
    import shlex
    import sys

    if sys.argv and Path(sys.argv[0]).name in ("hrem", "__main__.py"):
        return "hrem " + shlex.join(sys.argv[1:])
    return "python " + shlex.join(sys.argv)
