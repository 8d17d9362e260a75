"""SHA-256 of large files, verified once per file version across processes.

Loading an index verifies `index.faiss` and every indexed shard against the checksums recorded at build
time. Hashing them on every start costs about 1 s per GB (~5 s at 1M x 1024-d fp16, ~40 s at 10M), so a
digest is remembered with the file's stamp: (size, mtime_ns, ctime_ns, inode). A rewrite changes the size
or mtime, and restoring the mtime afterwards (`touch -r`, `os.utime`) still changes ctime, which user
programs cannot set; a copy is a new inode. So a remembered digest is reused only for the same bytes unless
the file was edited through the raw block device or the system clock was turned back.

Stamps live in one JSON file in the user's cache folder ($HREM_CACHE_DIR, else $XDG_CACHE_HOME/hrem, else
~/.cache/hrem), not beside the data: index folders may be read-only, and nothing is added to the folders
hrem writes. A cache that cannot be read or written is ignored (the file is simply hashed).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from hrem.utils.files import sha256_file, write_json_atomic

log = logging.getLogger(__name__)

STAMPS_FILE = "sha256-stamps.json"
MAX_STAMPS = 20_000          # oldest entries are dropped beyond this (each is ~150 bytes)

_HASHED: dict[tuple, str] = {}   # in this process: no cache file read at all


def cache_dir() -> Path:
    explicit = os.environ.get("HREM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hrem"


def file_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def sha256_file_cached(path: str | Path) -> str:
    """`sha256_file(path)`, reused while the file's stamp is unchanged (in this process and across them)."""
    return sha256_files_cached([path])[0]


def sha256_files_cached(paths: list[str | Path]) -> list[str]:
    """The digests of `paths` in order. The stamp cache is read once per batch and written after each file
    that had to be hashed (hashing costs far more, and a killed load keeps what it finished)."""
    resolved = [Path(p).resolve() for p in paths]
    keys = [(str(p), *file_stamp(p)) for p in resolved]
    stamps: dict[str, list] | None = None
    for path, key in zip(resolved, keys):
        if key in _HASHED:
            continue
        stamps = _read_stamps() if stamps is None else stamps
        entry = stamps.get(str(path))
        if isinstance(entry, list) and len(entry) == 5 and entry[:4] == list(key[1:]) and isinstance(entry[4], str):
            _HASHED[key] = entry[4]
            continue
        _HASHED[key] = sha256_file(path)
        stamps.pop(str(path), None)
        stamps[str(path)] = [*key[1:], _HASHED[key]]   # dicts keep insertion order: the newest entry is last
        _write_stamps(stamps)
    return [_HASHED[key] for key in keys]


def _read_stamps() -> dict[str, list]:
    try:
        stamps = json.loads((cache_dir() / STAMPS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _write_stamps(stamps: dict[str, list]) -> None:
    for old in list(stamps)[: max(0, len(stamps) - MAX_STAMPS)]:
        del stamps[old]
    try:
        write_json_atomic(cache_dir() / STAMPS_FILE, stamps)
    except OSError as exc:   # a read-only home or a full disk must not fail a search
        log.debug("could not record checksums in %s: %s", cache_dir(), exc)


__all__ = ["cache_dir", "file_stamp", "sha256_file_cached", "sha256_files_cached"]
