"""Image keys and the folder they are relative to: one set of rules for the embed job, training,
evaluation, grounding and the web server.

An image key (a Karpathy `filepath/filename`, a listing's image column, the `key` of an embeddings row) is
a path relative to an image root. Keys that are absolute, that climb out with `..`, or that reach outside
the root through a symlink are refused with `ImageRefused` (a ValueError): a listing or a JSON file can
then never make a job read, embed or serve a file outside the folder it names.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath


class ImageRefused(ValueError):
    """The key does not name a file inside the image root."""


def key_problem(key: str | None) -> str | None:
    """Why `key` cannot be an image key (None when it can); checked without touching the disk."""
    if key is None or not str(key).strip():
        return "missing image path (empty value)"
    if "\x00" in key:
        return f"image key {key!r}: contains a NUL byte"
    relative = PurePosixPath(str(key).replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        return (f"image key {key!r}: expected a path relative to the image root without '..', found "
                f"{'an absolute path' if relative.is_absolute() else 'a parent reference'} (keys are relative "
                f"to --image-root; write them relative to a common folder and pass that folder)")
    return None


def join_under_root(root: str | Path, key: str) -> Path:
    """root / key for a key that passes `key_problem` (ImageRefused otherwise); the file may not exist."""
    problem = key_problem(key)
    if problem:
        raise ImageRefused(problem)
    return Path(root) / PurePosixPath(str(key).replace("\\", "/"))


def resolve_image(root: str | Path, key: str) -> Path:
    """The real path of image `key` under `root`, symlinks followed; ImageRefused when it lies outside the
    root or is not a regular file (what a server may send)."""
    real_root = Path(root).resolve()
    candidate = join_under_root(real_root, key).resolve()
    if not candidate.is_relative_to(real_root):
        raise ImageRefused(f"image key {key!r}: resolves to {candidate}, outside the image root {real_root}")
    if not candidate.is_file():
        raise ImageRefused(f"image key {key!r}: {candidate} is not a regular file")
    return candidate


def recorded_image_root(emb_dir: str | Path) -> Path | None:
    """The folder the image keys of an embeddings directory are relative to, as its manifest records it
    (`extra.image_root`, else `extra.source.image_root`; older manifests: the Karpathy JSON's or the listing's
    folder); None for inputs without image files (precomp features)."""
    from hrem.store import load_manifest

    extra = load_manifest(emb_dir).extra
    source = extra.get("source") or {}
    for recorded in (extra.get("image_root"), source.get("image_root")):
        if recorded:
            return Path(recorded)
    if source.get("format") == "karpathy" and source.get("json"):
        return Path(source["json"]).parent
    if source.get("format") == "listing" and source.get("path"):
        return Path(source["path"]).parent
    return None
