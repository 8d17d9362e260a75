"""Loading an index directory, checked against its index.json and (optionally) the embeddings manifest.

`load_index(index_dir, mmap=False, emb_dir=None) -> (faiss.Index, IndexInfo)` with the tuned search
parameters applied. Checks, each failing with the file named: index.json parses; index.faiss exists, has
the size recorded in index.json (a truncated copy is caught before FAISS reads it) and deserialises; its
ntotal and dim match index.json; and, with `emb_dir`, the manifest's model fingerprint and dim match.
`mmap=True` memory-maps the inverted lists / codes (IVF and flat-code indices) instead of reading them.
On-disk indices (index.ivfdata beside index.faiss) are always opened from the same directory.
"""
from __future__ import annotations

import logging
from pathlib import Path

import faiss

from hrem.index.info import INDEX_FAISS, INDEX_JSON, IndexInfo, read_info
from hrem.index.params import apply_params
from hrem.store import Manifest, load_manifest
from hrem.utils.hash_stamps import sha256_file_cached

log = logging.getLogger(__name__)


def _read_flags(info: IndexInfo, mmap: bool) -> int:
    flags = 0
    if info.on_disk:
        flags |= faiss.IO_FLAG_ONDISK_SAME_DIR
    elif mmap and info.id_map is None:  # IVF: map the inverted lists
        flags |= faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
    elif mmap:  # flat / HNSW storage (IndexFlatCodes); the two flags cannot be combined for IVF
        flags |= getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP) | faiss.IO_FLAG_READ_ONLY
    return flags


def read_faiss_file(path: Path, info: IndexInfo, mmap: bool = False) -> faiss.Index:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (index.json is present; the build did not finish?)")
    size = path.stat().st_size
    if size != info.index_bytes:
        raise ValueError(f"{path}: expected {info.index_bytes} bytes (index.json), found {size}; the file is "
                         f"truncated or belongs to another build -- rebuild with `hrem index`")
    verify_checksum(path, info)
    try:
        return faiss.read_index(str(path), _read_flags(info, mmap))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise ValueError(f"{path}: FAISS cannot read it ({first_line}); the file is corrupt, truncated "
                         f"or written by an incompatible FAISS version") from None


def verify_checksum(path: Path, info: IndexInfo) -> None:
    """index.faiss must have the SHA-256 index.json records (a same-size overwrite passes the size check).
    Hashed once per file version (hrem.utils.hash_stamps: size, mtime, ctime, inode), so later loads, in
    this process or another, cost a stat."""
    if not info.index_sha256:
        log.warning("%s: index.json records no checksum (built by an older hrem); not verified", path)
        return
    found = sha256_file_cached(path)
    if found != info.index_sha256:
        raise ValueError(f"{path}: expected sha256 {info.index_sha256} (index.json), found {found}; the file was "
                         f"modified after the build -- rebuild with `hrem index`")


def check_against_manifest(info: IndexInfo, manifest: Manifest, where: str) -> None:
    """Refuse an index built from another model's (or another dimension's) embeddings."""
    if manifest.model.fingerprint != info.embeddings.model_fingerprint:
        raise ValueError(f"{where}: model fingerprint mismatch: index.json has "
                         f"{info.embeddings.model_fingerprint}, the embeddings manifest has "
                         f"{manifest.model.fingerprint}; rebuild the index from these embeddings")
    if manifest.dim != info.dim:
        raise ValueError(f"{where}: dimension mismatch: index.json has {info.dim}, the embeddings manifest "
                         f"has {manifest.dim}")


def check_indexed_shards(info: IndexInfo, manifest: Manifest, index_dir: Path) -> None:
    """The manifest must still list every shard the index was built from, with the same SHA-256."""
    for shard in info.shards:
        record = manifest.shard(info.modality, shard.name)
        if record is None or record.sha256 != shard.sha256:
            found = record.sha256 if record else "no such shard"
            raise ValueError(f"{index_dir / INDEX_JSON}: shard {info.modality}/{shard.name} was indexed with sha256 "
                             f"{shard.sha256}, the manifest now has {found}; rebuild the index (without --append)")


def load_index(index_dir: str | Path, mmap: bool = False, emb_dir: str | Path | None = None,
               ) -> tuple[faiss.Index, IndexInfo]:
    """The FAISS index of `index_dir` with its tuned parameters applied, and its validated IndexInfo."""
    index_dir = Path(index_dir)
    info = read_info(index_dir)
    index = read_faiss_file(index_dir / INDEX_FAISS, info, mmap)
    where = str(index_dir / INDEX_FAISS)
    if index.ntotal != info.ntotal or index.d != info.dim:
        raise ValueError(f"{where}: expected ntotal={info.ntotal}, dim={info.dim} (index.json), found "
                         f"ntotal={index.ntotal}, dim={index.d}")
    if emb_dir is not None:
        check_against_manifest(info, load_manifest(emb_dir), where=str(index_dir / "index.json"))
    apply_params(index, info.search_params)
    log.info("loaded %s: %s, %d vectors, params %s", where, info.factory, index.ntotal, info.search_params)
    return index, info


__all__ = ["check_against_manifest", "check_indexed_shards", "load_index", "read_faiss_file"]
