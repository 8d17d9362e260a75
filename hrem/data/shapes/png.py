"""A minimal PNG encoder for 8-bit grey (masks) and RGB (scenes) arrays.

Why not PIL: for these flat-coloured 128 px scenes PIL's encoder (adaptive row filters) at
compress_level=1 took ~3x longer and wrote ~2x larger files than plain rows ("None" filter) compressed by
zlib at level 1, and writing PNGs dominated generation time. The output is a standard PNG (IHDR, one
IDAT, IEND; CRCs by zlib) that every decoder reads; tests decode it with PIL and compare pixels.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZLIB_LEVEL = 1
COLOUR_TYPES = {1: 0, 3: 2}   # channels -> PNG colour type (0 = greyscale, 2 = truecolour)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 [H, W] (grey) or [H, W, 3] (RGB) array."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"encode_png: expected uint8 [H, W] or [H, W, 3], found {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else 3
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)   # leading 0 = filter type "None"
    rows[:, 1:] = pixels.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[channels], 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), ZLIB_LEVEL))
            + _chunk(b"IEND", b""))
