"""`hrem embed`: batch-embed a corpus into Parquet shards + manifest.json (resumable; local or Ray engine).

Without --data/--model/--out it runs the embedded demo (ShapesRef test split + the shipped demo model).
"""
from __future__ import annotations

import argparse

from hrem.cli.options import (
    HelpFormatter,
    add_batch_size_argument,
    add_device_argument,
    add_out_argument,
    add_precision_argument,
    add_progress_argument,
    add_split_argument,
    add_threads_argument,
    add_workers_argument,
    model_type,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="batch-embed a corpus (images and captions) into an embeddings directory",
        description="Embed a ShapesRef/Karpathy folder, a *_precomp folder, or a .parquet/.csv listing of "
                    "image paths and/or captions (optional id / image_id columns; other columns pass "
                    "through as metadata) into Parquet shards + manifest.json + failures.parquet. Shards are "
                    "written atomically; re-running the same command skips complete shards, so a killed job "
                    "resumes. With no --data/--model/--out: the embedded demo.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data", help="input folder or listing file")
    parser.add_argument("--model", type=model_type("retrieval"), help="retrieval run directory or shipped name, e.g. demo (see `hrem models`)")
    add_out_argument(parser)
    add_split_argument(parser)
    parser.add_argument("--modalities", default="", help="comma list of images, captions (default: all the input has)")
    parser.add_argument("--shard-size", type=int, nargs=2, default=[10_000, 50_000], metavar=("IMAGES", "CAPTIONS"),
                        help="items per shard for images and for captions")
    add_batch_size_argument(parser)
    add_workers_argument(parser)
    add_precision_argument(parser)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="stored embedding dtype")
    add_device_argument(parser)
    parser.add_argument("--engine", default="local", choices=["local", "ray"], help="where shard tasks run")
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local one)")
    parser.add_argument("--ray-actors", type=int, default=0, help="Ray actors (0 = one per GPU, else per CPU)")
    add_threads_argument(parser)
    parser.add_argument("--image-root", default=None, help="root of relative image paths (default: input folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace a directory made from another input/model")
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    given = [args.data, args.model, args.out]
    if not any(given):
        from hrem.pipeline.demo import run_demo

        return run_demo(show_progress=args.progress)
    if not all(given):
        raise ValueError("hrem embed: give all of --data, --model and --out (or none of them for the demo)")
    from hrem.config.base import from_dict
    from hrem.pipeline.embed import run_embed
    from hrem.pipeline.embed.config import EmbedConfig

    values = {  # None: EmbedConfig's default (batch 128, workers 2)
        "data": args.data, "model": args.model, "out": str(args.out), "split": args.split,
        "modalities": [m.strip() for m in args.modalities.split(",") if m.strip()],
        "image_shard_size": args.shard_size[0], "caption_shard_size": args.shard_size[1],
        "batch_size": args.batch_size, "workers": args.workers, "dtype": args.dtype, "device": args.device,
        "precision": args.precision,
        "engine": args.engine, "ray_address": args.ray_address, "ray_actors": args.ray_actors,
        "threads": args.threads, "image_root": args.image_root, "overwrite": args.overwrite}
    cfg = from_dict(EmbedConfig, {k: v for k, v in values.items() if v is not None}, where="hrem embed")
    summary = run_embed(cfg, show_progress=args.progress)
    print("\n".join(summary.lines()))
    return 0
