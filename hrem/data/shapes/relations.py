"""Spatial relations between objects, decided on their pixel boxes so that they are visually clear.

`left_of(a, b)`: a's box ends (exclusive right edge) at or before b's box starts; `above` likewise on y.
`next_to`: the gap between the two boxes is at most NEXT_TO of the image side. `between(a, b, c)`: b and c
lie on opposite sides of a (left/right or above/below) and a's centre is within BETWEEN_SLACK of the line
through their centres. Ordinals ("the leftmost star") are `left_of` every other object of the same kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

NEXT_TO = 0.12
BETWEEN_SLACK = 0.12


@dataclass(frozen=True)
class Box:
    """A pixel box [x0, x1) x [y0, y1)."""
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0

    @classmethod
    def from_xywh(cls, bbox: list[int] | tuple[int, ...]) -> Box:
        x, y, w, h = bbox
        return cls(x, y, x + w, y + h)


def left_of(a: Box, b: Box) -> bool:
    return a.x1 <= b.x0


def above(a: Box, b: Box) -> bool:
    return a.y1 <= b.y0


def next_to(a: Box, b: Box, side: int) -> bool:
    dx = max(0, b.x0 - a.x1, a.x0 - b.x1)
    dy = max(0, b.y0 - a.y1, a.y0 - b.y1)
    return math.hypot(dx, dy) <= NEXT_TO * side


def holds(relation: str, a: Box, b: Box, side: int) -> bool:
    """Whether `a <relation> b` holds, for a relation in vocab.RELATIONS."""
    if relation == "left_of":
        return left_of(a, b)
    if relation == "right_of":
        return left_of(b, a)
    if relation == "above":
        return above(a, b)
    if relation == "below":
        return above(b, a)
    if relation == "next_to":
        return next_to(a, b, side)
    raise ValueError(f"unknown relation {relation!r}")


def between(a: Box, b: Box, c: Box, side: int) -> bool:
    """a lies between b and c (in either order)."""
    horizontal = (left_of(b, a) and left_of(a, c)) or (left_of(c, a) and left_of(a, b))
    vertical = (above(b, a) and above(a, c)) or (above(c, a) and above(a, b))
    if not (horizontal or vertical):
        return False
    (ax, ay), (bx, by), (cx, cy) = a.centre, b.centre, c.centre
    length = math.hypot(cx - bx, cy - by)
    distance = abs((cx - bx) * (by - ay) - (bx - ax) * (cy - by)) / length
    return distance <= BETWEEN_SLACK * side


def extreme(ordinal: str, candidate: Box, others: list[Box]) -> bool:
    """Whether `candidate` is clearly the leftmost/rightmost/topmost/bottommost of itself + `others`."""
    tests = {"leftmost": lambda o: left_of(candidate, o), "rightmost": lambda o: left_of(o, candidate),
             "topmost": lambda o: above(candidate, o), "bottommost": lambda o: above(o, candidate)}
    if ordinal not in tests:
        raise ValueError(f"unknown ordinal {ordinal!r}; expected one of {sorted(tests)}")
    return bool(others) and all(tests[ordinal](o) for o in others)
