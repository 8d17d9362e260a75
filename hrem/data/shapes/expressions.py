"""Referring expressions: structured predicates that are evaluated against every object of the image, and
kept only when they denote exactly the referred object; then worded from varied templates.

Structures (stored in the scene graph JSON):
  {"kind": "attribute", "target": D}                              "the large green triangle"
  {"kind": "relation", "target": D, "relation": R, "anchor": D}   "the circle left of the blue square"
  {"kind": "between", "target": D, "anchors": [D, D]}             "the star between the red heart and ..."
  {"kind": "ordinal", "target": D, "ordinal": O}                  "the leftmost star"
where D is a description {"shape", "colour", "size"} (null = not mentioned). Anchors must themselves denote
exactly one object, and an ordinal needs at least two objects matching its description.
"""
from __future__ import annotations

import random
from itertools import combinations

from hrem.data.shapes import language
from hrem.data.shapes.relations import between, extreme
from hrem.data.shapes.scene import Desc, Scene, SceneObject
from hrem.data.shapes.vocab import ORDINALS

# Descriptions used for the target of relational/ordinal expressions: the relation does the singling out.
RELATIONAL_TARGETS = (("shape",), ("colour",), ("colour", "shape"), ("size", "shape"))
MAX_RELATIONAL = 3


def _unique(scene: Scene, desc: Desc) -> int | None:
    found = scene.matching(desc)
    return found[0] if len(found) == 1 else None


def denote(structure: dict, scene: Scene) -> list[int]:
    """The indices of the objects the expression is true of."""
    target = scene.matching(Desc.from_json(structure["target"]))
    kind = structure["kind"]
    if kind == "attribute":
        return target
    if kind == "relation":
        anchor = _unique(scene, Desc.from_json(structure["anchor"]))
        pairs = scene.relation_table[structure["relation"]]
        return [] if anchor is None else [i for i in target if i != anchor and (i, anchor) in pairs]
    if kind == "between":
        b, c = (_unique(scene, Desc.from_json(d)) for d in structure["anchors"])
        if b is None or c is None or b == c:
            return []
        boxes = [o.box for o in scene.objects]
        return [i for i in target if i not in (b, c) and between(boxes[i], boxes[b], boxes[c], scene.side)]
    if kind == "ordinal":
        if len(target) < 2:
            return []
        boxes = {i: scene.objects[i].box for i in target}
        return [i for i in target if extreme(structure["ordinal"], boxes[i], [boxes[j] for j in target if j != i])]
    raise ValueError(f"unknown referring-expression kind {kind!r}")


def structure_json(structure: dict) -> dict:
    """A structure built with Desc values (while searching) in its JSON form."""
    def convert(value):
        if isinstance(value, Desc):
            return value.to_json()
        return [convert(v) for v in value] if isinstance(value, list) else value
    return {key: convert(value) for key, value in structure.items()}


def _attribute_candidates(scene: Scene, obj: SceneObject) -> list[dict]:
    return [{"kind": "attribute", "target": d} for d in scene.unique_descs(obj)]


def _anchor_descs(rng: random.Random, scene: Scene, obj: SceneObject) -> dict[int, Desc]:
    """One unique description per other object that has one (the anchors of relational expressions)."""
    anchors = {}
    for other in scene.objects:
        if other.index != obj.index:
            unique = scene.unique_descs(other)
            if unique:
                anchors[other.index] = rng.choice(unique)
    return anchors


def _relational_candidates(rng: random.Random, scene: Scene, obj: SceneObject) -> list[dict]:
    """Up to MAX_RELATIONAL unique relation/between/ordinal expressions, from shells tried in random order
    (enough for 1-3 expressions per object without enumerating every combination)."""
    anchors = _anchor_descs(rng, scene, obj)
    shells = [{"kind": "relation", "relation": r, "anchor": d}
              for a, d in anchors.items() for r, pairs in scene.relation_table.items() if (obj.index, a) in pairs]
    shells += [{"kind": "between", "anchors": [anchors[b], anchors[c]]}
               for b, c in combinations(sorted(anchors), 2)
               if between(obj.box, scene.objects[b].box, scene.objects[c].box, scene.side)]
    shells += [{"kind": "ordinal", "ordinal": o} for o in ORDINALS]
    rng.shuffle(shells)
    targets = rng.sample(RELATIONAL_TARGETS, len(RELATIONAL_TARGETS))
    found = []
    for shell in shells:
        for attributes in targets:
            structure = {**shell, "target": obj.describe(attributes)}
            if denote(structure, scene) == [obj.index]:
                found.append(structure)
                break
        if len(found) == MAX_RELATIONAL:
            break
    return found


def realise(rng: random.Random, structure: dict) -> str:
    target = Desc.from_json(structure["target"])
    kind = structure["kind"]
    if kind == "attribute":
        return language.definite(target)
    if kind == "relation":
        anchor = Desc.from_json(structure["anchor"])
        return (f"{language.definite(target)} {language.relation_phrase(rng, structure['relation'])} "
                f"{language.definite(anchor)}")
    if kind == "between":
        b, c = (language.definite(Desc.from_json(d)) for d in structure["anchors"])
        return f"{language.definite(target)} between {b} and {c}"
    return rng.choice(language.ORDINAL_TEMPLATES[structure["ordinal"]]).format(language.noun_phrase(target))


def referring_expressions(rng: random.Random, scene: Scene, obj: SceneObject) -> list[dict] | None:
    """1-3 expressions unique to `obj`, alternating attribute-only and relational/ordinal ones (which comes
    first is random); None when no expression singles the object out (the caller then redraws the scene).
    The relational search is the costly part, so it runs only when a relational slot comes up."""
    finders = {"attribute": lambda: _attribute_candidates(scene, obj),
               "relational": lambda: _relational_candidates(rng, scene, obj)}
    pools: dict[str, list[dict]] = {}

    def pool_of(kind: str) -> list[dict]:
        if kind not in pools:
            pools[kind] = finders[kind]()
        return pools[kind]

    order = rng.sample(sorted(finders), 2)
    wanted, chosen, texts = rng.randint(1, 3), [], set()
    for slot in range(2 * 3):
        pool = pool_of(order[slot % 2]) or pool_of(order[1 - slot % 2])
        if not pool or len(chosen) == wanted:
            break
        structure = pool.pop(rng.randrange(len(pool)))
        text = realise(rng, structure)
        if text not in texts:
            texts.add(text)
            chosen.append({"object": obj.index, "text": text, "structure": structure_json(structure)})
    return chosen or None
