"""Timing helpers shared by the benchmark scripts (imported as `from _timing import ...`: the scripts run
from this folder)."""
from __future__ import annotations

import time


def best_time(fn, repeats: int = 3) -> float:
    """Fastest of `repeats` calls after one warm-up call (allocations, kernel selection)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(dtype=None, n: int = 2048) -> float:
    """This machine's square-matmul GFLOP/s in `dtype` (default float32), measured now: the peak that
    model throughput is compared against."""
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2 * n ** 3 / best_time(lambda: torch.mm(a, b), repeats=5) / 1e9
