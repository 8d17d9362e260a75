"""Whether a fact is true of a ShapesRef scene, decided from the scene graph on disk (scenes/{split}.json:
objects with bbox, shape, colour, size; the background) -- never with the generator's code.

The relations follow their documented definitions (hrem/data/shapes/relations.py docstring), written here
again on purpose: boxes are [x0, x1) x [y0, y1) from bbox = [x, y, w, h];
    left_of(a, b): a.x1 <= b.x0        above(a, b): a.y1 <= b.y0      (right_of / below: swapped)
    next_to(a, b): the gap between the boxes is at most 0.12 of the image side
    between(a, b, c): b and c lie on opposite sides of a (left/right or above/below) and a's centre is within
    0.12 of the side of the line through their centres.

`truth_matrix(facts_per_caption, scenes, side)` -> bool [captions, images], vectorised over images for the
attribute facts (a count table of every description per image), with relations checked only on the
images that pass the rest.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product

import numpy as np

NEXT_TO, BETWEEN_SLACK = 0.12, 0.12
KEYS = ("shape", "colour", "size")


def _box(obj: dict) -> tuple[float, float, float, float]:
    x, y, w, h = obj["bbox"]
    return x, y, x + w, y + h


def relation_holds(relation: str, a: dict, b: dict, side: int) -> bool:
    ax0, ay0, ax1, ay1 = _box(a)
    bx0, by0, bx1, by1 = _box(b)
    if relation == "left_of":
        return ax1 <= bx0
    if relation == "right_of":
        return bx1 <= ax0
    if relation == "above":
        return ay1 <= by0
    if relation == "below":
        return by1 <= ay0
    if relation == "next_to":
        return math.hypot(max(0, bx0 - ax1, ax0 - bx1), max(0, by0 - ay1, ay0 - by1)) <= NEXT_TO * side
    raise ValueError(f"relation: expected left_of, right_of, above, below or next_to, found {relation!r}")


def between_holds(a: dict, b: dict, c: dict, side: int) -> bool:
    horizontal = (relation_holds("left_of", b, a, side) and relation_holds("left_of", a, c, side)) or \
                 (relation_holds("left_of", c, a, side) and relation_holds("left_of", a, b, side))
    vertical = (relation_holds("above", b, a, side) and relation_holds("above", a, c, side)) or \
               (relation_holds("above", c, a, side) and relation_holds("above", a, b, side))
    if not (horizontal or vertical):
        return False
    (ax, ay), (bx, by), (cx, cy) = [((q[0] + q[2]) / 2, (q[1] + q[3]) / 2) for q in map(_box, (a, b, c))]
    distance = abs((cx - bx) * (by - ay) - (bx - ax) * (cy - by)) / math.hypot(cx - bx, cy - by)
    return distance <= BETWEEN_SLACK * side


def matches(desc: dict, obj: dict) -> bool:
    return all(desc.get(k) is None or desc.get(k) == obj[k] for k in KEYS)


def fact_holds(fact: dict, scene: dict, side: int) -> bool:
    """One fact against one scene record."""
    objects, kind = scene["objects"], fact["kind"]
    if kind == "exists":
        return any(matches(fact["desc"], o) for o in objects)
    if kind == "count":
        return sum(matches(fact["desc"], o) for o in objects) == fact["n"]
    if kind == "total":
        return len(objects) == fact["n"]
    if kind == "background":
        return scene["background"] == fact["background"]
    if kind == "relation":
        return any(a is not b and matches(fact["subject"], a) and matches(fact["object"], b)
                   and relation_holds(fact["relation"], a, b, side) for a in objects for b in objects)
    if kind == "between":
        first, second = fact["anchors"]
        return any(len({id(a), id(b), id(c)}) == 3 and matches(fact["subject"], a) and matches(first, b)
                   and matches(second, c) and between_holds(a, b, c, side)
                   for a in objects for b in objects for c in objects)
    raise ValueError(f"fact kind: expected exists, count, total, background, relation or between, found {kind!r}")


def _desc_key(desc: dict) -> tuple:
    return tuple(desc.get(k) for k in KEYS)


class SceneTable:
    """Per image: how many objects match each description (every attribute subset), object count and
    background -- the attribute facts of all captions against all images in a few numpy operations."""

    def __init__(self, scenes: Sequence[dict]) -> None:
        self.scenes = list(scenes)
        self.index: dict[tuple, int] = {}
        counts: list[dict[int, int]] = []
        for scene in self.scenes:
            row: dict[int, int] = {}
            for obj in scene["objects"]:
                for mask in product((True, False), repeat=3):
                    key = tuple(obj[k] if keep else None for k, keep in zip(KEYS, mask))
                    column = self.index.setdefault(key, len(self.index))
                    row[column] = row.get(column, 0) + 1
            counts.append(row)
        self.counts = np.zeros((len(self.scenes), len(self.index)), np.int16)
        for i, row in enumerate(counts):
            self.counts[i, list(row)] = list(row.values())
        self.totals = np.array([len(s["objects"]) for s in self.scenes])
        self.backgrounds = np.array([s["background"] for s in self.scenes])

    def _column(self, desc: dict) -> np.ndarray:
        column = self.index.get(_desc_key(desc))
        return np.zeros(len(self.scenes), np.int16) if column is None else self.counts[:, column]

    def attribute_truth(self, fact: dict) -> np.ndarray | None:
        """bool [images] for exists / count / total / background facts; None for relation facts."""
        kind = fact["kind"]
        if kind == "exists":
            return self._column(fact["desc"]) >= 1
        if kind == "count":
            return self._column(fact["desc"]) == fact["n"]
        if kind == "total":
            return self.totals == fact["n"]
        if kind == "background":
            return self.backgrounds == fact["background"]
        return None


def truth_matrix(facts_per_caption: Sequence[Sequence[dict]], scenes: Sequence[dict], side: int) -> np.ndarray:
    """bool [captions, images]: every fact of the caption holds in the image."""
    table = SceneTable(scenes)
    truth = np.ones((len(facts_per_caption), len(table.scenes)), bool)
    for row, facts in enumerate(facts_per_caption):
        spatial = []
        for fact in facts:
            found = table.attribute_truth(fact)
            if found is None:
                spatial.append(fact)
            else:
                truth[row] &= found
        for image in np.flatnonzero(truth[row]) if spatial else ():
            truth[row, image] = all(fact_holds(f, table.scenes[image], side) for f in spatial)
    return truth
