"""Building an IVF index larger than RAM: parts from one trained index, merged on disk with bounded memory.

The FAISS wiki's path ("Indexes that do not fit in RAM"): train once, then for each group of shards clone
the trained empty index, add the group's vectors with their ids and write a part file; finally write every
inverted list into one `index.ivfdata` (OnDiskInvertedLists). Only one group's codes are in RAM at a time.

The merge does what `faiss.contrib.ondisk.merge_ondisk` does -- the same file layout: per list its codes
then its ids, lists back to back, capacity = size -- but streams it: parts are opened one at a time and
their lists copied with `os.pwrite`. merge_ondisk maps every part and writes through a mapping of the
output, so a process touching 2 x the index's codes is charged all of it as resident memory (10 GiB at
10M x 512-d SQ8). Here the peak is one part. The header records the data file by its bare name,
`index.ivfdata`, and is opened with IO_FLAG_ONDISK_SAME_DIR: the folder can be moved, and two builds of
the same input write byte-identical files (no staging path inside).

`part_groups` / `build_part` are the unit of work the Ray engine (hrem.index.ray_parts) runs remotely.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from hrem.index.construct import add_shards
from hrem.index.info import IVF_DATA
from hrem.store import Manifest

log = logging.getLogger(__name__)
ID_BYTES = 8


def part_groups(shards: Sequence[str], shards_per_part: int) -> list[list[str]]:
    return [list(shards[start:start + shards_per_part]) for start in range(0, len(shards), shards_per_part)]


def part_path(work_dir: Path, number: int) -> Path:
    return work_dir / f"part-{number:05d}.index"


def build_part(trained: faiss.Index, emb_dir: str | Path, modality: str, group: Sequence[str],
               manifest: Manifest, path: Path, batch_rows: int) -> Path:
    """A filled copy of the trained index holding `group`'s vectors, written to `path`."""
    part = faiss.clone_index(trained)
    add_shards(part, emb_dir, modality, group, manifest, batch_rows)
    faiss.write_index(part, str(path))
    return path


def build_parts(trained: faiss.Index, emb_dir: str | Path, modality: str, shards: Sequence[str],
                manifest: Manifest, work_dir: Path, shards_per_part: int, batch_rows: int) -> list[Path]:
    """One part file per group of `shards_per_part` shards, built one after another in this process."""
    return [build_part(trained, emb_dir, modality, group, manifest, part_path(work_dir, number), batch_rows)
            for number, group in enumerate(part_groups(shards, shards_per_part))]


def require_ivf(trained: faiss.Index) -> None:
    if faiss.try_extract_index_ivf(trained) is None:
        raise ValueError(f"on-disk build: only IVF indices can keep their lists on disk, found "
                         f"{type(trained).__name__}; use an IVF factory such as 'IVF4096,PQ64x8np'")


def build_on_disk(trained: faiss.Index, emb_dir: str | Path, modality: str, shards: Sequence[str],
                  manifest: Manifest, work_dir: Path, shards_per_part: int, batch_rows: int) -> faiss.Index:
    """The merged index whose inverted lists live in `work_dir / index.ivfdata`; part files are removed."""
    require_ivf(trained)
    work_dir.mkdir(parents=True, exist_ok=True)
    parts = build_parts(trained, emb_dir, modality, shards, manifest, work_dir, shards_per_part, batch_rows)
    return merge_parts(trained, parts, work_dir / IVF_DATA)


def _list_sizes(path: Path) -> np.ndarray:
    part = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)  # maps the file; reads only the list sizes
    lists = faiss.extract_index_ivf(part).invlists
    return np.array([lists.list_size(j) for j in range(lists.nlist)], dtype=np.uint64)


def merge_parts(trained: faiss.Index, parts: Sequence[Path], data_path: Path) -> faiss.Index:
    """A copy of `trained` whose lists are those of all `parts` (in order), on disk in `data_path`."""
    require_ivf(trained)
    merged = faiss.clone_index(trained)
    ivf = faiss.extract_index_ivf(merged)
    sizes = sum((_list_sizes(p) for p in parts), np.zeros(ivf.nlist, dtype=np.uint64))
    lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(data_path))
    lists.set_all_lists_sizes(faiss.swig_ptr(sizes))
    record = np.uint64(ivf.code_size + ID_BYTES)
    offsets = np.concatenate([[0], np.cumsum(sizes * record)]).astype(np.int64)
    lists.update_totsize(int(offsets[-1]))  # creates the file at its final size (and maps it; nothing touched)
    log.info("merging %d part(s) into %s (%.2f GiB)", len(parts), data_path, offsets[-1] / 2**30)
    filled = np.zeros(ivf.nlist, dtype=np.int64)
    fd = os.open(data_path, os.O_WRONLY)
    try:
        for path in parts:
            _copy_part(fd, path, offsets, sizes.astype(np.int64), filled, ivf.code_size)
            path.unlink()
        os.fsync(fd)
    finally:
        os.close(fd)
    lists.filename = IVF_DATA  # resolved against the header's folder on load (IO_FLAG_ONDISK_SAME_DIR)
    ivf.replace_invlists(lists, True)
    lists.this.disown()
    ivf.ntotal = merged.ntotal = int(sizes.sum())
    return merged


def _copy_part(fd: int, path: Path, offsets: np.ndarray, capacity: np.ndarray, filled: np.ndarray,
               code_size: int) -> None:
    """Append every list of part `path` behind what earlier parts wrote (codes block, then ids block)."""
    part = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
    lists = faiss.extract_index_ivf(part).invlists
    for j in range(lists.nlist):
        n = lists.list_size(j)
        if n == 0:
            continue
        codes = faiss.rev_swig_ptr(lists.get_codes(j), n * code_size)
        ids = faiss.rev_swig_ptr(lists.get_ids(j), n)
        start = int(offsets[j])
        os.pwrite(fd, memoryview(codes), start + int(filled[j]) * code_size)
        os.pwrite(fd, memoryview(ids).cast("B"), start + int(capacity[j]) * code_size + int(filled[j]) * ID_BYTES)
        filled[j] += n
    del part  # unmaps the part: its pages stop counting as this process's memory


__all__ = ["build_on_disk", "build_part", "build_parts", "merge_parts", "part_groups", "part_path"]
