"""Version-2 captions: sentences that describe a scene the way Flickr30K captions describe a photo -- most
objects named by colour and shape (size now and then), one or two spatial relations, counts and the
background now and then, in varied frames -- so that a caption pins down its image.

Version 1 (captions.py) mentions only some objects, so a caption is true of ~10 of 1,000 images and even
an oracle retrieves poorly; `hrem data ceiling` measures both versions.

Captions are drawn from their own random stream (`caption_rng`), after the version-1 captions have been
drawn from the scene's stream as before: images, masks and refs are byte-identical in both versions.

Grammar (what hrem.eval.shapes_grammar parses back, independently of this module):

    caption  := FRAME filled with LIST, capitalised, ending with "."
    FRAME    := "{L}" | "{L} on a {bg} background" | "{T}: {L}" | "{T} on a {bg} background: {L}"
              | "a picture of {L}" | "an image of {L}" | "there is / are {L}" | "{L}, {T} in all"
    T        := NUMBER ("shapes" | "objects")                   exactly that many objects in the image
    LIST     := ITEM | ITEM " and " ITEM | ITEM ", " ... ", " ITEM " and " ITEM
    ITEM     := NP | NP " " RELATION " " NP                     (a relation between two objects)
    NP       := ("a" | "an") [size] [colour] shape               an object like that exists
              | NUMBER [size] [colour] (shapes | "shapes")       exactly NUMBER objects like that

Facts are those of version 1 (exists, count, relation, total, background) and are stored next to the text.
"""
from __future__ import annotations

import random
from collections.abc import Callable

from hrem.data.shapes import language
from hrem.data.shapes.scene import Desc, Scene, SceneObject
from hrem.data.shapes.vocab import NUMBER_WORDS

CAPTIONS_PER_IMAGE = 5
MAX_ATTEMPTS = 300
SIZE_P = 0.3                  # an object's size is named with this probability
BACKGROUND_P = 0.25           # a frame with the background
TOTAL_P = 0.4                 # a frame with the total count


def caption_rng(seed: int, imgid: int) -> random.Random:
    return random.Random(f"shapesref/{seed}/{imgid}/captions-v2")


def _desc(rng: random.Random, obj: SceneObject) -> Desc:
    return obj.describe(("size", "colour", "shape") if rng.random() < SIZE_P else ("colour", "shape"))


def _exists(desc: Desc) -> dict:
    return {"kind": "exists", "desc": desc.to_json()}


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _relation_item(rng: random.Random, scene: Scene, a: int, b: int, relation: str) -> tuple[str, list[dict]]:
    da, db = _desc(rng, scene.objects[a]), _desc(rng, scene.objects[b])
    text = f"{language.indefinite(da)} {language.relation_phrase(rng, relation)} {language.indefinite(db)}"
    return text, [{"kind": "relation", "subject": da.to_json(), "relation": relation, "object": db.to_json()}]


def _object_items(rng: random.Random, scene: Scene, objects: list[SceneObject]) -> list:
    """One item per object; objects that share colour and shape become one count ("two red circles"),
    never the same phrase twice ("a red circle and a red circle")."""
    items, done = [], set()
    for obj in objects:
        if obj.index in done:
            continue
        twins = scene.matching(obj.describe(("colour", "shape")))
        if len(twins) > 1:
            desc = obj.describe(("colour", "shape"))
            items.append((language.counted(desc, len(twins)), [{"kind": "count", "desc": desc.to_json(),
                                                                   "n": len(twins)}]))
            done.update(twins)
        else:
            desc = _desc(rng, obj)
            items.append((language.indefinite(desc), [_exists(desc)]))
            done.add(obj.index)
    return items


def _pairs(scene: Scene) -> list[tuple[str, int, int]]:
    return [(r, a, b) for r, table in scene.relation_table.items() for a, b in sorted(table)]


def _relation_items(rng: random.Random, scene: Scene, how_many: int) -> tuple[list, set[int]] | None:
    """Up to `how_many` relation items over disjoint object pairs, and the objects they used."""
    pairs = _pairs(scene)
    rng.shuffle(pairs)
    items, used = [], set()
    for relation, a, b in pairs:
        if a not in used and b not in used:
            items.append(_relation_item(rng, scene, a, b, relation))
            used |= {a, b}
            if len(items) == how_many:
                break
    return (items, used) if items else None


def _count_item(rng: random.Random, scene: Scene) -> tuple[tuple[str, list[dict]], set[int]] | None:
    """'two red shapes' / 'three circles': a colour or shape shared by >= 2 objects, counted exactly."""
    groups = []
    for attribute in ("colour", "shape"):
        values = sorted({getattr(o, attribute) for o in scene.objects})   # sorted: set order varies by process
        for value in values:
            members = {o.index for o in scene.objects if getattr(o, attribute) == value}
            if len(members) >= 2:
                groups.append((Desc(**{attribute: value}), members))
    if not groups:
        return None
    desc, members = rng.choice(groups)
    return (language.counted(desc, len(members)), [{"kind": "count", "desc": desc.to_json(), "n": len(members)}]), members


def _rest(rng: random.Random, scene: Scene, used: set[int], keep_all: bool) -> list:
    others = [o for o in scene.objects if o.index not in used]
    if not keep_all and len(others) > 1 and rng.random() < 0.5:
        others = rng.sample(others, len(others) - 1)
    rng.shuffle(others)
    return _object_items(rng, scene, others)


def _inventory(rng: random.Random, scene: Scene):
    objects = list(scene.objects)
    if len(objects) > 3 and rng.random() < 0.5:
        objects = rng.sample(objects, len(objects) - 1)
    rng.shuffle(objects)
    return _object_items(rng, scene, objects)


def _with_relations(rng: random.Random, scene: Scene):
    found = _relation_items(rng, scene, 2 if len(scene.objects) >= 4 and rng.random() < 0.3 else 1)
    if found is None:
        return None
    items, used = found
    return items + _rest(rng, scene, used, keep_all=rng.random() < 0.6)


def _with_count(rng: random.Random, scene: Scene):
    found = _count_item(rng, scene)
    if found is None:
        return None
    item, used = found
    return [item] + _rest(rng, scene, used, keep_all=True)


def _partial(rng: random.Random, scene: Scene):
    """Two of three or more objects and a relation between them (a single object, or two without a
    relation, would be true of dozens of the 1,000 images: retrieval could not tell them apart)."""
    if len(scene.objects) <= 2:
        return None
    found = _relation_items(rng, scene, 1)
    return None if found is None else found[0]


BODIES: tuple[tuple[Callable, float], ...] = ((_inventory, 0.44), (_with_relations, 0.38), (_with_count, 0.12),
                                              (_partial, 0.06))


def _frame(rng: random.Random, scene: Scene, listed: str, total_p: float) -> tuple[str, list[dict]]:
    """Wrap the list in a sentence frame; the total count and background facts it adds."""
    n, bg = len(scene.objects), language.BACKGROUND_WORDS[scene.background]
    total_fact, bg_fact = {"kind": "total", "n": n}, {"kind": "background", "background": scene.background}
    total = f"{NUMBER_WORDS[n]} {rng.choice(('shapes', 'objects'))}"
    with_total, with_bg = rng.random() < total_p, rng.random() < BACKGROUND_P
    if with_total and with_bg:
        return f"{total} on a {bg} background: {listed}", [total_fact, bg_fact]
    if with_total:
        return rng.choice((f"{total}: {listed}", f"{listed}, {total} in all")), [total_fact]
    if with_bg:
        return f"{listed} on a {bg} background", [bg_fact]
    there = "there are " if listed.split(" ", 1)[0] in NUMBER_WORDS[2:] else "there is "
    prefix = rng.choice(("", "", "a picture of ", "an image of ", there))
    return prefix + listed, []


def _caption(rng: random.Random, scene: Scene) -> dict | None:
    bodies, weights = zip(*BODIES)
    body = rng.choices(bodies, weights)[0]
    items = body(rng, scene)
    if not items:
        return None
    # counts ("two red shapes") and lists of one or two objects say little on their own: they come with
    # the total (a relation is specific enough)
    facts = [f for _, item_facts in items for f in item_facts]
    few = sum(f.get("n", 1) for f in facts if f["kind"] in ("exists", "count")) < 3
    relation = any(f["kind"] == "relation" for f in facts)
    total_p = 0.0 if body is _partial else 1.0 if body is _with_count or (few and not relation) else TOTAL_P
    text, frame_facts = _frame(rng, scene, _join([t for t, _ in items]), total_p)
    facts = facts + frame_facts
    return {"text": language.sentence(text), "facts": facts}


def make_captions_v2(rng: random.Random, scene: Scene) -> list[dict]:
    """Five distinct captions [{"text", "facts"}]. A scene is never redrawn for its version-2 captions
    (that would change the images), so failing to find five is an error."""
    captions, texts = [], set()
    for _ in range(MAX_ATTEMPTS):
        made = _caption(rng, scene)
        if made is not None and made["text"] not in texts:
            texts.add(made["text"])
            captions.append(made)
            if len(captions) == CAPTIONS_PER_IMAGE:
                return captions
    raise RuntimeError(f"image {scene.imgid}: found only {len(captions)} distinct version-2 captions in "
                       f"{MAX_ATTEMPTS} draws")
