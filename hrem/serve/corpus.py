"""Where the served images live, and the one function that turns an image key into a file we may send.

An image `key` in the embeddings Parquet is a path relative to the corpus root (PRODUCT.md). The root is
taken, in order, from an explicit `--corpus-root`, the manifest's `extra.image_root`, or the input the
embed job read (`extra.source`: the folder of a Karpathy JSON or of a listing file). Precomputed-feature
corpora have no image files; the server then answers 404 for images and grounding.

`resolve_image(root, key)` (hrem.data.sources.roots, the rules every job shares) refuses -- with
`ImageRefused` -- absolute keys, keys that climb out with `..`, and symlinks whose target lies outside the
root: the candidate is resolved (following every symlink) and must still be inside the resolved root, and
must be a regular file.
"""
from __future__ import annotations

import logging
from pathlib import Path

from hrem.data.sources.roots import ImageRefused, recorded_image_root, resolve_image

__all__ = ["ImageRefused", "corpus_root_from_manifest", "resolve_image"]

log = logging.getLogger(__name__)


def corpus_root_from_manifest(emb_dir: str | Path) -> Path | None:
    """The folder image keys are relative to, as recorded by the embed job (None when unknown)."""
    root = recorded_image_root(emb_dir)
    if root is None:
        log.warning("%s/manifest.json: no image root recorded (precomputed features?); images cannot be "
                    "served -- pass --corpus-root", emb_dir)
    return root
