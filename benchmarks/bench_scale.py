"""Scale benchmark: 10M clustered vectors, `hrem index --factory auto --max-memory 6G --on-disk`, served
memory-mapped.

    python benchmarks/bench_scale.py --n 200000                        # minutes: the pipeline at small scale
    python benchmarks/bench_scale.py --n 10000000 --workdir /tmp/hrem-scale \\
        --results benchmarks/results/bench_scale.txt                    # the issue-16 run (hours)
    python benchmarks/bench_scale.py --n 10000000 --workdir /tmp/hrem-scale --phases serve   # QPS only

Phases (`--phases data,build,truth,serve`; each one reuses what the earlier ones left in --workdir):
  data   fp16 Parquet shards through hrem.store (the embed job's format): vectors near a 64-d subspace around
         2,000 centres; 1,000 tuning "captions" and 1,000 evaluation queries from a SHIFTED distribution
         (a shared offset before normalising, like text queries against image embeddings). Seeded, chunked,
         restartable: a shard already listed in the manifest with the same parameters is kept.
  build  `hrem index` as a child process; wall time, the per-phase times index.json records, and the child's
         peak RSS (getrusage(RUSAGE_CHILDREN).ru_maxrss).
  truth  exact top-10 of the evaluation queries by a streaming flat scan over the shards (the baseline:
         its QPS is the exact-search QPS every ratio is taken against); cached as truth-<n>.npz.
  serve  a fresh child process opens the index memory-mapped and measures recall@10 vs the truth, batch QPS
         (all queries in one call) and single-query QPS (one call per query, one thread), its peak RSS
         (VmHWM) and the load average while it ran.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hrem.index import exact_search_stream, read_info, recall_at_k
from hrem.store import (build_table, iter_embeddings, load_manifest, new_manifest, shard_name, verify_shard,
                        write_manifest, write_shard)

RANK, CENTRES, SHIFT, SPREAD = 64, 2000, 0.6, 1.0
GENERATOR = "bench_scale-v2"


class Generator:
    """Clustered unit vectors near a RANK-d subspace; `shifted` adds a shared offset (cross-distribution)."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.basis = np.linalg.qr(rng.standard_normal((dim, RANK)))[0].T.astype(np.float32)  # [RANK, dim]
        self.centres = rng.standard_normal((CENTRES, RANK), dtype=np.float32)
        shift = rng.standard_normal(dim, dtype=np.float32)
        self.shift = shift * (SHIFT / np.linalg.norm(shift))
        self.dim = dim

    def sample(self, n: int, seed: int, shifted: bool = False) -> np.ndarray:
        rng = np.random.default_rng(seed)
        low = self.centres[rng.integers(0, CENTRES, n)]
        low += SPREAD * rng.standard_normal((n, RANK), dtype=np.float32)
        x = low @ self.basis
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += (0.3 / np.sqrt(self.dim)) * rng.standard_normal(x.shape, dtype=np.float32)
        if shifted:
            x += self.shift
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def corpus_params(n: int, dim: int, shard_rows: int) -> dict:
    return {"generator": GENERATOR, "n": n, "dim": dim, "shard_rows": shard_rows, "rank": RANK,
            "centres": CENTRES, "shift": SHIFT, "spread": SPREAD, "seed": 0}


def write_corpus(emb: Path, n: int, dim: int, shard_rows: int) -> float:
    """Write (or finish writing) the corpus; return the seconds spent. Existing shards are verified."""
    start, params, gen = time.perf_counter(), corpus_params(n, dim, shard_rows), Generator(dim)
    manifest = _resume_manifest(emb, params)
    for number, first in enumerate(range(0, n, shard_rows)):
        record = manifest.shard("images", shard_name(number))
        if record is not None and verify_shard(emb, "images", record):
            continue
        rows = min(shard_rows, n - first)
        ids = np.arange(first, first + rows)
        table = build_table(ids, np.char.mod("%d.jpg", ids), gen.sample(rows, seed=1000 + number), dtype="float16")
        manifest = manifest.with_shard("images", write_shard(emb, "images", number, table))
        write_manifest(emb, manifest)
        print(f"  shard {number}: {first + rows:,}/{n:,} rows, {time.perf_counter() - start:.0f} s", flush=True)
    if manifest.shard("captions", shard_name(0)) is None:
        queries = gen.sample(1000, seed=1, shifted=True)
        table = build_table(10**10 + np.arange(1000), ["query"] * 1000, queries,
                            image_ids=np.zeros(1000, np.int64), dtype="float16")
        manifest = manifest.with_shard("captions", write_shard(emb, "captions", 0, table))
        write_manifest(emb, manifest)
    return time.perf_counter() - start


def _resume_manifest(emb: Path, params: dict):
    if (emb / "manifest.json").is_file():
        manifest = load_manifest(emb)
        if manifest.extra.get("corpus") == params:
            return manifest
        raise SystemExit(f"{emb}: holds a corpus with parameters {manifest.extra.get('corpus')}, expected "
                         f"{params}; use another --workdir or delete it")
    return new_manifest("bench-scale", params["dim"], dtype="float16", extra={"corpus": params})


def eval_queries(dim: int, count: int) -> np.ndarray:
    return Generator(dim).sample(count, seed=2, shifted=True)  # not the tuning queries (seed 1)


def build(emb: Path, out: Path, max_memory: str, engine: str) -> dict:
    """`hrem index` in a child process: wall seconds, its peak RSS, and what index.json records."""
    cmd = ["hrem", "index", "--emb", str(emb), "--out", str(out), "--factory", "auto", "--max-memory", max_memory,
           "--on-disk", "--engine", engine]
    print("build: " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    info = read_info(out)
    return {"wall_s": round(wall, 1), "peak_rss_bytes": peak, "factory": info.factory, "params": info.search_params,
            "timings": info.timings, "index_faiss_bytes": info.index_bytes,
            "ivfdata_bytes": (out / "index.ivfdata").stat().st_size if info.on_disk else 0,
            "ntotal": info.ntotal, "candidates": list(info.candidates), "tuning_recall": info.tuning["recall_at_10"]}


def truth(emb: Path, queries: np.ndarray, cache: Path) -> tuple[np.ndarray, float]:
    """(exact top-10 ids, exact-scan QPS) by a streaming flat scan over every shard; cached in `cache`."""
    if cache.is_file():
        data = np.load(cache)
        return data["ids"], float(data["qps"])
    start = time.perf_counter()
    _, ids = exact_search_stream(queries, iter_embeddings(emb, "images", 65536), 10, "ip")
    qps = len(queries) / (time.perf_counter() - start)
    np.savez(cache, ids=ids, qps=qps)
    return ids, qps


_SERVE = """
import json, os, sys, time
import numpy as np
from hrem.index import load_index
from hrem.index.tune import measure_qps
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
queries = np.load(sys.argv[2])
base = hwm()
start = time.perf_counter()
index, info = load_index(sys.argv[1], mmap=True)
load_s = time.perf_counter() - start
_, found = index.search(queries, 10)                      # cold: pages come from disk
load1 = os.getloadavg()[0]
batch, single = measure_qps(index, queries, 10, single_budget_s=10.0)   # warm
print(json.dumps({"found": found.tolist(), "batch": batch, "single": single, "load_s": load_s,
                  "peak_rss_bytes": hwm(), "python_rss_bytes": base,
                  "loadavg": [load1, os.getloadavg()[0]]}))
"""


def serve(out: Path, queries: np.ndarray, workdir: Path) -> dict:
    """Open the index memory-mapped in a fresh process; recall inputs, QPS, its peak RSS and the load."""
    path = workdir / "eval-queries.npy"
    np.save(path, queries)
    result = subprocess.run([sys.executable, "-c", _SERVE, str(out), str(path)], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(args, corpus_s: float | None, built: dict | None, exact_qps: float, served: dict, truth_ids) -> str:
    gib = 2**30
    n = args.n
    recall = recall_at_k(np.array(served["found"]), truth_ids, 10)
    lines = [f"## N = {n:,} x {args.dim} fp16, --max-memory {args.max_memory}, engine {args.engine}"]
    if corpus_s is not None:
        lines.append(f"corpus write: {corpus_s:.0f} s")
    if built:
        index_bytes = built["index_faiss_bytes"] + built["ivfdata_bytes"]
        lines += [f"factory: {built['factory']} {built['params']}",
                  "build phases (s): " + ", ".join(f"{k} {v:.0f}" for k, v in built["timings"].items())
                  + f"; wall {built['wall_s']:.0f} s ({built['wall_s'] / 3600:.2f} h)",
                  f"build peak RSS: {built['peak_rss_bytes'] / gib:.2f} GiB (aim <= 8 GiB)",
                  f"index: {index_bytes / gib:.2f} GiB = {index_bytes / n:.1f} bytes/vector "
                  f"(index.faiss {built['index_faiss_bytes'] / 2**20:.0f} MiB + index.ivfdata)"]
        for c in built["candidates"]:
            lines.append(f"  candidate {c['factory']} (pilot {c['pilot_factory']}, {c['pilot_rows']:,} rows): "
                         f"recall@10 {c['recall_at_10']} at {c['params']}, {c['qps_batch']} QPS -- {c['verdict']}")
    lines += [f"exact streaming flat scan (baseline): {exact_qps:.2f} QPS",
              f"serve (mmap, fresh process): recall@10 {recall:.4f} on {len(truth_ids)} shifted queries (aim >= 0.90); "
              f"batch {served['batch']:.0f} QPS ({served['batch'] / exact_qps:.0f}x exact; aim >= 200), "
              f"single {served['single']:.0f} QPS (1 thread); open {served['load_s']:.2f} s",
              f"serve peak RSS: {served['peak_rss_bytes'] / gib:.2f} GiB; load average during QPS "
              f"{served['loadavg'][0]:.2f} -> {served['loadavg'][1]:.2f} on {os.cpu_count()} cores"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--shard-rows", type=int, default=250_000)
    parser.add_argument("--max-memory", default="6G")
    parser.add_argument("--engine", default="local", choices=["local", "ray"])
    parser.add_argument("--workdir", default="/tmp/hrem-scale")
    parser.add_argument("--phases", default="data,build,truth,serve")
    parser.add_argument("--results", default="", help="append the report to this file")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    emb, out = workdir / f"emb-{args.n}-{args.dim}", workdir / f"idx-{args.n}-{args.dim}-{args.engine}"
    corpus_s = write_corpus(emb, args.n, args.dim, args.shard_rows) if "data" in args.phases else None
    built_path = out.with_suffix(".build.json")
    if "build" in args.phases:
        built_path.write_text(json.dumps(build(emb, out, args.max_memory, args.engine)))
    built = json.loads(built_path.read_text()) if built_path.is_file() else None
    queries = eval_queries(args.dim, 1000)
    truth_ids, exact_qps = truth(emb, queries, workdir / f"truth-{args.n}-{args.dim}.npz")
    if "serve" not in args.phases:
        return 0
    text = report(args, corpus_s, built, exact_qps, serve(out, queries, workdir), truth_ids)
    print(text, flush=True)
    if args.results:
        with open(args.results, "a") as handle:
            handle.write(f"\n# {time.strftime('%Y-%m-%d %H:%M')} python benchmarks/bench_scale.py "
                         f"{' '.join(argv if argv is not None else sys.argv[1:])}\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
