"""The scene graph: objects with attributes and pixel boxes, descriptions that pick objects out, and the
pairwise relations, computed once per scene."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from itertools import combinations

from hrem.data.shapes.relations import Box, holds
from hrem.data.shapes.vocab import RELATIONS, cat_id

ATTRIBUTES = ("size", "colour", "shape")


@dataclass(frozen=True)
class Desc:
    """A description such as "large green triangle"; None = not mentioned ("green shape")."""
    shape: str | None = None
    colour: str | None = None
    size: str | None = None

    def matches(self, obj: SceneObject) -> bool:
        return ((self.shape is None or self.shape == obj.shape)
                and (self.colour is None or self.colour == obj.colour)
                and (self.size is None or self.size == obj.size))

    def to_json(self) -> dict:
        return {"shape": self.shape, "colour": self.colour, "size": self.size}

    @classmethod
    def from_json(cls, data: dict | Desc) -> Desc:
        """Parse {"shape", "colour", "size"}; a Desc passes through (structures under construction)."""
        if isinstance(data, Desc):
            return data
        return cls(shape=data.get("shape"), colour=data.get("colour"), size=data.get("size"))


@dataclass(frozen=True)
class SceneObject:
    index: int
    shape: str
    colour: str
    size: str
    centre: tuple[int, int]
    radius: float
    box: Box

    def describe(self, attributes: tuple[str, ...]) -> Desc:
        """This object's description using only the named attributes (memoised: asked thousands of times)."""
        found = self._descs.get(attributes)
        if found is None:
            found = self._descs[attributes] = Desc(**{name: getattr(self, name) for name in attributes})
        return found

    @cached_property
    def _descs(self) -> dict[tuple[str, ...], Desc]:
        return {}


# The non-empty attribute subsets, most specific first.
ATTRIBUTE_SUBSETS: tuple[tuple[str, ...], ...] = tuple(
    subset for n in (3, 2, 1) for subset in combinations(ATTRIBUTES, n))


@dataclass
class Scene:
    imgid: int
    side: int
    background: str
    objects: list[SceneObject]
    captions: list[dict] = field(default_factory=list)
    expressions: list[dict] = field(default_factory=list)

    _matching: dict[Desc, list[int]] = field(default_factory=dict, init=False, repr=False)
    _unique: dict[int, list[Desc]] = field(default_factory=dict, init=False, repr=False)

    def matching(self, desc: Desc) -> list[int]:
        """Indices of the objects `desc` is true of (memoised: expression search asks many times)."""
        found = self._matching.get(desc)
        if found is None:
            found = self._matching[desc] = [o.index for o in self.objects if desc.matches(o)]
        return found

    @cached_property
    def relation_table(self) -> dict[str, set[tuple[int, int]]]:
        """relation -> the set of (a, b) index pairs with `a relation b`."""
        table: dict[str, set[tuple[int, int]]] = {r: set() for r in RELATIONS}
        for a in self.objects:
            for b in self.objects:
                if a.index != b.index:
                    for r in RELATIONS:
                        if holds(r, a.box, b.box, self.side):
                            table[r].add((a.index, b.index))
        return table

    def unique_descs(self, obj: SceneObject) -> list[Desc]:
        """The attribute-only descriptions that are true of `obj` and of no other object here."""
        if obj.index not in self._unique:
            self._unique[obj.index] = [d for d in (obj.describe(s) for s in ATTRIBUTE_SUBSETS)
                                       if self.matching(d) == [obj.index]]
        return self._unique[obj.index]

    def object_json(self, obj: SceneObject, ref_id: int, mask: str) -> dict:
        box = obj.box
        return {"index": obj.index, "ref_id": ref_id, "shape": obj.shape, "cat_id": cat_id(obj.shape),
                "colour": obj.colour, "size": obj.size, "centre": list(obj.centre), "radius": obj.radius,
                "bbox": [box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0], "mask": mask}
