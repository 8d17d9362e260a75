"""ShapesRef generator invariants, checked against reference predicates written here from the on-disk
scene graphs (boxes), not with the generator's own code."""
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrem.data.shapes import ShapesRefConfig, generate_shapesref, split_images

SIZE = 96
NEXT_TO, BETWEEN_SLACK = 0.12, 0.12   # the documented thresholds, as fractions of the image side


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes") / "ds"
    generate_shapesref(out, ShapesRefConfig(train=24, dev=8, test=8, size=SIZE, seed=3), workers=1)
    return out


def _scenes(root: Path) -> list[dict]:
    return [img for split in ("train", "val", "test")
            for img in json.loads((root / "scenes" / f"{split}.json").read_text())["images"]]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- reference semantics (naive, from boxes)
def _edges(obj):
    x, y, w, h = obj["bbox"]
    return x, y, x + w, y + h


def _rel(name, a, b):
    ax0, ay0, ax1, ay1 = _edges(a)
    bx0, by0, bx1, by1 = _edges(b)
    if name == "left_of":
        return ax1 <= bx0
    if name == "right_of":
        return bx1 <= ax0
    if name == "above":
        return ay1 <= by0
    if name == "below":
        return by1 <= ay0
    if name == "next_to":
        dx, dy = max(0, bx0 - ax1, ax0 - bx1), max(0, by0 - ay1, ay0 - by1)
        return math.hypot(dx, dy) <= NEXT_TO * SIZE
    raise AssertionError(name)


def _centre(o):
    x0, y0, x1, y1 = _edges(o)
    return (x0 + x1) / 2, (y0 + y1) / 2


def _between(a, b, c):
    sides = any(_rel(r, b, a) and _rel(r, a, c) or _rel(r, c, a) and _rel(r, a, b) for r in ("left_of", "above"))
    (ax, ay), (bx, by), (cx, cy) = _centre(a), _centre(b), _centre(c)
    dist = abs((cx - bx) * (by - ay) - (bx - ax) * (cy - by)) / math.hypot(cx - bx, cy - by)
    return sides and dist <= BETWEEN_SLACK * SIZE


def _match(desc, obj):
    return all(desc[k] is None or desc[k] == obj[k] for k in ("shape", "colour", "size"))


def _all(desc, objs):
    return [o for o in objs if _match(desc, o)]


def _fact_true(fact, scene):
    objs = scene["objects"]
    kind = fact["kind"]
    if kind == "count":
        return len(_all(fact["desc"], objs)) == fact["n"]
    if kind == "exists":
        return bool(_all(fact["desc"], objs))
    if kind == "total":
        return len(objs) == fact["n"]
    if kind == "background":
        return scene["background"] == fact["background"]
    if kind == "relation":
        return any(a is not b and _rel(fact["relation"], a, b)
                   for a in _all(fact["subject"], objs) for b in _all(fact["object"], objs))
    if kind == "between":
        b_desc, c_desc = fact["anchors"]
        return any(len({id(a), id(b), id(c)}) == 3 and _between(a, b, c) for a in _all(fact["subject"], objs)
                   for b in _all(b_desc, objs) for c in _all(c_desc, objs))
    raise AssertionError(kind)


def _denotation(structure, objs):
    target = _all(structure["target"], objs)
    kind = structure["kind"]
    if kind == "attribute":
        return target
    if kind == "relation":
        anchors = _all(structure["anchor"], objs)
        if len(anchors) != 1:
            return []
        return [o for o in target if o is not anchors[0] and _rel(structure["relation"], o, anchors[0])]
    if kind == "between":
        found = [_all(d, objs) for d in structure["anchors"]]
        if any(len(f) != 1 for f in found) or found[0][0] is found[1][0]:
            return []
        b, c = found[0][0], found[1][0]
        return [o for o in target if o is not b and o is not c and _between(o, b, c)]
    if kind == "ordinal":
        rel = {"leftmost": "left_of", "rightmost": "right_of", "topmost": "above", "bottommost": "below"}
        if len(target) < 2:
            return []
        return [o for o in target if all(_rel(rel[structure["ordinal"]], o, m) for m in target if m is not o)]
    raise AssertionError(kind)


# ---------------------------------------------------------------- tests
def test_layout_and_counts(dataset):
    meta = json.loads((dataset / "shapesref.json").read_text())
    assert meta["splits"] == {"train": 24, "val": 8, "test": 8} and meta["size"] == SIZE
    karpathy = json.loads((dataset / "dataset_shapesref.json").read_text())["images"]
    assert [img["imgid"] for img in karpathy] == list(range(40))
    assert Counter(img["split"] for img in karpathy) == {"train": 24, "val": 8, "test": 8}
    assert [img["split"] for img in karpathy[:24]] == ["train"] * 24          # train first, then val, test
    scenes = _scenes(dataset)
    n_objects = sum(len(s["objects"]) for s in scenes)
    refs = [e for split in ("train", "val", "test")
            for e in json.loads((dataset / "refs" / f"{split}.json").read_text())[split]]
    assert len(refs) == n_objects == len(list((dataset / "masks").glob("*.png")))
    assert len(list((dataset / "images").glob("*.png"))) == 40
    for scene in scenes:
        assert 2 <= len(scene["objects"]) <= 5


def test_split_images_is_80_10_10():
    assert split_images(10000) == (8000, 1000, 1000)
    assert sum(split_images(37)) == 37


def test_masks_are_exact_and_boxes_are_their_extent(dataset):
    meta = json.loads((dataset / "shapesref.json").read_text())
    for scene in _scenes(dataset):
        image = np.asarray(Image.open(dataset / "images" / scene["filename"]))
        assert image.shape == (SIZE, SIZE, 3)
        union, by_colour = np.zeros((SIZE, SIZE), dtype=int), {}
        for obj in scene["objects"]:
            mask_img = Image.open(dataset / obj["mask"])
            assert mask_img.mode == "L" and mask_img.size == (SIZE, SIZE)
            mask = np.asarray(mask_img)
            assert set(np.unique(mask)) <= {0, 255}
            ys, xs = np.nonzero(mask)
            x, y, w, h = obj["bbox"]
            assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (x, y, w, h)
            union += mask > 0
            by_colour[obj["colour"]] = by_colour.get(obj["colour"], 0) + (mask > 0)
        assert union.max() == 1  # objects never overlap
        # The masks are exactly the painted shapes: the pixels of an object colour are the union of the
        # masks of the objects of that colour (backgrounds are muted, far from every object colour).
        for name, painted in by_colour.items():
            colour = meta["vocabulary"]["colours"][name]
            assert ((image == colour).all(axis=-1) == painted.astype(bool)).all()


def test_five_distinct_captions_true_of_the_scene(dataset):
    for scene in _scenes(dataset):
        texts = [c["text"] for c in scene["captions"]]
        assert len(texts) == 5 and len(set(texts)) == 5
        for caption in scene["captions"]:
            words = set(caption["text"].lower().rstrip(".").split())
            for fact in caption["facts"]:
                assert _fact_true(fact, scene), (scene["imgid"], caption)
                for desc in [fact.get(k) for k in ("desc", "subject", "object")] + fact.get("anchors", []):
                    mentioned = {v for k, v in (desc or {}).items() if v and k != "shape"}
                    assert mentioned <= words, (caption["text"], desc)


def test_karpathy_sentences_match_scene_captions(dataset):
    karpathy = {img["imgid"]: img for img in json.loads((dataset / "dataset_shapesref.json").read_text())["images"]}
    for scene in _scenes(dataset):
        entry = karpathy[scene["imgid"]]
        assert [s["raw"] for s in entry["sentences"]] == [c["text"] for c in scene["captions"]]
        assert entry["sentids"] == [s["sentid"] for s in entry["sentences"]]
        assert entry["filepath"] == "images" and entry["filename"] == scene["filename"]


def test_referring_expressions_are_unique_within_their_image(dataset):
    kinds = Counter()
    for scene in _scenes(dataset):
        objs = scene["objects"]
        per_object = Counter(e["object"] for e in scene["expressions"])
        assert set(per_object) == {o["index"] for o in objs}
        assert all(1 <= n <= 3 for n in per_object.values())
        texts = [e["text"] for e in scene["expressions"]]
        assert len(texts) == len(set(texts))
        for expression in scene["expressions"]:
            found = _denotation(expression["structure"], objs)
            assert [o["index"] for o in found] == [expression["object"]], (scene["imgid"], expression)
            kinds[expression["structure"]["kind"]] += 1
    assert kinds["attribute"] > 0 and kinds["relation"] + kinds["ordinal"] + kinds["between"] > 0


def test_refs_entries_agree_with_the_scene_graph(dataset):
    scenes = {s["imgid"]: s for s in _scenes(dataset)}
    for split in ("train", "val", "test"):
        for entry in json.loads((dataset / "refs" / f"{split}.json").read_text())[split]:
            obj = next(o for o in scenes[entry["iid"]]["objects"] if o["ref_id"] == entry["mask_id"])
            assert entry["bbox"] == obj["bbox"] and entry["category"] == obj["shape"]
            assert entry["refs"] == [e["text"] for e in scenes[entry["iid"]]["expressions"]
                                     if e["object"] == obj["index"]]


def _shared(scenes) -> float:
    """Fraction of captions also true of another image."""
    return sum(any(all(_fact_true(f, other) for f in caption["facts"]) for other in scenes if other is not scene)
               for scene in scenes for caption in scene["captions"]) / (5 * len(scenes))


def test_version1_captions_often_fit_several_images(tmp_path):
    generate_shapesref(tmp_path / "v1", ShapesRefConfig(train=24, dev=8, test=8, size=SIZE, seed=3, caption_version=1))
    assert _shared(_scenes(tmp_path / "v1")) > 0.3   # why version 2 exists: v1 captions are generic


def test_version2_captions_rarely_fit_another_image(dataset):
    assert _shared(_scenes(dataset)) < 0.1


def test_same_seed_same_bytes_and_worker_count_does_not_matter(tmp_path, dataset):
    config = ShapesRefConfig(train=24, dev=8, test=8, size=SIZE, seed=3)
    generate_shapesref(tmp_path / "again", config, workers=2, chunk=7)
    assert _tree_bytes(tmp_path / "again") == _tree_bytes(dataset)


def test_different_seed_different_images(tmp_path):
    small = {"train": 4, "dev": 1, "test": 1, "size": SIZE}
    generate_shapesref(tmp_path / "a", ShapesRefConfig(seed=3, **small))
    generate_shapesref(tmp_path / "b", ShapesRefConfig(seed=4, **small))
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert a["images/000000.png"] != b["images/000000.png"]
    assert a["dataset_shapesref.json"] != b["dataset_shapesref.json"]


def test_existing_output_is_not_overwritten_by_default(tmp_path):
    config = ShapesRefConfig(train=2, dev=1, test=1, size=SIZE)
    generate_shapesref(tmp_path / "ds", config)
    with pytest.raises(ValueError, match="already exists"):
        generate_shapesref(tmp_path / "ds", config)
    generate_shapesref(tmp_path / "ds", ShapesRefConfig(train=3, dev=1, test=1, size=SIZE), overwrite=True)
    assert json.loads((tmp_path / "ds" / "shapesref.json").read_text())["splits"]["train"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]   # no temporary folders left behind


@pytest.mark.parametrize("field, value", [("size", 16), ("train", -1), ("seed", -2)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ShapesRefConfig(**{field: value}).validate()


def test_only_some_splits_equal_the_full_datasets_splits(tmp_path):
    from hrem.data.cache import ensure_shapesref
    from hrem.data.readers import read_karpathy

    config = ShapesRefConfig(train=12, dev=4, test=4, size=64, seed=5)
    generate_shapesref(tmp_path / "full", config)
    only = ensure_shapesref(tmp_path / "only", train=12, dev=4, test=4, size=64, seed=5, splits=("test",))
    drawn = sorted(p.name for p in (only / "images").iterdir())
    assert len(drawn) == 4 and drawn[0] == "000016.png"  # imgids continue after train + val
    for name in drawn:
        assert (only / "images" / name).read_bytes() == (tmp_path / "full" / "images" / name).read_bytes()
    full, part = (read_karpathy(root / "dataset_shapesref.json", root, "test") for root in (tmp_path / "full", only))
    assert full.captions == part.captions and list(full.image_ids) == list(part.image_ids)
    with pytest.raises(Exception, match="train"):
        read_karpathy(only / "dataset_shapesref.json", only, "train")
    assert ensure_shapesref(tmp_path / "full", train=12, dev=4, test=4, size=64, seed=5, splits=("test",)) == tmp_path / "full"
