"""`hrem train-detector`, `hrem evaluate-detector`: the ShapesRef region detector (BUTD-style)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hrem.cli.options import add_threads_argument, parse_fractions


def register(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser(
        "train-detector", help="train the region detector (boxes + object / attribute region head)",
        description="Train a detector card (kind 'detector', default shapes-detector) on the train split of a "
                    "ShapesRef folder (scene graphs: boxes, shapes, colours, sizes). The best dev model (AP50 + "
                    "joint attribute accuracy) is saved to OUT; re-running the same command resumes. The test "
                    "split is evaluated at the end into OUT/report.json.", formatter_class=fmt)
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--card", default="shapes-detector", help="detector card name or card JSON")
    _add_data(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--lr", type=float, default=None, help="AdamW lr, default 2e-3")
    p.add_argument("--epochs", type=int, default=None, help="default 30")
    p.add_argument("--max-iters", type=int, default=None, help="stop (resumably) after this many iterations")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="stop (resumably) after MIN min")
    p.add_argument("--decay-fractions", type=parse_fractions, default=None,
                   help="fractions of the budget where lr /= 10, e.g. 0.75")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--eval-every", type=int, default=0, help="iterations between dev evaluations; 0 = each epoch")
    p.add_argument("--save-every", type=int, default=200, help="iterations between resumable states")
    p.add_argument("--dev-limit", type=int, default=300, help="dev images per evaluation (0 = all)")
    p.add_argument("--resume", choices=("auto", "never"), default="auto")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "evaluate-detector", help="box AP50 and attribute accuracy of a detector",
        description="Evaluate a detector run on a ShapesRef split: class-agnostic box AP50, per-shape mAP50 "
                    "and the shape / colour / size accuracy of each object's best match (IoU >= 0.5).",
        formatter_class=fmt)
    e.add_argument("--model", default="packaged:shapes-detector", help="detector run dir or packaged:NAME")
    _add_data(e)
    e.add_argument("--split", default="test")
    e.add_argument("--out", type=Path, default=None, help="write report.json here")
    e.set_defaults(func=run_evaluate)


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None,
                   help="ShapesRef folder (default: the cached demo ShapesRef, generated on first use)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda:N")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    add_threads_argument(p)


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return args.data
    from hrem.data.cache import ensure_shapesref

    return ensure_shapesref()


def _evaluator(card, records, device, workers):
    from hrem.pipeline.detect import DetectorEvaluator

    return DetectorEvaluator(records, card.input_size, card.objects, device, workers=workers)


def _print_report(report: dict, split: str) -> None:
    acc = report["attribute_accuracy"]
    print(f"{split}: {report['images']} images, {report['objects']} objects; box AP50 {report['ap50']:.2f}, "
          f"per-shape mAP50 {report['map50']:.2f}; accuracy object {acc['object']:.2f}, "
          + ", ".join(f"{k} {v:.2f}" for k, v in acc.items() if k not in ("object", "all"))
          + f", all {acc['all']:.2f}")


def run_train(args: argparse.Namespace) -> int:
    from hrem.data.detection_dataset import read_detection_split
    from hrem.factory import load_card
    from hrem.train.detector import build_detector_trainer, detector_train_config
    from hrem.utils.device import resolve_device, set_threads
    from hrem.utils.files import write_json_atomic
    from hrem.utils.seed import seed_everything

    if args.resume == "never" and (args.out / "training_state.pt").is_file():
        raise ValueError(f"{args.out}/training_state.pt exists and --resume never was given; use a new --out")
    set_threads(args.threads)
    device = resolve_device(args.device)
    card = load_card(args.card)
    if card.kind != "detector":
        raise ValueError(f"--card {args.card}: expected a detector card, found kind {card.kind!r}")
    data = _data_dir(args)
    config = detector_train_config(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                   precision=args.precision, workers=args.workers, eval_every=args.eval_every,
                                   save_every=args.save_every, max_iters=args.max_iters,
                                   time_budget_min=args.time_budget, decay_fractions=args.decay_fractions)
    seed_everything(args.seed)
    train = read_detection_split(data, "train", card.objects, card.attributes)
    dev = read_detection_split(data, "dev", card.objects, card.attributes)
    dev = dev[:args.dev_limit] if args.dev_limit else dev
    trainer = build_detector_trainer(card, train, args.out, config, device, _evaluator(card, dev, device, args.workers),
                                     {"data": str(data), "command": "train-detector"})
    if args.resume != "never":
        trainer.resume()
    position = trainer.run()
    print(f"trained {position.iteration} iterations; best dev score {position.best_rsum:.2f} (AP50 + joint "
          f"attribute accuracy) at iteration {position.best_iteration}; model in {args.out}")
    from hrem.checkpoint import load_run

    model, _, _ = load_run(args.out, device=device)
    test = read_detection_split(data, "test", card.objects, card.attributes)
    report = _evaluator(card, test, device, args.workers)(model)
    write_json_atomic(args.out / "report.json", {"split": "test", "data": str(data), **report})
    _print_report(report, "test")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from hrem.checkpoint.detector import load_detector
    from hrem.data.detection_dataset import read_detection_split
    from hrem.utils.device import resolve_device, set_threads
    from hrem.utils.files import write_json_atomic

    set_threads(args.threads)
    device = resolve_device(args.device)
    loaded = load_detector(args.model, device)
    card = getattr(loaded.module, "card", None)
    if card is None or getattr(card, "kind", None) != "detector":
        raise ValueError(f"--model {args.model}: evaluate-detector needs an hrem detector run (ShapesRef labels)")
    records = read_detection_split(_data_dir(args), args.split, card.objects, card.attributes)
    report = _evaluator(card, records, device, args.workers)(loaded.module)
    _print_report(report, args.split)
    if args.out:
        write_json_atomic(args.out / "report.json", {"split": args.split, "model": str(args.model), **report})
        print(json.dumps({"wrote": str(args.out / "report.json")}))
    return 0
