"""Where the served images live, and the one function that turns an image key into a file we may send.

An image `key` in the embeddings Parquet is a path relative to the corpus root (PRODUCT.md). The root is
taken, in order, from an explicit `--corpus-root`, the manifest's `extra.image_root`, or the input the
embed job read (`extra.source`: the folder of a Karpathy JSON or of a listing file). Precomputed-feature
corpora have no image files; the server then answers 404 for images and grounding.

`resolve_image(root, key)` refuses -- with `ImageRefused` -- absolute keys, keys that climb out with `..`,
and symlinks whose target lies outside the root: the candidate is resolved (following every symlink) and
must still be inside the resolved root, and must be a regular file.
"""
from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

from hrem.store import load_manifest

log = logging.getLogger(__name__)


class ImageRefused(ValueError):
    """The key does not name a regular file inside the corpus root."""


def corpus_root_from_manifest(emb_dir: str | Path) -> Path | None:
    """The folder image keys are relative to, as recorded by the embed job (None when unknown)."""
    extra: dict[str, Any] = load_manifest(emb_dir).extra
    source = extra.get("source") or {}
    for recorded in (extra.get("image_root"), source.get("image_root")):
        if recorded:
            return Path(recorded)
    if source.get("format") == "karpathy" and source.get("json"):
        return Path(source["json"]).parent
    if source.get("format") == "listing" and source.get("path"):
        return Path(source["path"]).parent
    log.warning("%s/manifest.json: no image root recorded (source %s); images cannot be served -- pass "
                "--corpus-root", emb_dir, source.get("format"))
    return None


def resolve_image(root: Path, key: str) -> Path:
    """The real path of image `key` under `root`; ImageRefused if it is outside the root or not a file."""
    if not key or "\x00" in key:
        raise ImageRefused(f"image key {key!r}: empty or contains NUL")
    relative = PurePosixPath(key.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        raise ImageRefused(f"image key {key!r}: must be a relative path without '..'")
    real_root = root.resolve()
    candidate = (real_root / relative).resolve()   # follows symlinks: an escaping link lands outside
    if not candidate.is_relative_to(real_root):
        raise ImageRefused(f"image key {key!r}: resolves to {candidate}, outside the corpus root {real_root}")
    if not candidate.is_file():
        raise ImageRefused(f"image key {key!r}: {candidate} is not a regular file")
    return candidate
