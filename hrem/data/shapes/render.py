"""Drawing a scene: a muted textured/gradient/striped background, then flat-coloured polygons.

Masks are filled from the very polygons that are painted (PIL's polygon fill, no anti-aliasing), so a mask
pixel is set exactly where the object's colour was painted.
"""
from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from hrem.data.shapes.geometry import outline
from hrem.data.shapes.layout import Placement
from hrem.data.shapes.vocab import BACKGROUNDS, COLOURS


def _muted_colour(rng: random.Random) -> np.ndarray:
    # Mid greys with a slight tint: far from every object colour, including white and black.
    grey = rng.uniform(95.0, 165.0)
    return np.array([grey + rng.uniform(-22.0, 22.0) for _ in range(3)], dtype=np.float32)


def _colourise(base: np.ndarray, scale: np.ndarray, field: np.ndarray) -> Image.Image:
    """The RGB image with channel c = base[c] + scale[c] * field. Computed channel-first and merged by PIL,
    because numpy is several times slower on a trailing axis of 3."""
    planes = np.clip(base[:, None, None] + scale[:, None, None] * field[None], 0, 255).astype(np.uint8)
    return Image.merge("RGB", [Image.fromarray(plane, mode="L") for plane in planes])


def _gradient(rng: random.Random, side: int) -> np.ndarray:
    angle = rng.uniform(0.0, 2 * np.pi)
    axis = np.linspace(-0.5, 0.5, side, dtype=np.float32)
    t = np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None] + 0.5  # [H, W] in ~[0, 1]
    start, end = _muted_colour(rng), _muted_colour(rng)
    return _colourise(start, end - start, t)


def _textured(rng: random.Random, noise: np.random.Generator, side: int) -> np.ndarray:
    # Smooth blotches (a coarse random grid upsampled) plus fine grain, slightly tinted.
    cells = rng.choice((4, 6, 8))
    coarse = noise.uniform(-18.0, 18.0, size=(cells, cells)).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse, mode="F").resize((side, side), Image.BILINEAR))
    grain = noise.standard_normal(size=(side, side), dtype=np.float32) * 5.0
    tint = np.array([rng.uniform(0.7, 1.3) for _ in range(3)], dtype=np.float32)
    return _colourise(_muted_colour(rng), tint, blotches + grain)


def _striped(rng: random.Random, side: int) -> np.ndarray:
    period = rng.uniform(0.12, 0.3) * side
    angle = rng.uniform(0.0, np.pi)
    grid = np.arange(side, dtype=np.float32)
    phase = (np.cos(angle) * grid[None, :] + np.sin(angle) * grid[:, None]) * (2 * np.pi / period)
    return _colourise(_muted_colour(rng), np.full(3, 14.0, dtype=np.float32), np.sin(phase))


def draw_background(rng: random.Random, side: int, kind: str) -> Image.Image:
    """A side x side RGB background of the given kind (one of BACKGROUNDS)."""
    if kind == "gradient":
        return _gradient(rng, side)
    if kind == "textured":
        return _textured(rng, np.random.default_rng(rng.getrandbits(64)), side)
    if kind == "striped":
        return _striped(rng, side)
    raise ValueError(f"unknown background kind {kind!r}; expected one of {list(BACKGROUNDS)}")


def render_masks(placements: list[Placement], side: int) -> list[Image.Image]:
    """One side x side L-mode mask (0/255) per object, filled from the object's polygon."""
    masks = []
    for item in placements:
        canvas = Image.new("L", (side, side), 0)
        ImageDraw.Draw(canvas).polygon(outline(item.shape, item.cx, item.cy, item.radius), fill=255)
        masks.append(canvas)
    return masks


def render_image(background: Image.Image, placements: list[Placement], masks: list[Image.Image],
                 boxes: list[tuple[int, int, int, int]]) -> Image.Image:
    """Paint each object's colour through its mask, so the painted pixels are exactly the mask. Only the
    object's box (x0, y0, x1, y1) is touched: pasting through a full-image mask costs several times more."""
    for item, mask, box in zip(placements, masks, boxes):
        background.paste(COLOURS[item.colour], box, mask.crop(box))
    return background
