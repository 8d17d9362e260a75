"""Sampling what is in a scene and where: 2-5 objects placed by rejection sampling so they never touch.

Objects do not overlap at all (their bounding circles keep a gap), so every object's mask is its full
polygon and its box is that polygon's pixel extent; no occlusion reasoning is needed anywhere.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from hrem.data.shapes.vocab import COLOURS, MAX_OBJECTS, MIN_OBJECTS, SHAPES, SIZES

GAP = 0.04          # minimal gap between bounding circles, as a fraction of the image side
BORDER = 0.02       # minimal distance to the image border, same unit
TRIES_PER_OBJECT = 60
SCENE_RESTARTS = 20


@dataclass(frozen=True)
class Placement:
    shape: str
    colour: str
    size: str
    cx: int
    cy: int
    radius: float


def _fits(cx: float, cy: float, radius: float, placed: list[Placement], gap: float) -> bool:
    return all(math.hypot(cx - p.cx, cy - p.cy) >= radius + p.radius + gap for p in placed)


def _place_one(rng: random.Random, side: int, placed: list[Placement]) -> Placement | None:
    shape, colour, size = rng.choice(SHAPES), rng.choice(tuple(COLOURS)), rng.choice(tuple(SIZES))
    radius = SIZES[size] * side
    low, high = math.ceil(radius + BORDER * side), math.floor(side - 1 - radius - BORDER * side)
    for _ in range(TRIES_PER_OBJECT):
        cx, cy = rng.randint(low, high), rng.randint(low, high)
        if _fits(cx, cy, radius, placed, GAP * side):
            return Placement(shape, colour, size, cx, cy, radius)
    return None


def sample_layout(rng: random.Random, side: int) -> list[Placement]:
    """2-5 non-overlapping objects with uniformly drawn shape, colour and size.

    A crowded draw (e.g. five large objects) that cannot be placed restarts the scene; after
    SCENE_RESTARTS failures the object count is lowered, so the function always terminates.
    """
    count = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
    while True:
        for _ in range(SCENE_RESTARTS):
            placed: list[Placement] = []
            while len(placed) < count:
                item = _place_one(rng, side, placed)
                if item is None:
                    break
                placed.append(item)
            if len(placed) == count:
                return placed
        if count == MIN_OBJECTS:
            raise ValueError(f"image size {side}px is too small to place {MIN_OBJECTS} objects; use >= 48")
        count -= 1
