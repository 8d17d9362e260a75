"""The one way image FILES are decoded: header first, pixel budget, then decode.

A small compressed file can hold a huge image (a 493 KB PNG of 13000 x 13000 pixels decodes to ~0.5 GB,
and RGB conversion, resizing and overlays multiply that). PIL reads only the header in `Image.open`, so the
size is checked against a pixel budget before any pixel is decoded. The budget is `MAX_IMAGE_PIXELS`,
overridable per process with the environment variable `HREM_MAX_IMAGE_PIXELS` (inherited by DataLoader
workers) or per call with `max_pixels`.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = 40_000_000
BUDGET_ENV = "HREM_MAX_IMAGE_PIXELS"


class ImageTooLarge(ValueError):
    """The image's header declares more pixels than the decoding budget. `size` ((width, height), None when
    PIL refused the header before we saw it) and `budget` let callers word messages without the file name."""

    def __init__(self, message: str, size: tuple[int, int] | None, budget: int) -> None:
        super().__init__(message)
        self.size, self.budget = size, budget

    def __reduce__(self):
        # Pickle with all three fields: the default rebuilds from `args` (the message alone), which fails,
        # and an error raised in a Ray or DataLoader worker must arrive whole.
        return type(self), (str(self), self.size, self.budget)


class ImageUnreadable(ValueError):
    """The file is not a decodable image (unknown format, truncated or corrupt data)."""


def pixel_budget(max_pixels: int | None = None) -> int:
    """The budget in pixels: `max_pixels`, else $HREM_MAX_IMAGE_PIXELS, else MAX_IMAGE_PIXELS."""
    if max_pixels is not None:
        return int(max_pixels)
    raw = os.environ.get(BUDGET_ENV)
    if raw is None:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"${BUDGET_ENV}: expected a positive integer (pixels), found {raw!r}") from None
    if value <= 0:
        raise ValueError(f"${BUDGET_ENV}: expected a positive integer (pixels), found {value}")
    return value


def check_pixels(width: int, height: int, where: str, max_pixels: int | None = None) -> None:
    budget = pixel_budget(max_pixels)
    if width * height > budget:
        raise ImageTooLarge(f"{where}: image of {width} x {height} = {width * height:,} pixels exceeds the "
                            f"decoding budget of {budget:,} pixels (set ${BUDGET_ENV} to allow more)",
                            (width, height), budget)


def load_image_file(path: str | Path, mode: str = "RGB", max_pixels: int | None = None) -> Image.Image:
    """Decode `path` into a PIL image of `mode`, refusing oversized and unreadable files by name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    return _decode(path, str(path), mode, max_pixels, None)


def decode_image_bytes(data: bytes, where: str, mode: str = "RGB", max_pixels: int | None = None,
                       formats: tuple[str, ...] | None = None) -> Image.Image:
    """Decode in-memory image bytes (an upload) like `load_image_file`: header, budget, then pixels.
    `formats` (PIL names, e.g. ("PNG", "JPEG", "WEBP")) restricts the decoders PIL may try."""
    return _decode(io.BytesIO(data), where, mode, max_pixels, formats)


def _decode(source: Path | io.BytesIO, where: str, mode: str, max_pixels: int | None,
            formats: tuple[str, ...] | None) -> Image.Image:
    try:
        # PIL's own bomb guard (warning above its MAX_IMAGE_PIXELS, error at twice that) is superseded by
        # our budget, which is checked right below from the same header.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source, formats=formats) as opened:
                check_pixels(opened.width, opened.height, where, max_pixels)
                return opened.convert(mode)
    except Image.DecompressionBombError as exc:
        budget = pixel_budget(max_pixels)
        raise ImageTooLarge(f"{where}: {exc}; it exceeds the decoding budget of {budget:,} pixels", None,
                            budget) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # truncated / corrupt data surfaces as OSError ("image file is truncated"), SyntaxError (bad chunk)
        # or ValueError (e.g. a bad WebP bitstream), an unknown format as UnidentifiedImageError
        if isinstance(exc, FileNotFoundError | PermissionError | ImageTooLarge):
            raise
        raise ImageUnreadable(f"{where}: not a readable image ({type(exc).__name__}: {exc})") from None
