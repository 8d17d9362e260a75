"""Disk read bandwidth with the page cache bypassed: the bound on serving an on-disk index past RAM.

    python benchmarks/bench_disk.py [--path /tmp/hrem-disk.bin] [--size-gib 4] [--chunk-kib 832] [--reads 2000]

An index larger than RAM reads each probed inverted list from disk at first touch, so its cold QPS is at most
(random-read bandwidth) / (bytes read per query). This script writes a file of --size-gib (kept for reruns),
then reads it with O_DIRECT (no page cache): once sequentially in 8 MiB blocks (the baseline) and --reads
times at random aligned offsets in --chunk-kib chunks (the default, 832 KiB, is one inverted list of the
100M plan: 1,526 vectors x 520 bytes + alignment). It prints MB/s for both, their ratio, and random reads/s.
"""
from __future__ import annotations

import argparse
import mmap
import os
import sys
import time
from pathlib import Path

import numpy as np

ALIGN = 4096


def ensure_file(path: Path, size: int) -> None:
    """Write `size` bytes of random data once (incompressible; reused if already that size)."""
    if path.is_file() and path.stat().st_size == size:
        return
    block = np.random.default_rng(0).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def direct_reads(path: Path, offsets: np.ndarray, chunk: int) -> float:
    """Seconds to read `chunk` bytes at each offset with O_DIRECT into one page-aligned buffer."""
    buffer = mmap.mmap(-1, chunk)          # anonymous mmap: page-aligned, as O_DIRECT requires
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        start = time.perf_counter()
        for offset in offsets:
            if os.preadv(fd, [buffer], int(offset)) <= 0:
                raise OSError(f"{path}: short read at offset {offset}")
        return time.perf_counter() - start
    finally:
        os.close(fd)
        buffer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", type=Path, default=Path("/tmp/hrem-disk.bin"), help="scratch file (kept)")
    parser.add_argument("--size-gib", type=float, default=4.0, help="file size; larger than the disk cache")
    parser.add_argument("--chunk-kib", type=int, default=832, help="random read size (one inverted list)")
    parser.add_argument("--reads", type=int, default=2000, help="number of random reads")
    args = parser.parse_args(argv)
    size = int(args.size_gib * (1 << 30)) // (8 << 20) * (8 << 20)
    chunk = (args.chunk_kib * 1024 + ALIGN - 1) // ALIGN * ALIGN
    ensure_file(args.path, size)
    block = 8 << 20
    sequential = np.arange(0, size, block)
    seq_s = direct_reads(args.path, sequential, block)
    rng = np.random.default_rng(1)
    offsets = rng.integers(0, (size - chunk) // ALIGN, args.reads) * ALIGN
    rand_s = direct_reads(args.path, offsets, chunk)
    seq_mb, rand_mb = size / seq_s / 1e6, args.reads * chunk / rand_s / 1e6
    print(f"file {args.path} {size / (1 << 30):.1f} GiB, O_DIRECT (page cache bypassed)")
    print(f"sequential 8 MiB reads (baseline): {seq_mb:,.0f} MB/s")
    print(f"random {chunk // 1024} KiB reads: {rand_mb:,.0f} MB/s = {args.reads / rand_s:,.0f} reads/s "
          f"({rand_mb / seq_mb:.2f}x sequential)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
