"""`hrem regions`: raw images through a region detector into the SCAN/BUTD precomp layout."""
from __future__ import annotations

import argparse

from hrem.cli.options import (
    HelpFormatter,
    add_batch_size_argument,
    add_device_argument,
    add_out_argument,
    add_precision_argument,
    add_progress_argument,
    add_splits_argument,
    add_threads_argument,
    add_workers_argument,
    model_type,
)

DESCRIPTION = """Detect regions in every image of a ShapesRef/Karpathy folder (or a .parquet/.csv listing of
images) and write the SCAN/BUTD precomp layout that `hrem train`, `hrem evaluate` and `hrem embed` read:
{split}_ims.npy [N, R, F] (the detector's region features, plus 5 box-geometry columns unless
--no-geometry), {split}_boxes.npy [N, R, 4] (original-image pixels), {split}_scores.npy, {split}_ids.txt and
{split}_caps.txt (5 per image, Karpathy inputs). R boxes per image as BUTD's fixed-36 setting: the boxes that
survive NMS, best first, then the best suppressed ones until R rows exist. The detector is an hrem detector
run directory, a shipped name ('shapes-detector' or 'packaged:shapes-detector') or a local transformers
object-detection folder (DETR, Conditional-DETR, RT-DETR). Shards are written atomically and recorded in
regions.json: a killed job resumes where it stopped; unreadable images go to failures.parquet (their
captions are left out). Batch size default 32, workers 2."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("regions", help="detect regions in images -> precomp region features",
                                   description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--detector", default="packaged:shapes-detector", type=model_type("detector"),
                        help="hrem detector run dir, shipped name (`hrem models`), or a transformers detector dir")
    parser.add_argument("--data", required=True, help="image folder with dataset_*.json, or a listing file")
    add_out_argument(parser, required=True)
    add_splits_argument(parser)
    parser.add_argument("--regions", type=int, default=36, help="region rows per image")
    parser.add_argument("--no-geometry", action="store_true", help="features only, no box-geometry columns")
    parser.add_argument("--input-size", type=int, default=None, help="letterbox side for transformers detectors")
    parser.add_argument("--shard-size", type=int, default=1000, help="images per resumable shard")
    add_batch_size_argument(parser)
    add_workers_argument(parser)
    add_device_argument(parser)
    add_threads_argument(parser)
    add_precision_argument(parser)
    parser.add_argument("--image-root", default=None, help="root of relative image paths (default: input folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder written with other settings")
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrem.config.base import from_dict
    from hrem.pipeline.regions import RegionsConfig, run_regions

    values = {  # None: RegionsConfig's default (batch 32, workers 2)
        "detector": args.detector, "data": args.data, "out": str(args.out),
        "splits": list(args.splits or ()), "regions": args.regions,
        "geometry": not args.no_geometry, "input_size": args.input_size, "shard_size": args.shard_size,
        "batch_size": args.batch_size, "workers": args.workers, "device": args.device, "threads": args.threads,
        "precision": args.precision, "image_root": args.image_root, "overwrite": args.overwrite}
    cfg = from_dict(RegionsConfig, {k: v for k, v in values.items() if v is not None}, where="hrem regions")
    summary = run_regions(cfg, show_progress=args.progress)
    print("\n".join(summary.lines()))
    return 0
