"""Overlay PNGs of a grounding result: translucent mask, box, the query text and the score (PIL only).

Small images (ShapesRef is 128 px) are upscaled first (nearest, so pixels stay sharp) so that the text is
readable; the caption sits on a strip below the image instead of covering it.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hrem.utils.files import atomic_path
from hrem.utils.images import load_image_file

MASK_RGB = (0, 200, 255)
BOX_RGB = (255, 40, 40)
MASK_ALPHA = 0.45
MIN_SIDE = 384  # upscale smaller images to at least this width for legible text
MAX_SIDE = 2048  # downscale larger images so an overlay stays a viewable, bounded file
CAPTION_CHARS = 52


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _blend_mask(image: Image.Image, mask: np.ndarray) -> Image.Image:
    rgb = np.asarray(image, dtype=np.float32)
    colour = np.array(MASK_RGB, dtype=np.float32)
    rgb[mask] = (1 - MASK_ALPHA) * rgb[mask] + MASK_ALPHA * colour
    return Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))


def _bounded(image: Image.Image, box: Any, mask: np.ndarray | None) -> tuple[Image.Image, Any, np.ndarray | None]:
    """Image, box and mask downscaled so the long side is at most MAX_SIDE (before blending, which works
    on a float copy of the image)."""
    scale = MAX_SIDE / max(image.width, image.height)
    if scale >= 1:
        return image, box, mask
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    return image.resize(size, Image.BILINEAR), [float(v) * scale for v in box], mask


def render_overlay(image: Image.Image, box: Any, score: float, mask: np.ndarray | None, text: str) -> Image.Image:
    """The overlay as a PIL image: image (upscaled when small, downscaled when large) + mask + box,
    caption strip below."""
    image = image.convert("RGB")
    if mask is not None and mask.shape != (image.height, image.width):
        raise ValueError(f"overlay mask: expected shape {(image.height, image.width)} like the image, found "
                         f"{mask.shape}")
    image, box, mask = _bounded(image, box, mask)
    if mask is not None:
        image = _blend_mask(image, mask.astype(bool))
    factor = max(1, -(-MIN_SIDE // image.width))
    image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    x1, y1, x2, y2 = (float(v) * factor for v in box)
    draw = ImageDraw.Draw(image)
    draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=BOX_RGB, width=max(2, factor))
    lines = textwrap.wrap(f'"{text}"', CAPTION_CHARS) + [f"score {score:.3f}"]
    font = _font(16)
    strip = Image.new("RGB", (image.width, 8 + 20 * len(lines)), (255, 255, 255))
    caption = ImageDraw.Draw(strip)
    for row, line in enumerate(lines):
        caption.text((6, 4 + 20 * row), line, fill=(0, 0, 0), font=font)
    out = Image.new("RGB", (image.width, image.height + strip.height), (255, 255, 255))
    out.paste(image, (0, 0))
    out.paste(strip, (0, image.height))
    return out


def write_overlay(path: str | Path, image: Any, box: Any, score: float, mask: np.ndarray | None,
                  text: str) -> Path:
    """Render and save (atomically) a PNG overlay; `image` is a path or a PIL image."""
    if not isinstance(image, Image.Image):
        image = load_image_file(image)  # pixel budget checked before decoding
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        render_overlay(image, box, score, mask, text).save(tmp, format="PNG")
    return path


def write_grid(path: str | Path, rows: list[list[Path]], gap: int = 8) -> Path:
    """One PNG of overlay images laid out in rows (e.g. one row per query, its top-k results), scaled to
    a common cell size."""
    cells = [[load_image_file(p) for p in row] for row in rows if row]
    if not cells:
        raise ValueError("overlay grid: expected at least one image, found none")
    width = max(im.width for row in cells for im in row)
    height = max(im.height for row in cells for im in row)
    columns = max(len(row) for row in cells)
    sheet = Image.new("RGB", (columns * (width + gap) + gap, len(cells) * (height + gap) + gap), (255, 255, 255))
    for r, row in enumerate(cells):
        for c, im in enumerate(row):
            sheet.paste(im, (gap + c * (width + gap), gap + r * (height + gap)))
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
