"""Index benchmark: Flat vs HNSW vs IVF-PQ vs auto on clustered, normalised 1024-d vectors.

    python benchmarks/bench_index.py --sizes 100k            # a few minutes on 2 cores
    python benchmarks/bench_index.py --sizes 1M              # long: 4 GB of float32, long HNSW/IVF builds

The corpus goes through the real stages: Parquet shards + manifest written by hrem.store, indices built by
hrem.index.build_index (uniform training sample, tuning on the 'captions' queries to recall@10 >= 0.95).
Database vectors lie near a 64-d subspace around 2,000 cluster centres; queries come from a SHIFTED
distribution (a fixed offset added before normalising, like text queries against images). Evaluation uses
fresh queries that were not used for tuning. Ground truth = the exact Flat index built in the same run,
which is also the QPS and RAM baseline. `auto` gets --max-memory = 0.5 x the Flat index size, i.e. the
issue's RAM target is given to it as its budget.

Columns: build s | index MiB (index.faiss) | RSS MiB (resident growth when loading) | recall@10 vs exact |
batch QPS (all eval queries in one call) | single QPS (one query per call) | ratios vs Flat.
Aim at 1M: recall@10 >= 0.95 at >= 20x Flat's batch QPS with RAM <= 0.5x Flat.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hrem.index import build_index, load_index
from hrem.index.tune import measure_qps
from hrem.store import build_table, new_manifest, write_manifest, write_shard

RANK, CENTRES, SHARD_ROWS = 64, 2000, 50_000


class Generator:
    """Clustered vectors near a low-dimensional subspace (not uniform noise, which no ANN index handles)."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.basis = np.linalg.qr(rng.normal(size=(dim, RANK)))[0].T.astype(np.float32)  # [RANK, dim]
        self.centres = rng.normal(size=(CENTRES, RANK)).astype(np.float32)
        self.shift = rng.normal(size=dim).astype(np.float32)
        self.shift *= 0.6 / np.linalg.norm(self.shift)
        self.dim = dim

    def sample(self, n: int, seed: int, shifted: bool = False) -> np.ndarray:
        rng = np.random.default_rng(seed)
        low = self.centres[rng.integers(0, CENTRES, n)] + 0.5 * rng.normal(size=(n, RANK)).astype(np.float32)
        x = low @ self.basis
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += 0.3 / np.sqrt(self.dim) * rng.normal(size=x.shape).astype(np.float32)
        if shifted:
            x += self.shift
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_corpus(emb_dir: Path, gen: Generator, n: int, tune_queries: int) -> None:
    manifest = new_manifest("bench-model", gen.dim)
    for number, start in enumerate(range(0, n, SHARD_ROWS)):
        rows = min(SHARD_ROWS, n - start)
        ids = np.arange(start, start + rows)
        table = build_table(ids, [f"{i}.jpg" for i in ids], gen.sample(rows, seed=1000 + number))
        manifest = manifest.with_shard("images", write_shard(emb_dir, "images", number, table))
    queries = gen.sample(tune_queries, seed=1, shifted=True)
    table = build_table(np.arange(tune_queries) + 10**9, ["query"] * tune_queries, queries,
                        image_ids=np.zeros(tune_queries, np.int64))
    manifest = manifest.with_shard("captions", write_shard(emb_dir, "captions", 0, table))
    write_manifest(emb_dir, manifest)


_RSS_PROBE = """
import sys
from hrem.index import load_index
def rss():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20
before = rss()
index, _ = load_index(sys.argv[1])
print(rss() - before)
"""


def loaded_rss_mib(index_dir: Path) -> float:
    """Resident memory added by loading the index, measured in a fresh process (no heap reuse)."""
    result = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(index_dir)], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def run_one(emb_dir: Path, out: Path, factory: str, queries: np.ndarray, max_memory: str) -> dict:
    start = time.perf_counter()
    info = build_index(emb_dir, out, factory=factory, max_memory=max_memory, target_recall=0.95)
    build_s = time.perf_counter() - start
    rss = loaded_rss_mib(out)
    index, _ = load_index(out)
    _, found = index.search(queries, 10)
    batch, single = measure_qps(index, queries, 10, single_budget_s=3.0)
    del index
    return {"factory": info.factory, "params": info.search_params, "build_s": build_s,
            "mib": info.index_bytes / 2**20, "rss": rss, "found": found, "batch": batch, "single": single}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


def bench_size(n: int, dim: int, workdir: Path, factories: list[str], eval_queries: int) -> None:
    gen = Generator(dim)
    emb = workdir / f"emb-{n}"
    start = time.perf_counter()
    if not (emb / "manifest.json").is_file():
        write_corpus(emb, gen, n, tune_queries=1000)
    print(f"\n## N = {n:,}, dim {dim}  (corpus ready in {time.perf_counter() - start:.0f} s)", flush=True)
    queries = gen.sample(eval_queries, seed=2, shifted=True)  # fresh queries, not the tuning ones
    flat = run_one(emb, workdir / f"idx-{n}-flat", "Flat", queries, "1T")
    half_flat = f"{int(flat['mib'] * 2**20 / 2)}"
    _print_header()
    _print_row("Flat (exact)", flat, flat)
    for number, factory in enumerate(factories):
        name = factory.replace("{nlist}", str(_nlist(n)))
        budget = half_flat if factory == "auto" else "1T"
        _print_row(name, run_one(emb, workdir / f"idx-{n}-{number}", name, queries, budget), flat)


def _nlist(n: int) -> int:
    from hrem.index import nlist_for
    return nlist_for(n)


def _print_header() -> None:
    print("| index | chosen factory / params | build s | index MiB | RSS MiB | recall@10 | batch QPS | "
          "single QPS | batch QPS / Flat | RAM / Flat |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)


def _print_row(name: str, r: dict, flat: dict) -> None:
    print(f"| {name} | {r['factory']} {r['params'] or ''} | {r['build_s']:.1f} | {r['mib']:.0f} | "
          f"{r['rss']:.0f} | {recall(r['found'], flat['found']):.3f} | {r['batch']:.0f} | {r['single']:.0f} | "
          f"{r['batch'] / flat['batch']:.1f}x | {r['mib'] / flat['mib']:.2f}x |", flush=True)


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100k,1M", help="comma-separated corpus sizes (100k, 1M, ...)")
    parser.add_argument("--dim", type=int, default=1024)
    # IVF1024, not the {nlist} rule: at 1M the rule gives 16384 lists, whose k-means takes hours on a CPU
    parser.add_argument("--factories", default="HNSW32,Flat;IVF1024,PQ64x8np;auto",
                        help="';'-separated factory strings compared with Flat ({nlist} = hrem's nlist rule)")
    parser.add_argument("--eval-queries", type=int, default=1000)
    parser.add_argument("--workdir", default="/tmp/hrem-bench-index", help="corpus and indices go here")
    parser.add_argument("--keep", action="store_true", help="keep the corpus and indices afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(args.workdir)
    try:
        for size in args.sizes.split(","):
            bench_size(parse_size(size), args.dim, workdir, args.factories.split(";"), args.eval_queries)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
