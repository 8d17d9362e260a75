"""The grounding stage around a (randomly initialised) MCN run: Grounder in original pixels, evaluation
against a naive per-sample reference, the centre-box baseline, overlays, `hrem ground`, and runs that store
a frozen pretrained text encoder by reference."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hrem.checkpoint import load_run, save_run
from hrem.cli import main
from hrem.data.grounding_dataset import ref_box_xyxy
from hrem.data.readers.refs import read_mask
from hrem.eval.rle import rle_decode
from hrem.factory import create_model, load_card
from hrem.grounding import build_mcn_tokenizer, letterbox_image
from hrem.pipeline.ground import Grounder, centre_box_baseline, evaluate_grounding, read_grounding_split
from hrem.pipeline.overlay import BOX_RGB, render_overlay, write_overlay


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from hrem.data.cache import ensure_shapesref

    root = tmp_path_factory.mktemp("ground")
    data = ensure_shapesref(root / "shapes", train=6, dev=3, test=5, size=64, workers=1)
    torch.manual_seed(0)
    card = load_card("mcn-tiny")
    save_run(root / "run", create_model(card), card)
    return {"root": root, "data": data, "run": root / "run"}


def _naive_iou_box(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _naive_iou_mask(a: np.ndarray, b: np.ndarray) -> float:
    inter = union = 0
    for pa, pb in zip(a.ravel().tolist(), b.ravel().tolist()):
        inter += pa and pb
        union += pa or pb
    return inter / union if union else 0.0


def test_grounder_maps_back_to_original_pixels(setup):
    grounder = Grounder.load(setup["run"])
    image = Image.open(next((setup["data"] / "images").glob("*.png"))).convert("RGB").crop((0, 0, 64, 40))
    (found,) = grounder.ground([image], ["the red circle"])
    x1, y1, x2, y2 = found.box
    assert 0 <= x1 <= x2 <= 64 and 0 <= y1 <= y2 <= 40
    assert found.mask.shape == (40, 64) and found.mask.dtype == bool
    assert np.array_equal(rle_decode(found.as_dict()["mask_rle"]), found.mask)
    pixels, meta = letterbox_image(image, 64)  # the same call without the Grounder
    (direct,) = grounder.model.ground(torch.from_numpy(pixels)[None], grounder.tokenizer(["the red circle"]),
                                      [meta])
    np.testing.assert_allclose(found.box, direct.box_xyxy)
    assert np.array_equal(found.mask, direct.mask)
    with pytest.raises(ValueError, match="as many texts as images"):
        grounder.ground([image], ["a", "b"])


def test_evaluation_equals_naive_reference(setup):
    grounder = Grounder.load(setup["run"])
    refs = read_grounding_split(setup["data"], "test")
    summary = evaluate_grounding(grounder.model, grounder.tokenizer, refs, batch_size=4)
    box_ious, mask_ious = [], []
    for ref in refs:
        for sentence in ref.sentences:
            (g,) = grounder.ground([ref.image_path], [sentence])
            box_ious.append(_naive_iou_box(g.box, ref_box_xyxy(ref)))
            mask_ious.append(_naive_iou_mask(g.mask, read_mask(ref.mask_path)))
    box_ok, mask_ok = np.array(box_ious) > 0.5, np.array(mask_ious) > 0.5
    assert summary["n_samples"] == len(box_ious)
    assert summary["acc@0.5"] == pytest.approx(100 * box_ok.mean())
    assert summary["box_miou"] == pytest.approx(100 * np.mean(box_ious), abs=1e-6)
    assert summary["miou"] == pytest.approx(100 * np.mean(mask_ious), abs=1e-6)
    assert summary["ie"] == pytest.approx(100 * (box_ok != mask_ok).mean())


def test_centre_box_baseline(setup):
    train, test = (read_grounding_split(setup["data"], s) for s in ("train", "test"))
    w, h = np.mean([r.bbox_xywh[2] for r in train]), np.mean([r.bbox_xywh[3] for r in train])
    box = [32 - w / 2, 32 - h / 2, 32 + w / 2, 32 + h / 2]  # 64 px images
    hits = [_naive_iou_box(box, ref_box_xyxy(r)) > 0.5 for r in test for _ in r.sentences]
    assert centre_box_baseline(train, test)["acc@0.5"] == pytest.approx(100 * np.mean(hits))


def test_overlay_draws_box_mask_and_caption(tmp_path):
    image = Image.new("RGB", (64, 48), (20, 20, 20))
    mask = np.zeros((48, 64), bool)
    mask[10:20, 30:40] = True
    out = render_overlay(image, (8, 8, 24, 32), 0.876, mask, "the red circle")
    factor = 6  # 64 px upscaled to at least 384
    assert out.width == 64 * factor and out.height > 48 * factor  # caption strip below
    rgb = np.asarray(out)
    assert tuple(rgb[8 * factor + 20, 8 * factor]) == BOX_RGB  # left edge of the box
    assert rgb[15 * factor, 35 * factor, 2] > 80  # tinted mask pixel (blue channel up)
    assert tuple(rgb[40 * factor, 50 * factor]) == (20, 20, 20)  # untouched background
    assert (rgb[48 * factor:] < 100).any()  # caption text drawn on the white strip
    path = write_overlay(tmp_path / "o.png", image, (8, 8, 24, 32), 0.5, mask, "x")
    assert Image.open(path).size == out.size


def test_ground_cli_json_and_overlay(setup, tmp_path, capsys):
    image = next((setup["data"] / "images").glob("*.png"))
    assert main(["ground", "--model", str(setup["run"]), "--image", str(image), "--text", "a red circle",
                 "--text", "the blue square", "--out", str(tmp_path / "o.png"), "--json", "--device", "cpu"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["text"] for r in results] == ["a red circle", "the blue square"]
    assert all(len(r["box"]) == 4 and rle_decode(r["mask_rle"]).shape == (64, 64) for r in results)
    assert (tmp_path / "o-1.png").is_file() and (tmp_path / "o-2.png").is_file()


def test_frozen_text_encoder_is_stored_by_reference(tmp_path):
    from safetensors import safe_open

    card = load_card("mcn-tiny", {"language.pretrained": True, "language.config_overrides": {},
                                  "language.freeze": True})
    torch.manual_seed(0)
    model = create_model(card).eval()
    save_run(tmp_path / "run", model, card)
    with safe_open(str(tmp_path / "run" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("language.text.") for k in keys)
    assert any(k.startswith("language.proj.") for k in keys)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(saved["language"]["backbone_sha256"]) == 64
    loaded, _, _ = load_run(tmp_path / "run")
    tokens = build_mcn_tokenizer(card)(["the green star"])
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, tokens).raw, model(x, tokens).raw)
    saved["language"]["backbone_sha256"] = "0" * 64
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="SHA-256"):
        load_run(tmp_path / "run")


def test_evaluate_cli_on_refcoco_layout(setup, tmp_path, capsys):
    """A SimREC-style {split: [entry]} file with .npy masks gives the same numbers as the ShapesRef folder."""
    entries = json.loads((setup["data"] / "refs" / "test.json").read_text())["test"]
    (tmp_path / "masks").mkdir()
    converted = []
    for entry in entries:
        np.save(tmp_path / "masks" / f"{entry['mask_id']}.npy",
                np.asarray(Image.open(setup["data"] / entry["mask"])).astype(np.uint8))
        converted.append({k: v for k, v in entry.items() if k != "mask"})
    refs_file = tmp_path / "refcoco.json"
    refs_file.write_text(json.dumps({"train": converted[:1], "testA": converted[:3], "testB": converted[3:]}))
    assert main(["evaluate-grounding", "--model", str(setup["run"]), "--data", str(refs_file), "--images",
                 str(setup["data"] / "images"), "--masks", str(tmp_path / "masks"), "--workers", "0",
                 "--out", str(tmp_path / "report"), "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())["results"]
    assert sorted(report) == ["refs-testA", "refs-testB"]
    grounder = Grounder.load(setup["run"])
    refs = read_grounding_split(setup["data"], "test")
    expected = evaluate_grounding(grounder.model, grounder.tokenizer, refs[:3])
    for key in ("n_samples", "acc@0.5", "miou", "ie"):
        assert report["refs-testA"][key] == pytest.approx(expected[key])
    assert "testA: n=" in capsys.readouterr().out
