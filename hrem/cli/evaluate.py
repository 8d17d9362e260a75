"""`hrem evaluate`: R@1/5/10, medr, meanr and rsum of a run directory on a dataset split."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="R@K report of a model on a dataset split",
        description="Encode every image of the split once and its captions in length-sorted batches, then "
                    "write report.json, report.md and recall_curves.png. Protocols: f30k (1K test), coco5k, "
                    "coco1k (5-fold mean), all (the whole split); auto picks the dataset's paper protocols.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="run directory (config.json + model.safetensors)")
    p.add_argument("--data", required=True, type=Path, help="dataset folder (Karpathy/ShapesRef or *_precomp)")
    p.add_argument("--split", default="test", help="train, dev (= val), test or testall")
    p.add_argument("--protocol", default="auto", help="comma-separated: auto, all, f30k, coco1k, coco5k")
    p.add_argument("--out", type=Path, default=None, help="report folder (default RUN/eval-<split>)")
    p.add_argument("--save-sims", action="store_true", help="also save the [images, captions] score matrix sims.npy")
    p.add_argument("--image-root", type=Path, default=None, help="image folder when not the dataset folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--index", type=Path, default=None,
                   help="also R@K through this FAISS index (or folder of images/ + captions/ indices), "
                        "side by side with exact search")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrem.pipeline.encode import EncodeOptions
    from hrem.pipeline.evaluate import evaluate_run
    from hrem.utils.device import resolve_device

    options = EncodeOptions(device=resolve_device(args.device), batch_size=args.batch_size, workers=args.workers,
                            precision=args.precision)
    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    report = evaluate_run(args.model, args.data, args.split, protocols, args.out, options, args.save_sims,
                          args.image_root, index_dir=args.index)
    for protocol, summary in report["results"].items():
        print(f"{protocol}: i2t R@1/5/10 {summary['i2t_r1']:.1f} / {summary['i2t_r5']:.1f} / {summary['i2t_r10']:.1f}"
              f"  t2i R@1/5/10 {summary['t2i_r1']:.1f} / {summary['t2i_r5']:.1f} / {summary['t2i_r10']:.1f}"
              f"  rsum {summary['rsum']:.1f}")
    if report.get("ann"):
        from hrem.pipeline.search_eval import side_by_side

        print("\n".join(side_by_side(next(iter(report["results"].values())), report["ann"])))
    print(f"report written to {report['out_dir']}")
    return 0
