"""Named models everywhere: the shipped checkpoints (hrem/assets/models.json) resolve and load by name
through hrem.utils.registry.resolve_model, in Python (hrem.load) and behind every --model flag; unknown
names and names of the wrong kind fail with messages that list only what would have been accepted."""
from __future__ import annotations

import json
import re

import pytest

import hrem
from hrem.checkpoint.detector import LoadedDetector
from hrem.checkpoint.loaded import LoadedModel
from hrem.checkpoint.run import run_fingerprint
from hrem.cli import main
from hrem.factory import load_card
from hrem.pipeline.evaluate import default_report_dir
from hrem.pipeline.ground import Grounder
from hrem.store import load_manifest
from hrem.utils.headline import headline
from hrem.utils.registry import CARD_KIND_TO_MODEL_KIND, resolve_model, shipped_models

SHIPPED = {m.name: m for m in shipped_models()}
LOADED_TYPES = {"retrieval": LoadedModel, "grounding": Grounder, "detector": LoadedDetector}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A tiny ShapesRef test split (64 px; the demo's detector letterboxes it to its own size)."""
    from hrem.data.cache import ensure_shapesref

    return ensure_shapesref(tmp_path_factory.mktemp("registry") / "shapes", train=8, dev=4, test=6, size=64,
                            splits=("test",), workers=1)


def test_index_names_the_three_shipped_checkpoints():
    assert {n: m.kind for n, m in SHIPPED.items()} == {
        "demo": "retrieval", "demo-grounding": "grounding", "shapes-detector": "detector"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_name_resolves_and_loads(name):
    model = SHIPPED[name]
    card = json.loads((model.path / "config.json").read_text())
    assert CARD_KIND_TO_MODEL_KIND[card["kind"]] == model.kind           # the index agrees with the card
    for ref in (name, f"packaged:{name}", f"packaged:{model.path.name}", model.path):
        assert resolve_model(ref, model.kind) == model.path
    loaded = hrem.load(name)
    assert isinstance(loaded, LOADED_TYPES[model.kind])
    numbers = headline(model.path, model.kind)                           # what `hrem models` shows
    assert numbers.source.startswith("report") and "test" in numbers.split   # each ships a test report


def test_load_gives_a_working_retrieval_model():
    loaded = hrem.load("demo", kind="retrieval")
    assert loaded.fingerprint == run_fingerprint(SHIPPED["demo"].path) and loaded.dim == 256
    assert not loaded.model.training and loaded.tokenizer is not None


def test_embed_and_search_by_name(shapes, tmp_path, capsys):
    from hrem.index import build_index

    out = tmp_path / "emb"
    assert main(["embed", "--data", str(shapes), "--model", "demo", "--out", str(out), "--workers", "0",
                 "--device", "cpu", "--no-progress"]) == 0
    manifest = load_manifest(out)
    assert manifest.model.fingerprint == run_fingerprint(SHIPPED["demo"].path)
    assert manifest.totals() == {"captions": 30, "images": 6}
    build_index(out, tmp_path / "index" / "images", modality="images")
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "index"), "--model", "demo", "--json", "-k", "2",
                 "--device", "cpu", "a red circle"]) == 0
    assert "images/" in capsys.readouterr().out


def test_evaluate_by_name_writes_outside_the_package(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                  # the default report folder is relative: hrem-out/eval/...
    assert main(["evaluate", "--model", "demo", "--data", str(shapes), "--split", "test", "--workers", "0",
                 "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "hrem-out" / "eval" / "demo-test" / "report.json").read_text())
    assert report["meta"]["model_fingerprint"] == run_fingerprint(SHIPPED["demo"].path)
    assert "rsum" in capsys.readouterr().out
    assert not (SHIPPED["demo"].path / "eval-test").exists()


def test_default_report_dir_of_a_run_stays_inside_it(tmp_path):
    assert default_report_dir(tmp_path / "run", "dev") == tmp_path / "run" / "eval-dev"


def test_ground_by_name(shapes, capsys):
    image = next((shapes / "images").rglob("*.png"))
    assert main(["ground", "--model", "demo-grounding", "--image", str(image), "--text", "the red circle",
                 "--device", "cpu", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert len(result["box"]) == 4 and "mask_rle" in result


def test_regions_by_name(shapes, tmp_path):
    from hrem.checkpoint.detector import detector_fingerprint

    out = tmp_path / "precomp"
    assert main(["regions", "--detector", "shapes-detector", "--data", str(shapes), "--out", str(out),
                 "--regions", "4", "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    recorded = json.loads((out / "regions.json").read_text())["identity"]
    assert recorded["detector_fingerprint"] == detector_fingerprint("packaged:shapes-detector")
    # another spelling of the same detector resumes the folder instead of refusing it
    assert main(["regions", "--data", str(shapes), "--out", str(out), "--regions", "4", "--workers", "0",
                 "--device", "cpu", "--no-progress"]) == 0


def _error(capsys) -> str:
    return capsys.readouterr().err


def test_wrong_kind_says_what_it_is_and_what_is_needed(shapes, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:         # refused while parsing, so the message names the flag
        main(["embed", "--data", str(shapes), "--model", "demo-grounding", "--out", str(tmp_path / "e"),
              "--no-progress"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --model: 'demo-grounding' is a grounding model, but a retrieval model is needed here" in err
    assert not (tmp_path / "e").exists()
    assert "shipped retrieval models: demo " in err
    with pytest.raises(ValueError, match="'demo' is a retrieval model, but a grounding model is needed"):
        Grounder.load("demo")
    with pytest.raises(ValueError, match=r"expected a detector model, found .*demo-retrieval.*a retrieval model"):
        resolve_model(SHIPPED["demo"].path, "detector")          # a directory's kind is checked too


@pytest.mark.parametrize("argv", [["evaluate", "--model", "demoo", "--data", "."],
                                  ["ground", "--model", "demoo", "--image", "x.png", "--text", "a"]])
def test_unknown_name_lists_only_what_exists_of_that_kind(argv, capsys):
    assert main(argv) == 1
    err = _error(capsys)
    assert "unknown model 'demoo'" in err and "hrem does not download models" in err
    listed = re.search(r"shipped (\w+) models: ([^(]*)", err)
    kind = "retrieval" if argv[0] == "evaluate" else "grounding"
    assert listed.group(1) == kind
    assert listed.group(2).strip() == ", ".join(n for n, m in SHIPPED.items() if m.kind == kind)


def test_a_card_name_is_not_a_checkpoint():
    with pytest.raises(FileNotFoundError, match=r"'tiny' is a card .*`hrem train --card tiny"):
        resolve_model("tiny", "retrieval")
    with pytest.raises(FileNotFoundError, match=r"`hrem train-grounding --card mcn-tiny"):
        resolve_model("mcn-tiny", "grounding")


def test_missing_paths_and_unknown_packaged_names(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such directory .*missing.*config.json"):
        resolve_model(tmp_path / "missing", "retrieval")
    with pytest.raises(FileNotFoundError, match=r"directory without config.json"):
        resolve_model(tmp_path, "retrieval")
    with pytest.raises(FileNotFoundError, match=r"packaged:NAME names a shipped detector model, and none is "
                                                r"called 'nope'; shipped detector models: shapes-detector"):
        resolve_model("packaged:nope", "detector")


def test_a_run_directory_wins_over_a_shipped_name(tmp_path, monkeypatch):
    from hrem.checkpoint.run import save_run
    from hrem.factory import create_model

    card = load_card("tiny-regions")
    save_run(tmp_path / "demo", create_model(card), card)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("demo", "retrieval").resolve() == (tmp_path / "demo").resolve()
    assert resolve_model("packaged:demo", "retrieval") == SHIPPED["demo"].path


def test_cards_by_name_and_by_shipped_checkpoint(tmp_path):
    assert load_card("demo").name == "demo"                             # the card wins over the checkpoint
    assert load_card("demo-grounding").kind == "mcn"                    # a shipped checkpoint's card
    assert load_card("packaged:shapes-detector").kind == "detector"
    with pytest.raises(ValueError, match="unknown model card 'nope'.*hrem-f30k.*demo-grounding"):
        load_card("nope")
    with pytest.raises(ValueError, match="expected a card JSON file or a run directory") as caught:
        load_card(tmp_path / "x" / "demo")
    assert "hrem-f30k" not in str(caught.value)                         # a path is not a misspelt name


def test_models_lists_cards_and_checkpoints(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    cards, checkpoints = out.split("shipped checkpoints")
    assert cards.startswith("cards") and "hrem-f30k" in cards and "mcn-tiny" in cards
    for name, model in SHIPPED.items():
        assert re.search(rf"^  {re.escape(name)} +{model.kind} ", checkpoints, re.MULTILINE)
    assert "rsum" in checkpoints and "acc@0.5" in checkpoints and "ap50" in checkpoints


def test_models_kind_and_json(capsys):
    assert main(["models", "--kind", "mcn", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["type"] for r in rows} == {"card", "checkpoint"}
    assert {r["kind"] for r in rows if r["type"] == "card"} == {"mcn"}
    (checkpoint,) = [r for r in rows if r["type"] == "checkpoint"]
    assert checkpoint["name"] == "demo-grounding" and checkpoint["numbers"]["acc@0.5"] > 80
    assert main(["models", "--kind", "retrieval"]) == 0
    names = re.findall(r"^  (\S+) ", capsys.readouterr().out, re.MULTILINE)     # first column of both lists
    assert "demo" in names and "hrem-f30k" in names
    assert not {"demo-grounding", "shapes-detector", "mcn-tiny"} & set(names)
