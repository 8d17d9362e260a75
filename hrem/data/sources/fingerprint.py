"""The input fingerprint: SHA-256 over what defines an input, so a resumed job can tell it is the same.

It hashes the listing / Karpathy JSON / captions files, the split, the modalities and row counts, and for
precomp features their shape and sampled bytes (hashing every byte of a 100 GB feature file would cost
more than embedding it). Callers add what else defines their job (e.g. shard sizes).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hrem.data.sources.detect import detect_input
from hrem.data.sources.folders import karpathy_json
from hrem.data.sources.source import Source
from hrem.data.splits import precomp_split
from hrem.utils.files import sha256_file, sha256_json


def input_fingerprint(data: str | Path, split: str, sources: dict[str, Source], **extra: Any) -> str:
    data = Path(data)
    parts: dict[str, Any] = {"modalities": sorted(sources), "split": split,
                             "counts": {m: s.count for m, s in sources.items()}, **extra}
    fmt = detect_input(data)
    if fmt == "listing":
        parts["listing"] = sha256_file(data)
    elif fmt == "precomp":
        parts["precomp"] = _precomp_digest(data, split)
    else:
        parts["karpathy"] = sha256_file(karpathy_json(data))
    return sha256_json(parts)


def _precomp_digest(data: Path, split: str) -> dict[str, str]:
    out = {}
    for path in sorted(data.glob(f"{precomp_split(split)}_*")):
        out[path.name] = sampled_digest(path) if path.suffix == ".npy" else sha256_file(path)
    return out


def sampled_digest(path: Path, block: int = 1 << 20) -> str:
    """SHA-256 of the size and three 1 MiB blocks (start, middle, end) of a large file."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        for offset in sorted({0, max(size // 2 - block // 2, 0), max(size - block, 0)}):
            handle.seek(offset)
            digest.update(handle.read(block))
    return digest.hexdigest()
