"""Shape outlines as polygons. The image and the object's mask are both filled from the same polygon, so
the mask is exactly the painted pixels."""
from __future__ import annotations

import math
from functools import cache

Point = tuple[float, float]


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> list[Point]:
    return [(radius * math.cos(phase + 2 * math.pi * k / n), radius * math.sin(phase + 2 * math.pi * k / n))
            for k in range(n)]


def _star(points: int = 5, inner: float = 0.45) -> list[Point]:
    outer = _regular(points)
    inner_pts = _regular(points, inner, phase=-math.pi / 2 + math.pi / points)
    return [p for pair in zip(outer, inner_pts) for p in pair]


def _cross(arm: float = 0.36) -> list[Point]:
    a, r = arm, 0.9
    return [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a),
            (-a, -a)]


def _heart(n: int = 40) -> list[Point]:
    # The classic parametric heart, scaled into the unit circle and centred on its box.
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        pts.append((x / 17.0, (y + 2.5) / 17.0))
    return pts


@cache
def unit_outline(shape: str) -> tuple[Point, ...]:
    """The outline of `shape` inside the unit circle, upright (shapes are never rotated, so a square is
    never confused with a diamond)."""
    outlines = {
        "circle": lambda: _regular(48),
        "square": lambda: [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
        "triangle": lambda: [(x, y + 0.15) for x, y in _regular(3, 1.05)],
        "star": _star,
        "hexagon": lambda: _regular(6, phase=0.0),
        "diamond": lambda: [(0.0, -1.0), (0.68, 0.0), (0.0, 1.0), (-0.68, 0.0)],
        "cross": _cross,
        "heart": _heart,
    }
    if shape not in outlines:
        raise ValueError(f"unknown shape {shape!r}; expected one of {sorted(outlines)}")
    return tuple(outlines[shape]())


def outline(shape: str, cx: float, cy: float, radius: float) -> list[Point]:
    """The polygon of `shape` centred at (cx, cy) with bounding-circle radius `radius`, in pixels."""
    return [(cx + radius * x, cy + radius * y) for x, y in unit_outline(shape)]
