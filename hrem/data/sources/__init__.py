"""The one input layer: every job (embed, train, evaluate, regions) opens its input here.

    sources = open_sources("data/shapesref", split="test")        # {"images": Source, "captions": Source}
    part = sources["images"].read(0, 1000)                         # ids, keys, payload, problems

Formats (`detect_input`): a Karpathy folder (dataset_*.json + images), a SCAN `*_precomp` folder, or a
.parquet / .csv listing. Split names go through hrem.data.splits ("dev" = "val"); image keys through
hrem.data.sources.roots (relative to the image root, never outside it). Ids are non-negative int64 (FAISS
returns -1 for "no result") and unique per modality; a bad id is an error naming the file and the row.
"""
from __future__ import annotations

from pathlib import Path

from hrem.data.sources.detect import InputFormat, detect_input
from hrem.data.sources.fingerprint import input_fingerprint
from hrem.data.sources.folders import karpathy_sources, precomp_sources
from hrem.data.sources.listing_source import listing_sources
from hrem.data.sources.roots import ImageRefused, join_under_root, key_problem, resolve_image
from hrem.data.sources.source import (
    FEATURE_FILES,
    FEATURE_ROWS,
    IMAGE_FILES,
    TEXTS,
    Source,
    SourceSlice,
    check_unique,
)

MODALITIES = ("images", "captions")


def open_sources(data: str | Path, split: str = "test", image_root: str | Path | None = None,
                 modalities: tuple[str, ...] = ()) -> dict[str, Source]:
    """The requested modalities of the input (() = all it has), ids validated unique."""
    data = Path(data)
    fmt = detect_input(data)
    if fmt == "listing":
        sources = listing_sources(data, image_root)
    elif fmt == "precomp":
        sources = precomp_sources(data, split)
    else:
        sources = karpathy_sources(data, split, image_root)
    missing = [m for m in modalities if m not in sources]
    if missing:
        raise ValueError(f"{data}: --modalities asks for {missing}, but the input has only {sorted(sources)}")
    chosen = {m: sources[m] for m in (modalities or sources)}
    for modality, source in chosen.items():
        check_unique(source.ids, f"{data} ({modality})")
    return chosen


__all__ = ["FEATURE_FILES", "FEATURE_ROWS", "IMAGE_FILES", "MODALITIES", "TEXTS", "ImageRefused", "InputFormat",
           "Source", "SourceSlice", "check_unique", "detect_input", "input_fingerprint", "join_under_root",
           "key_problem", "open_sources", "resolve_image"]
