"""Cost of verifying an index at load time, with and without the cross-process checksum stamps.

    python benchmarks/bench_verify.py [--rows 400000] [--dim 512] [--shards 8] [--workdir /tmp/hrem-verify]

`VectorSearcher(index_dir)` checks `index.faiss` and every indexed shard against the SHA-256s recorded at
build time (docs/reliability.md). This script writes a Flat index over --rows random fp32 vectors (kept in
--workdir for reruns), then opens it in fresh processes: the first with an empty stamp cache (every file is
hashed), the next with the stamps the first left (a stat per file). The baseline, measured in the same run,
is one process that only reads (`faiss.read_index`) and hashes nothing. Prints seconds and ratios.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OPEN = """
import sys, time
import faiss
from hrem.index import VectorSearcher
start = time.perf_counter()   # imports excluded: both kinds pay them alike
if sys.argv[1] == "read-only":
    faiss.read_index(sys.argv[2] + "/index.faiss")
else:
    VectorSearcher(sys.argv[2])
print(time.perf_counter() - start)
"""


def write_index(workdir: Path, rows: int, dim: int, shards: int) -> tuple[Path, Path]:
    """(embeddings folder, index folder), written once and reused by later runs."""
    from hrem.index import build_index
    from hrem.store import build_table, new_manifest, write_manifest, write_shard

    emb, index_dir = workdir / f"emb-{rows}x{dim}", workdir / f"index-{rows}x{dim}"
    if (index_dir / "index.json").is_file():
        return emb, index_dir
    shutil.rmtree(emb, ignore_errors=True)
    manifest, rng = new_manifest("bench-verify", dim), np.random.default_rng(0)
    for number, ids in enumerate(np.array_split(np.arange(rows), shards)):
        vecs = rng.standard_normal((len(ids), dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        table = build_table(ids, [f"{i}.png" for i in ids], vecs)
        manifest = manifest.with_shard("images", write_shard(emb, "images", number, table))
    write_manifest(emb, manifest)
    build_index(emb, index_dir, modality="images", factory="Flat", seed=0)
    return emb, index_dir


def open_seconds(mode: str, index_dir: Path, cache: Path) -> float:
    env = {**os.environ, "HREM_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", OPEN, mode, str(index_dir)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hrem-verify")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind; the median is printed")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    emb, index_dir = write_index(args.workdir, args.rows, args.dim, args.shards)
    size = sum(p.stat().st_size for p in [index_dir / "index.faiss", *emb.rglob("*.parquet")])
    cold, warm, base = [], [], []
    for _ in range(args.repeats):
        cache = args.workdir / f"cache-{time.time_ns()}"
        base.append(open_seconds("read-only", index_dir, cache))
        cold.append(open_seconds("verify", index_dir, cache))      # empty cache: hashes every file
        warm.append(open_seconds("verify", index_dir, cache))      # the stamps the previous process left
        shutil.rmtree(cache, ignore_errors=True)
    base_s, cold_s, warm_s = (float(np.median(x)) for x in (base, cold, warm))
    print(f"index {args.rows:,} x {args.dim} fp32 Flat, {args.shards} shards: {size / 1e9:.2f} GB verified")
    print(f"open, faiss.read_index only (baseline):  {base_s:6.2f} s")
    print(f"open + verify, no stamps (first process): {cold_s:6.2f} s  = x{cold_s / base_s:.2f} the baseline "
          f"({size / 1e9 / max(cold_s - base_s, 1e-9):.2f} GB/s hashed)")
    print(f"open + verify, stamped (later processes): {warm_s:6.2f} s  = x{warm_s / base_s:.2f} the baseline; "
          f"x{cold_s / warm_s:.1f} faster than the first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
