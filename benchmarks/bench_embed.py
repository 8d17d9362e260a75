"""End-to-end throughput and peak memory of the embed job at two corpus sizes.

    python benchmarks/bench_embed.py [--sizes 10000 100000] [--card tiny-regions] [--regions 12]

Each size runs `hrem embed` in a fresh subprocess on a precomp-format folder of random region features
(`test_ims.npy`, read through a memmap, [N, regions, feature_dim]) with a random-weight model of the given
card (default `tiny-regions`: 16-d features, 32-d embeddings), images only, shards of 10,000. Reported:
items/s (wall time of the whole command, start-up included, and the job's own encode throughput), and
the peak RSS of the subprocess (resource.getrusage RUSAGE_CHILDREN). The baseline is the smallest size in
the same run: the aim is peak RSS growing <= 20% from 10k to 100k items (memory bounded by one shard).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_precomp(folder: Path, n: int, regions: int, feature_dim: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    feats = np.lib.format.open_memmap(folder / "test_ims.npy", mode="w+", dtype=np.float32,
                                      shape=(n, regions, feature_dim))
    rng = np.random.default_rng(0)
    for start in range(0, n, 10_000):
        stop = min(start + 10_000, n)
        feats[start:stop] = rng.standard_normal((stop - start, regions, feature_dim), dtype=np.float32)
    feats.flush()
    del feats
    with open(folder / "test_caps.txt", "w") as handle:
        handle.writelines(f"caption {j}\n" for j in range(5 * n))


def make_run(run_dir: Path, card: str) -> None:
    import torch

    from hrem.checkpoint import save_run
    from hrem.factory import create_model, load_card

    torch.manual_seed(0)
    card_obj = load_card(card)
    save_run(run_dir, create_model(card_obj), card_obj)


def run_once(data: Path, run: Path, out: Path, batch: int) -> dict:
    cmd = [sys.executable, "-m", "hrem", "--log-level", "WARNING", "embed", "--data", str(data), "--model",
           str(run), "--out", str(out), "--modalities", "images", "--shard-size", "10000", "50000",
           "--batch-size", str(batch), "--device", "cpu", "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib < before:
        raise RuntimeError("ru_maxrss went down; run each size in a fresh parent process")
    manifest = json.loads((out / "manifest.json").read_text())
    shards = manifest["shards"]["images"]
    encode = sum(s["timings"].get("encode", 0) + s["timings"].get("read", 0) + s["timings"].get("write", 0)
                 for s in shards)
    rows = sum(s["rows"] for s in shards)
    return {"rows": rows, "wall_s": wall, "job_s": encode, "peak_rss_mib": peak_kib / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--card", default="tiny-regions")
    parser.add_argument("--regions", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    # ru_maxrss of RUSAGE_CHILDREN is the max over all children so far: measure sizes in increasing
    # order, so each reading is the peak of the latest (largest) child.
    args.sizes = sorted(args.sizes)
    from hrem.factory import load_card

    feature_dim = load_card(args.card).image.feature_dim
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp:
        tmp = Path(tmp)
        make_run(tmp / "run", args.card)
        for n in args.sizes:
            data = tmp / f"d{n}" / "bench_precomp"
            make_precomp(data, n, args.regions, feature_dim)
            results.append({"n": n, **run_once(data, tmp / "run", tmp / f"emb{n}", args.batch_size)})
    base = results[0]
    print(f"embed job, card {args.card} (random weights), precomp features [N, {args.regions}, {feature_dim}] "
          f"via memmap, images only, shards of 10,000, batch {args.batch_size}, CPU")
    print(f"{'items':>9} {'wall s':>8} {'items/s (wall)':>15} {'items/s (job)':>14} {'peak RSS MiB':>13} "
          f"{'RSS vs ' + str(base['n']):>12}")
    for r in results:
        print(f"{r['n']:>9,} {r['wall_s']:>8.1f} {r['rows'] / r['wall_s']:>15.0f} {r['rows'] / r['job_s']:>14.0f} "
              f"{r['peak_rss_mib']:>13.0f} {r['peak_rss_mib'] / base['peak_rss_mib']:>11.2f}x")
    growth = results[-1]["peak_rss_mib"] / base["peak_rss_mib"] - 1
    print(f"peak RSS growth {base['n']:,} -> {results[-1]['n']:,} items: {100 * growth:+.1f}% "
          f"(aim <= +20%: {'met' if growth <= 0.20 else 'NOT met'})")


if __name__ == "__main__":
    main()
