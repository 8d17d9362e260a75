"""`hrem index`: build or extend a FAISS index over an embeddings directory (torch-free)."""
from __future__ import annotations

import argparse

from hrem.cli.options import add_out_argument, add_threads_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build / append a FAISS index over an embeddings directory",
        description="Build a FAISS index (index.faiss + index.json in the folder --out) over one modality of an embeddings "
                    "directory. 'auto' picks Flat / HNSW / IVF from N, dim and --max-memory, trains IVF/PQ on "
                    "a uniform random sample of all shards, and tunes nprobe/efSearch on queries of the other "
                    "modality until recall@10 vs exact search reaches --target-recall.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--emb", required=True, help="embeddings directory (manifest.json + Parquet shards)")
    add_out_argument(parser, required=True)
    parser.add_argument("--modality", default="images", choices=["images", "captions"], help="what to index")
    parser.add_argument("--factory", default="auto", help="'auto' or a FAISS factory string, e.g. HNSW32,Flat")
    parser.add_argument("--metric", default="ip", choices=["ip", "l2"], help="similarity")
    parser.add_argument("--max-memory", default="4G", help="RAM budget of the index (auto choice, on-disk switch)")
    parser.add_argument("--target-recall", type=float, default=0.95, help="recall@10 vs exact to tune for")
    parser.add_argument("--append", action="store_true", help="add only shards not yet in the index")
    parser.add_argument("--on-disk", action="store_true", help="IVF only: build parts and merge them on disk")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: IVF k-means on GPU")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training sample and tuning queries")
    parser.add_argument("--tune-queries", type=int, default=1000, help="held-out queries for tuning")
    parser.add_argument("--engine", default="local", choices=["local", "ray"],
                        help="ray: build the on-disk parts in parallel Ray tasks (implies --on-disk)")
    parser.add_argument("--ray-address", default="", help="--engine ray: join this cluster (default: a local one)")
    parser.add_argument("--shards-per-part", type=int, default=4, metavar="N",
                        help="on-disk build: shards added per part file (one part is in RAM at a time; with "
                             "--engine ray, one Ray task per part)")
    parser.add_argument("--pilot-rows", type=int, default=100_000, metavar="N",
                        help="auto under --max-memory: database sample each IVF candidate is built and tuned on")
    add_threads_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrem.config.base import from_dict
    from hrem.config.index import IndexBuildConfig
    from hrem.index import build_index

    config = from_dict(IndexBuildConfig, {
        "modality": args.modality, "factory": args.factory, "metric": args.metric, "max_memory": args.max_memory,
        "target_recall": args.target_recall, "append": args.append, "on_disk": args.on_disk,
        "device": args.device, "seed": args.seed, "tune_queries": args.tune_queries,
        "engine": args.engine, "ray_address": args.ray_address, "shards_per_part": args.shards_per_part,
        "pilot_rows": args.pilot_rows, "threads": args.threads}, where="hrem index")
    info = build_index(args.emb, args.out, config)
    tuning = info.tuning
    lines = [
        f"index      {args.out}  ({info.modality}, {info.ntotal:,} vectors x {info.dim}, metric {info.metric})",
        f"factory    {info.factory}{'  [on disk]' if info.on_disk else ''}  params {info.search_params or '-'}",
        f"reason     {info.auto_reason or 'explicit --factory'}",
        (f"recall@10  {tuning.get('recall_at_10')} vs exact (target {tuning.get('target_recall')}, "
         f"{'reached' if tuning.get('target_reached') else 'NOT reached'}; {tuning.get('queries')} queries: "
         f"{tuning.get('query_source')})"),
        f"QPS        {tuning.get('qps_batch')} batch, {tuning.get('qps_single')} single-query",
        f"build      {info.build_seconds:.1f} s, index.faiss {info.index_bytes / 2**20:.1f} MiB",
        f"phases     {', '.join(f'{name} {sec:.1f} s' for name, sec in info.timings.items()) or '-'}",
        *(f"candidate  {c['factory']}: pilot recall@10 {c['recall_at_10']} at {c['params']}, "
          f"{c['qps_batch']} QPS -- {c['verdict']}" for c in info.candidates),
    ]
    print("\n".join(lines))
    return 0
