"""Captions: each is worded from structured facts that are true of the scene graph, and the facts are kept
next to the text so that tests (and users) can check them.

Facts: {"kind": "count", "desc": D, "n": n}  exactly n objects match D
       {"kind": "exists", "desc": D}          at least one object matches D
       {"kind": "relation", "subject": D, "relation": R, "object": D}   some pair of objects is in relation
       {"kind": "between", "subject": D, "anchors": [D, D]}            some triple of distinct objects
       {"kind": "total", "n": n}              the image holds n objects
       {"kind": "background", "background": K}
A caption mentions only some of the objects, so several images usually fit it: retrieval stays non-trivial.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from itertools import permutations

from hrem.data.shapes import language
from hrem.data.shapes.relations import between
from hrem.data.shapes.scene import Desc, Scene, SceneObject

MENTION_SUBSETS = (("colour", "shape"), ("size", "colour", "shape"), ("shape",), ("colour",), ("size", "shape"),
                   ("colour", "shape"))
COUNT_SUBSETS = (("colour",), ("shape",), ("colour", "shape"))
CAPTIONS_PER_IMAGE = 5
MAX_ATTEMPTS = 200


def _mention(rng: random.Random, obj: SceneObject) -> Desc:
    return obj.describe(rng.choice(MENTION_SUBSETS))


def _count_fact(rng: random.Random, scene: Scene, obj: SceneObject) -> dict:
    desc = obj.describe(rng.choice(COUNT_SUBSETS))
    return {"kind": "count", "desc": desc.to_json(), "n": len(scene.matching(desc))}


def _count_text(fact: dict) -> str:
    return language.counted(Desc.from_json(fact["desc"]), fact["n"])


def _count_and_exists(rng: random.Random, scene: Scene):
    first = _count_fact(rng, scene, rng.choice(scene.objects))
    others = [o for o in scene.objects if not Desc.from_json(first["desc"]).matches(o)]
    if not others:
        return None
    second = _mention(rng, rng.choice(others))
    return f"{_count_text(first)} and {language.indefinite(second)}", [first, _exists(second)]


def _two_counts(rng: random.Random, scene: Scene):
    first = _count_fact(rng, scene, rng.choice(scene.objects))
    others = [o for o in scene.objects if not Desc.from_json(first["desc"]).matches(o)]
    if not others:
        return None
    second = _count_fact(rng, scene, rng.choice(others))
    return f"{_count_text(first)} and {_count_text(second)}", [first, second]


def _exists(desc: Desc) -> dict:
    return {"kind": "exists", "desc": desc.to_json()}


def _two_objects(rng: random.Random, scene: Scene):
    a, b = rng.sample(scene.objects, 2)
    da, db = _mention(rng, a), _mention(rng, b)
    prefix = rng.choice(("", "a picture of ", "an image with "))
    return f"{prefix}{language.indefinite(da)} and {language.indefinite(db)}", [_exists(da), _exists(db)]


def _relation(rng: random.Random, scene: Scene):
    pairs = [(r, a, b) for r, table in scene.relation_table.items() for a, b in sorted(table)]
    if not pairs:
        return None
    relation, a, b = rng.choice(pairs)
    da, db = _mention(rng, scene.objects[a]), _mention(rng, scene.objects[b])
    prefix = rng.choice(("", "there is "))
    text = f"{prefix}{language.indefinite(da)} {language.relation_phrase(rng, relation)} {language.indefinite(db)}"
    return text, [{"kind": "relation", "subject": da.to_json(), "relation": relation, "object": db.to_json()}]


def _between(rng: random.Random, scene: Scene):
    triples = [(a, b, c) for a, b, c in permutations(scene.objects, 3)
               if b.index < c.index and between(a.box, b.box, c.box, scene.side)]
    if not triples:
        return None
    a, b, c = (_mention(rng, o) for o in rng.choice(triples))
    text = f"{language.indefinite(a)} between {language.indefinite(b)} and {language.indefinite(c)}"
    return text, [{"kind": "between", "subject": a.to_json(), "anchors": [b.to_json(), c.to_json()]}]


def _total_and_background(rng: random.Random, scene: Scene):
    n, bg = len(scene.objects), language.BACKGROUND_WORDS[scene.background]
    total = language.counted(Desc(), n)
    text = rng.choice((f"{total} on a {bg} background", f"a {bg} background with {total}"))
    return text, [{"kind": "total", "n": n}, {"kind": "background", "background": scene.background}]


def _total_including(rng: random.Random, scene: Scene):
    desc = _mention(rng, rng.choice(scene.objects))
    text = f"{language.counted(Desc(), len(scene.objects))} including {language.indefinite(desc)}"
    return text, [{"kind": "total", "n": len(scene.objects)}, _exists(desc)]


TEMPLATES: tuple[tuple[Callable, int], ...] = (
    (_count_and_exists, 3), (_two_counts, 1), (_two_objects, 2), (_relation, 4), (_between, 1),
    (_total_and_background, 1), (_total_including, 1))


def make_captions(rng: random.Random, scene: Scene) -> list[dict] | None:
    """Five distinct captions [{"text", "facts"}], or None if the scene cannot yield five."""
    templates, weights = zip(*TEMPLATES)
    captions, texts = [], set()
    for _ in range(MAX_ATTEMPTS):
        made = rng.choices(templates, weights)[0](rng, scene)
        if made is None:
            continue
        text = language.sentence(made[0])
        if text not in texts:
            texts.add(text)
            captions.append({"text": text, "facts": made[1]})
            if len(captions) == CAPTIONS_PER_IMAGE:
                return captions
    return None
