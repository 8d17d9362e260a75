"""ShapesRef version-2 captions, the independent caption grammar and truth evaluator, and `hrem data
ceiling`: byte-identical pixels across versions, parsed facts equal to stored facts, relations equal to the
generator's table, every caption true of its image, and the oracle's recall against brute force."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from hrem.cli import main
from hrem.data.cache import default_shapesref_dir, ensure_shapesref
from hrem.data.readers import read_karpathy
from hrem.data.shapes import ShapesRefConfig, generate_shapesref
from hrem.eval.ceiling import oracle_recall, shapes_ceiling
from hrem.eval.shapes_grammar import CaptionParseError, Vocabulary, parse_caption
from hrem.eval.shapes_truth import relation_holds, truth_matrix

CONFIG = dict(train=40, dev=10, test=30, size=96, seed=4)


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2")
    for version in (1, 2):
        generate_shapesref(root / f"v{version}", ShapesRefConfig(**CONFIG, caption_version=version), workers=1)
    return root


def _scenes(folder: Path) -> list[dict]:
    return [img for split in ("train", "val", "test")
            for img in json.loads((folder / "scenes" / f"{split}.json").read_text())["images"]]


def _vocab(folder: Path) -> Vocabulary:
    return Vocabulary.from_metadata(json.loads((folder / "shapesref.json").read_text()))


def _canon(facts) -> list[str]:
    return sorted(json.dumps(f, sort_keys=True) for f in facts)


def test_images_masks_and_refs_are_byte_identical_across_versions(versions):
    for sub in ("images", "masks", "refs"):
        v1 = {p.relative_to(versions / "v1"): p.read_bytes() for p in sorted((versions / "v1" / sub).rglob("*"))}
        v2 = {p.relative_to(versions / "v2"): p.read_bytes() for p in sorted((versions / "v2" / sub).rglob("*"))}
        assert v1 == v2 and len(v1) > 0, sub
    texts = [[c["text"] for c in s["captions"]] for s in _scenes(versions / "v1")]
    assert texts != [[c["text"] for c in s["captions"]] for s in _scenes(versions / "v2")]
    assert [json.loads((versions / v / "shapesref.json").read_text())["version"] for v in ("v1", "v2")] == [1, 2]


def test_parsed_facts_equal_the_stored_facts(versions):
    vocab = _vocab(versions / "v2")
    for scene in _scenes(versions / "v2"):
        for caption in scene["captions"]:
            assert _canon(parse_caption(caption["text"], vocab)) == _canon(caption["facts"]), caption["text"]
    parsed = 0
    for scene in _scenes(versions / "v1"):           # v1 captions inside the grammar must agree too
        for caption in scene["captions"]:
            try:
                facts = parse_caption(caption["text"], vocab)
            except CaptionParseError:
                continue
            parsed += 1
            assert _canon(facts) == _canon(caption["facts"]), caption["text"]
    assert parsed > 100


def test_relations_agree_with_the_generator_table(versions):
    for scene in _scenes(versions / "v2"):
        table = {(a, r, b) for a, r, b in scene["relations"]}
        for a, b in itertools.permutations(scene["objects"], 2):
            for relation in ("left_of", "right_of", "above", "below", "next_to"):
                assert relation_holds(relation, a, b, 96) == ((a["index"], relation, b["index"]) in table)


@pytest.mark.parametrize("version", [1, 2])
def test_every_caption_is_true_of_its_own_image(versions, version):
    scenes = _scenes(versions / f"v{version}")
    facts = [c["facts"] for s in scenes for c in s["captions"]]
    rows = np.repeat(np.arange(len(scenes)), 5)
    truth = truth_matrix(facts, scenes, 96)
    assert truth[np.arange(len(rows)), rows].all()


def test_grammar_by_hand():
    vocab = Vocabulary(("circle", "square", "cross"), ("red", "blue", "green"), ("small", "large"),
                       ("striped", "gradient"))
    desc = lambda shape=None, colour=None, size=None: {"shape": shape, "colour": colour, "size": size}  # noqa: E731
    assert parse_caption("a red circle left of a blue square", vocab) == [
        {"kind": "relation", "subject": desc("circle", "red"), "relation": "left_of", "object": desc("square", "blue")}]
    assert parse_caption("Two green crosses.", vocab) == [{"kind": "count", "desc": desc("cross", "green"), "n": 2}]
    assert parse_caption("three shapes on a striped background", vocab) == [
        {"kind": "total", "n": 3}, {"kind": "background", "background": "striped"}]
    assert parse_caption("Two objects: a small red circle and a cross.", vocab) == [
        {"kind": "exists", "desc": desc("circle", "red", "small")}, {"kind": "exists", "desc": desc("cross")},
        {"kind": "total", "n": 2}]
    for bad, where in [("a purple circle", "unknown word 'purple'"), ("a red", "shape after 'a'"),
                       ("seven big circles", "unknown word 'big'"), ("circles", "noun phrase"),
                       ("a red circle and", "unknown word 'and'")]:
        with pytest.raises(CaptionParseError, match=where):
            parse_caption(bad, vocab)


def _brute_force(truth, rows, k):
    """Average over every tie order of the true items (tiny matrices only)."""
    t2i = []
    for j, row in enumerate(truth):
        true = np.flatnonzero(row)
        t2i.append(np.mean([rows[j] in order[:k] for order in itertools.permutations(true)]))
    i2t = []
    for i in range(truth.shape[1]):
        true = np.flatnonzero(truth[:, i])
        i2t.append(np.mean([any(rows[c] == i for c in order[:k]) for order in itertools.permutations(true)]))
    return 100 * np.mean(i2t), 100 * np.mean(t2i)


def test_oracle_recall_matches_brute_force():
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(3), 2)          # 3 images, 2 captions each
    truth = rng.random((6, 3)) < 0.4
    truth[np.arange(6), rows] = True
    got = oracle_recall(truth, rows)
    for k in (1, 5):
        i2t, t2i = _brute_force(truth, rows, k)
        assert got[f"i2t_r{k}"] == pytest.approx(i2t) and got[f"t2i_r{k}"] == pytest.approx(t2i)
    truth[0, rows[0]] = False
    with pytest.raises(ValueError, match="not true of their own image"):
        oracle_recall(truth, rows)


def test_ceiling_cli_and_versions(versions, tmp_path, capsys):
    assert main(["data", "ceiling", "--data", str(versions / "v2"), "--split", "test",
                 "--out", str(tmp_path / "c.json")]) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["caption_version"] == 2 and report["facts_stored"] == 0 and report["captions"] == 150
    v1 = shapes_ceiling(versions / "v1", "test")["oracle"]
    assert report["oracle"]["rsum"] > v1["rsum"] and "| i2t |" in capsys.readouterr().out


def test_cache_names_carry_the_version_and_v1_folders_stay_readable(versions, tmp_path):
    v2 = default_shapesref_dir(ShapesRefConfig(**CONFIG))
    v1 = default_shapesref_dir(ShapesRefConfig(**CONFIG, caption_version=1))
    assert v2.name.startswith("shapesref-v2-") and v1.name.startswith("shapesref-v1-")
    split = read_karpathy(versions / "v1" / "dataset_shapesref.json", versions / "v1", "test")
    assert len(split.captions) == 150
    cached = tmp_path / "cache"
    import shutil

    shutil.copytree(versions / "v1", cached)
    again = ensure_shapesref(cached, **CONFIG)          # a v1 folder is regenerated as v2, not reused
    assert json.loads((again / "shapesref.json").read_text())["version"] == 2
