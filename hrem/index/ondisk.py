"""Building an IVF index larger than RAM: parts from one trained index, merged on disk.

The FAISS wiki's supported path ("Indexes that do not fit in RAM"): train once, then for each group of
shards clone the trained empty index, add the group's vectors with their ids and write a part file; finally
`faiss.contrib.ondisk.merge_ondisk` memory-maps the parts and writes all inverted lists into one
`index.ivfdata` (OnDiskInvertedLists). Only one group's vectors are in RAM at a time. The header
`index.faiss` refers to `index.ivfdata` by name and is opened with IO_FLAG_ONDISK_SAME_DIR, so the folder
can be moved.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import faiss
from faiss.contrib.ondisk import merge_ondisk

from hrem.index.construct import add_shards
from hrem.index.info import IVF_DATA
from hrem.store import Manifest

log = logging.getLogger(__name__)


def build_parts(trained: faiss.Index, emb_dir: str | Path, modality: str, shards: Sequence[str],
                manifest: Manifest, work_dir: Path, shards_per_part: int, batch_rows: int) -> list[Path]:
    """One part file per group of `shards_per_part` shards, each a filled copy of the trained index."""
    parts = []
    for number, start in enumerate(range(0, len(shards), shards_per_part)):
        part = faiss.clone_index(trained)
        add_shards(part, emb_dir, modality, shards[start:start + shards_per_part], manifest, batch_rows)
        path = work_dir / f"part-{number:05d}.index"
        faiss.write_index(part, str(path))
        parts.append(path)
        del part  # free this group's codes before the next one is added
    return parts


def build_on_disk(trained: faiss.Index, emb_dir: str | Path, modality: str, shards: Sequence[str],
                  manifest: Manifest, work_dir: Path, shards_per_part: int, batch_rows: int) -> faiss.Index:
    """The merged index whose inverted lists live in `work_dir / index.ivfdata`; part files are removed."""
    if faiss.try_extract_index_ivf(trained) is None:
        raise ValueError(f"on-disk build: only IVF indices can keep their lists on disk, found "
                         f"{type(trained).__name__}; use an IVF factory such as 'IVF4096,PQ64x8'")
    work_dir.mkdir(parents=True, exist_ok=True)
    parts = build_parts(trained, emb_dir, modality, shards, manifest, work_dir, shards_per_part, batch_rows)
    merged = faiss.clone_index(trained)
    log.info("merging %d part(s) into %s", len(parts), work_dir / IVF_DATA)
    merge_ondisk(merged, [str(p) for p in parts], str(work_dir / IVF_DATA))
    for path in parts:
        path.unlink()
    return merged


__all__ = ["build_on_disk", "build_parts"]
