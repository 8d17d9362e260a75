"""What the web layer needs from the models, as plain callables.

`hrem.serve` sits beside `hrem.pipeline` in the layering (siblings do not import each other), so the app
does not load the `Searcher` or the grounding stage itself: the entry point (`hrem.cli.serve`) loads them
once and hands them over as a `Backend`. Tests can hand over the same real objects.

    search(query, k) -> [{"id": int, "score": float, "key": str, ...metadata}, ...]   best first
    search(query, k, filter) -> the same among rows matching `filter`, a pc.Expression the app parsed from
                                the request's filter text (hrem.serve.filters); called so only with a filter
    ground(image_path, query) -> {"box": [x1, y1, x2, y2], "score": float,
                                  "mask": {"size": [H, W], "counts": str | list[int]}}  (COCO RLE)
    image_search(image, k[, filter]) -> hits like search()   image: an RGB PIL image (decoded under the upload
                                                           limits); image -> image
    similar(image_id, k[, filter]) -> hits like search()     "more like this": the stored image left out
    rerank_search(query, k[, filter]) -> hits like search(), re-ranked with grounding (hrem.pipeline.rerank):
                                       each also carries "retrieval_score" and "grounding" (box, score, mask_rle)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class SearchFn(Protocol):
    def __call__(self, query: str, k: int, filter: Any = None) -> list[dict[str, Any]]: ...


class GroundFn(Protocol):
    def __call__(self, image_path: Path, query: str) -> dict[str, Any]: ...


class ImageSearchFn(Protocol):
    def __call__(self, image: Any, k: int, filter: Any = None) -> list[dict[str, Any]]: ...


class SimilarFn(Protocol):
    def __call__(self, image_id: int, k: int, filter: Any = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Backend:
    search: SearchFn
    emb_dir: Path                        # embeddings of the images index: keys, captions, manifest
    ground: GroundFn | None = None       # None: /api/ground answers 501 and the page hides the overlay
    corpus_root: Path | None = None      # None: taken from the embeddings manifest
    info: dict[str, Any] = field(default_factory=dict)   # shown by /healthz (model, index sizes, ...)
    image_search: ImageSearchFn | None = None   # None: POST /api/search answers 501 (e.g. a features-only model)
    similar: SimilarFn | None = None            # None: /api/similar answers 501
    rerank_search: SearchFn | None = None       # None: /api/search?rerank=true answers 501 (no grounding model)
