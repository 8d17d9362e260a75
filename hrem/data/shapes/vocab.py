"""The ShapesRef vocabularies: shapes (= categories), colours, sizes, relations and background kinds.

Colours are saturated or extreme (white/black) so they stay distinct from one another and from the muted
mid-tone backgrounds; sizes are absolute fractions of the image side, far enough apart (1 : 1.45 : 2) to be
told apart by eye and by a small CNN.
"""
from __future__ import annotations

# Category = shape name; cat_id = index in this tuple (never reorder: it is part of the on-disk format).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")
SHAPE_PLURALS: dict[str, str] = {s: s + ("es" if s.endswith("s") else "s") for s in SHAPES}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 225),
    "yellow": (245, 220, 25),
    "purple": (145, 45, 190),
    "orange": (250, 140, 15),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}

# Bounding-circle radius as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.075, "medium": 0.11, "large": 0.15}

RELATIONS: tuple[str, ...] = ("left_of", "right_of", "above", "below", "next_to")
ORDINALS: tuple[str, ...] = ("leftmost", "rightmost", "topmost", "bottommost")
BACKGROUNDS: tuple[str, ...] = ("gradient", "textured", "striped")

MIN_OBJECTS, MAX_OBJECTS = 2, 5
# ref_id = imgid * REF_STRIDE + object index: stable whatever the chunking or number of workers.
REF_STRIDE = 10

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")


def cat_id(shape: str) -> int:
    return SHAPES.index(shape)


def vocabulary_json() -> dict:
    """The vocabularies as written into shapesref.json."""
    return {
        "shapes": list(SHAPES),
        "colours": {name: list(rgb) for name, rgb in COLOURS.items()},
        "sizes": dict(SIZES),
        "relations": list(RELATIONS) + ["between"],
        "ordinals": list(ORDINALS),
        "backgrounds": list(BACKGROUNDS),
    }
