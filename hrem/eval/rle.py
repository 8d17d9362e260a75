"""COCO run-length encoding of binary masks, numpy only (compatible with pycocotools `mask.encode/decode`).

A mask [H, W] is flattened in column-major (Fortran) order; `counts` alternates run lengths of 0s and 1s,
starting with 0s (so it starts with 0 when the first pixel is set). Two forms:
* uncompressed: {"size": [H, W], "counts": [int, ...]}
* compressed:   {"size": [H, W], "counts": "<ascii>"}, COCO's LEB128-like string: each count (from the
  third on, as the difference to the count two places before) is written in 5-bit groups, low bits
  first, as chr(48 + group), with 0x20 set on every group but the last; the last group's 0x10 bit is the
  sign.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def mask_to_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a 2-D mask in column-major order, starting with the run of zeros."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask: expected a 2-D array [H, W], found shape {array.shape}")
    flat = (array != 0).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(edges).tolist()
    return [0, *runs] if flat[0] else runs


def counts_to_mask(counts: list[int], height: int, width: int) -> np.ndarray:
    total = int(np.sum(counts, dtype=np.int64)) if len(counts) else 0
    if total != height * width or any(c < 0 for c in counts):
        raise ValueError(f"RLE counts: expected non-negative runs summing to H*W = {height * width}, "
                         f"found sum {total}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def counts_to_string(counts: list[int]) -> str:
    """COCO's compressed string for a list of run lengths."""
    chars: list[str] = []
    for i, count in enumerate(counts):
        value = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift: negative values keep their sign
            more = value != -1 if group & 0x10 else value != 0
            chars.append(chr(48 + (group | 0x20 if more else group)))
    return "".join(chars)


def string_to_counts(text: str) -> list[int]:
    """Inverse of `counts_to_string`."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError(f"RLE string: truncated at character {position} of {len(text)}")
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift  # sign-extend
        counts.append(value + (counts[-2] if len(counts) > 2 else 0))
    return counts


def rle_encode(mask: np.ndarray, compressed: bool = True) -> dict[str, Any]:
    """{"size": [H, W], "counts": str (compressed) or list[int]}."""
    counts = mask_to_counts(mask)
    height, width = np.asarray(mask).shape
    return {"size": [int(height), int(width)], "counts": counts_to_string(counts) if compressed else counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Boolean [H, W] mask from either RLE form (`counts` may also be bytes, as pycocotools returns)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"RLE: expected a dict with 'size' and 'counts', found {type(rle).__name__}")
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    return counts_to_mask(list(counts), height, width)


def rle_area(rle: dict[str, Any]) -> int:
    """Foreground pixel count without decoding the mask."""
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = string_to_counts(counts.decode("ascii") if isinstance(counts, bytes) else counts)
    return int(sum(counts[1::2]))
