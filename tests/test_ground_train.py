"""`hrem train-grounding`: a short run on a tiny ShapesRef clearly beats the centre-box baseline; resume
continues where a stopped run ended; the ablation switches recombine the loss terms as documented."""
from __future__ import annotations

import json

import pytest
import torch

from hrem.cli import main
from hrem.factory import create_model, load_card
from hrem.grounding import GroundingCriterion, GroundingTask, build_mcn_tokenizer, build_targets
from hrem.pipeline.ground import centre_box_baseline, read_grounding_split


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_short_training_beats_centre_box_baseline(tmp_path):
    from hrem.data.cache import ensure_shapesref

    data = ensure_shapesref(tmp_path / "shapes", train=200, dev=40, test=40, size=64, workers=1)
    out = tmp_path / "run"
    # 64 px scenes letterboxed to 128 (grid 4 x 4, mask 16 x 16): at 64 (grid 2 x 2) boxes of ~15 px are
    # too coarse for mcn-tiny to place within a minute
    assert main(["train-grounding", "--out", str(out), "--card", "mcn-tiny", "--set", "input_size=128",
                 "--data", str(data), "--epochs", "5", "--batch-size", "16", "--lr", "3e-3", "--workers", "0",
                 "--device", "cpu", "--dev-limit", "120", "--eval-batch-size", "64", "--seed", "0"]) == 0
    report = json.loads((out / "report" / "report.json").read_text())["results"]["refs-test"]
    baseline = centre_box_baseline(read_grounding_split(data, "train"), read_grounding_split(data, "test"))
    assert report["n_samples"] == baseline["n_samples"]
    assert report["acc@0.5"] >= max(3 * baseline["acc@0.5"], baseline["acc@0.5"] + 5.0), (report, baseline)
    card = json.loads((out / "config.json").read_text())
    assert card["anchors"] != [list(a) for a in load_card("mcn-tiny").anchors]  # k-means anchors
    evals = [m for m in _metrics(out) if m["kind"] == "eval"]
    assert len(evals) == 5 and all("acc@0.5" in m and "miou" in m for m in evals)


def test_resume_continues_the_run(tmp_path, capsys):
    from hrem.data.cache import ensure_shapesref

    data = ensure_shapesref(tmp_path / "shapes", train=12, dev=3, test=3, size=64, workers=1)
    out = tmp_path / "run"
    args = ["train-grounding", "--out", str(out), "--card", "mcn-tiny", "--data", str(data), "--batch-size", "4",
            "--workers", "0", "--device", "cpu", "--save-every", "1", "--log-every", "1", "--test-splits", ""]
    assert main([*args, "--max-iters", "3"]) == 0
    assert (out / "training_state.pt").is_file() and (out / "model.safetensors").is_file()
    assert main([*args, "--max-iters", "5"]) == 0
    steps = [m["iteration"] for m in _metrics(out) if m["kind"] == "step"]
    assert steps == [1, 2, 3, 4, 5]
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert state["position"]["iteration"] == 5
    capsys.readouterr()
    assert main([*args, "--max-iters", "6", "--set", "losses.mask_weight=0.5"]) != 0
    assert "another card" in capsys.readouterr().err


@pytest.mark.parametrize("task,cem", [("joint", True), ("joint", False), ("rec", True), ("res", True)])
def test_ablation_losses(task, cem):
    torch.manual_seed(0)
    model = create_model(load_card("mcn-tiny"))
    tokens = build_mcn_tokenizer(model.card)(["a red circle", "the blue square"])
    boxes = torch.tensor([[4.0, 6.0, 20.0, 30.0], [30.0, 30.0, 50.0, 44.0]])
    masks = torch.zeros(2, 64, 64)
    masks[0, 6:30, 4:20] = 1
    targets = build_targets(boxes, model.anchors, 64, masks)
    output = model(torch.rand(2, 3, 64, 64), tokens)
    terms = GroundingCriterion.for_model(model, GroundingTask(task, cem))(output, targets)
    box = terms["xy"] + terms["wh"] + terms["conf"]
    expected = {"rec": box, "res": 0.1 * terms["mask"]}.get(task, box + 0.1 * terms["mask"] + cem * terms["cem"])
    torch.testing.assert_close(terms["loss"], expected)
    with pytest.raises(ValueError, match="task"):
        GroundingTask("both")


@pytest.mark.parametrize("freeze,cache_size,cached", [(True, 100, True), (True, 0, False), (False, 100, False)])
def test_trainer_caches_a_frozen_language_encoder(tmp_path, freeze, cache_size, cached):
    from hrem.data.cache import ensure_shapesref
    from hrem.train.config import TrainConfig
    from hrem.train.grounding_run import build_grounding_trainer

    data = ensure_shapesref(tmp_path / "shapes", train=4, dev=2, test=2, size=64, workers=1)
    card = load_card("mcn-tiny", {"language.freeze": freeze})
    trainer = build_grounding_trainer(card, read_grounding_split(data, "train"), tmp_path / "run",
                                      TrainConfig(batch_size=2, text_cache_size=cache_size, workers=0),
                                      GroundingTask(), torch.device("cpu"), evaluate=None, kmeans=False)
    text = trainer.model.language.text
    assert (text.feature_cache is not None) == cached
    if cached:  # same states as the encoder itself, and the second call is served from the cache
        tokens = build_mcn_tokenizer(card)(["the red circle", "a small shape"])
        trainer.model.eval()  # no pooling dropout
        first = trainer.model.language(tokens).sentence
        torch.testing.assert_close(trainer.model.language(tokens).sentence, first)
        assert text.feature_cache.hits == 2
        text.feature_cache = None
        torch.testing.assert_close(trainer.model.language(tokens).sentence, first)
