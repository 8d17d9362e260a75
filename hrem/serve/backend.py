"""What the web layer needs from the models, as two plain callables.

`hrem.serve` sits beside `hrem.pipeline` in the layering (siblings do not import each other), so the app
does not load the `Searcher` or the grounding stage itself: the entry point (`hrem.cli.serve`) loads them
once and hands them over as a `Backend`. Tests can hand over the same real objects.

    search(query, k) -> [{"id": int, "score": float, "key": str, ...metadata}, ...]   best first
    ground(image_path, query) -> {"box": [x1, y1, x2, y2], "score": float,
                                  "mask": {"size": [H, W], "counts": str | list[int]}}  (COCO RLE)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class SearchFn(Protocol):
    def __call__(self, query: str, k: int) -> list[dict[str, Any]]: ...


class GroundFn(Protocol):
    def __call__(self, image_path: Path, query: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Backend:
    search: SearchFn
    emb_dir: Path                        # embeddings of the images index: keys, captions, manifest
    ground: GroundFn | None = None       # None: /api/ground answers 501 and the page hides the overlay
    corpus_root: Path | None = None      # None: taken from the embeddings manifest
    info: dict[str, Any] = field(default_factory=dict)   # shown by /healthz (model, index sizes, ...)
