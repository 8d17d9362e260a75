"""Checks made before a build starts, so that a doomed build fails in a second instead of after hours.

autofaiss, given a small budget, builds anyway and then answers with empty candidate lists or runs for
17 hours; here three conditions stop the build first, each with the numbers and a way out:
- the training sample is too small for the list count (FAISS wants >= 39 vectors per centroid);
- the budget cannot hold what the build keeps in RAM: the whole index, or -- on disk -- the coarse
  quantizer plus the larger of the training sample and one part's codes;
- the disk cannot hold an on-disk merge: the merged lists plus one part (parts are deleted as they are
  merged; the merged file grows as it is written).
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

from hrem.index.choose import MIN_POINTS_PER_LIST, estimate_bytes, ivf_nlist

GIB = 2**30
MERGE_MARGIN = 64 << 20


def check_training_rows(factory: str, n: int) -> None:
    nlist = ivf_nlist(factory)
    if nlist is None or n >= MIN_POINTS_PER_LIST * nlist:
        return
    fits = max(1, n // MIN_POINTS_PER_LIST)
    raise ValueError(f"factory {factory!r}: {nlist:,} inverted lists need at least {MIN_POINTS_PER_LIST} x {nlist:,} "
                     f"= {MIN_POINTS_PER_LIST * nlist:,} training vectors, the corpus has {n:,}; use at most "
                     f"IVF{2 ** (fits.bit_length() - 1)} or --factory auto")


def quantizer_bytes(factory: str, n: int, dim: int) -> int:
    """RAM of the coarse quantizer alone (estimate_bytes of an empty index)."""
    return estimate_bytes(factory, 0, dim)


def build_ram(factory: str, n: int, dim: int, train_rows: int, part_rows: int, on_disk: bool) -> dict[str, int]:
    """What a build holds in RAM at its peak (bytes), by component; 'total' is what must fit the budget."""
    quantizer = quantizer_bytes(factory, n, dim)
    sample = train_rows * dim * 4
    if on_disk:
        part = estimate_bytes(factory, part_rows, dim) - quantizer
        return {"quantizer": quantizer, "training sample": sample, "one part": part,
                "total": quantizer + max(sample, part)}
    index = estimate_bytes(factory, n, dim)
    return {"index": index, "training sample": sample, "total": max(index, quantizer + sample)}


def check_memory(factory: str, n: int, dim: int, train_rows: int, part_rows: int, on_disk: bool,
                 max_memory: int, budget_text: str) -> None:
    parts = build_ram(factory, n, dim, train_rows, part_rows, on_disk)
    if parts["total"] <= max_memory:
        return
    detail = ", ".join(f"{name} {size / GIB:.2f} GiB" for name, size in parts.items() if name != "total")
    hint = " or build on disk (--on-disk)" if not on_disk and ivf_nlist(factory) else ""
    need = _gib_up(parts["total"])
    raise ValueError(f"--max-memory {budget_text} cannot hold the index: {factory} for {n:,} x {dim} needs "
                     f"~{need} GiB in RAM while building{' on disk' if on_disk else ''} "
                     f"({detail}); raise --max-memory to at least {need} GiB{hint}")


def _gib_up(size: int) -> str:
    """`size` in GiB with two decimals, rounded UP: a budget of the printed size holds `size` (rounding to
    the nearest advised e.g. "at least 0.00 GiB" for a 1.5 MB index, or 10.00 GiB for 10.004 GiB)."""
    return f"{math.ceil(size / GIB * 100) / 100:.2f}"


def check_disk(factory: str, n: int, dim: int, part_rows: int, out_dir: Path) -> None:
    codes = estimate_bytes(factory, n, dim) - quantizer_bytes(factory, n, dim)
    part = estimate_bytes(factory, part_rows, dim) - quantizer_bytes(factory, n, dim)
    need = codes + part + MERGE_MARGIN
    where = _existing(out_dir)
    free = shutil.disk_usage(where).free
    if free < need:
        raise ValueError(f"on-disk build of {factory} for {n:,} x {dim}: the merge needs ~{_gib_up(need)} GiB free "
                         f"in {where} (merged lists {codes / GIB:.2f} GiB + one part {part / GIB:.2f} GiB), found "
                         f"{free / GIB:.2f} GiB; free space or pass another --out")


def _existing(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return path




def part_rows(manifest, modality: str, shards: list[str], shards_per_part: int) -> int:
    """Rows of the largest group of `shards_per_part` consecutive shards (one part of an on-disk build)."""
    rows = [manifest.shard(modality, name).rows for name in shards]
    return max((sum(rows[i:i + shards_per_part]) for i in range(0, len(rows), shards_per_part)), default=0)


def preflight(factory: str, on_disk: bool, n: int, dim: int, train_rows: int, part_rows: int,
              max_memory: int, budget_text: str, out_dir: Path) -> None:
    """All three checks of the module docstring, before anything is trained."""
    check_training_rows(factory, n)
    check_memory(factory, n, dim, train_rows, part_rows, on_disk, max_memory, budget_text)
    if on_disk:
        check_disk(factory, n, dim, part_rows, out_dir)


__all__ = ["build_ram", "check_disk", "check_memory", "check_training_rows", "part_rows", "preflight"]
