"""ShapesRef generation speed: images/s written (PNG scenes + masks + JSON), against two baselines measured
in the same run: drawing the scenes in memory without writing anything, and a single worker.

    python benchmarks/bench_shapes.py --images 4000

CPU time includes the pool's children, so `images per CPU-second` shows the cost independently of how busy
the machine is (the wall-clock rate is what a user sees).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from hrem.data.shapes import ShapesRefConfig, generate_shapesref, split_images
from hrem.data.shapes.build import build_scene


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    fn()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    train, dev, test = split_images(args.images)
    config = ShapesRefConfig(train=train, dev=dev, test=test, size=args.size, seed=0)
    n_draw = min(args.images, 1000)
    rows = [("draw only, in memory, 1 process", n_draw,
             *_timed(lambda: [build_scene(0, i, args.size) for i in range(n_draw)]))]
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        for workers in sorted({1, args.workers}):
            out = Path(tmp) / f"w{workers}"
            rows.append((f"generate_shapesref, {workers} worker(s)", args.images,
                         *_timed(lambda out=out, workers=workers: generate_shapesref(out, config, workers=workers))))
            shutil.rmtree(out)
    print(f"ShapesRef {args.size}px, {args.images} images, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'case':40s} {'images/s':>9s} {'img/CPU-s':>10s} {'vs draw-only':>13s}")
    base = rows[0][1] / rows[0][2]
    for name, n, wall, cpu in rows:
        print(f"{name:40s} {n / wall:9.0f} {n / cpu:10.0f} {n / wall / base:12.2f}x")
    single = rows[1][1] / rows[1][2]
    print(f"speed-up of {args.workers} workers over 1: {rows[-1][1] / rows[-1][2] / single:.2f}x; "
          f"target >= 500 images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
