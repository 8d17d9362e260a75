"""The Trainer selects the best model by a named dev score (TrainConfig.selection_metric), records the name
in the training state and metrics.jsonl, refuses to resume by another, and still resumes states written
before the name was kept (their `best_rsum`), for retrieval and grounding runs alike."""
from __future__ import annotations

import json

import pytest
import torch
from test_train_loop import base_config, make_trainer

from hrem.cli import main
from hrem.data.tokenize import TextTokenizer
from hrem.train.state import STATE_FILE
from hrem.utils.paths import packaged_minilm_dir


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer(packaged_minilm_dir())


def _evals(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]


def _make_legacy(run_dir) -> float:
    """Rewrite RUN/training_state.pt as hrem wrote it before selection metrics were recorded."""
    payload = torch.load(run_dir / STATE_FILE, weights_only=True)
    position = payload["position"]
    position["best_rsum"] = position.pop("best_score")
    del position["selection_metric"]
    torch.save(payload, run_dir / STATE_FILE)
    return position["best_rsum"]


def test_best_model_is_chosen_by_the_named_metric(tmp_path, tokenizer):
    scores = iter([{"rsum": 9.0, "miou": 1.0}, {"rsum": 1.0, "miou": 3.0}, {"rsum": 5.0, "miou": 2.0}])
    saved = []
    trainer = make_trainer(tmp_path, tokenizer, base_config(epochs=3, selection_metric="miou"),
                           lambda m: next(scores), saved)
    position = trainer.run()
    assert len(saved) == 2 and position.best_score == 3.0 and position.best_iteration == 24
    assert [e["best"] for e in _evals(tmp_path)] == [True, True, False]
    assert {e["selection_metric"] for e in _evals(tmp_path)} == {"miou"}
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)["position"]
    assert state["selection_metric"] == "miou" and state["best_score"] == 3.0


def test_a_missing_metric_names_the_scores_there_are(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, base_config(epochs=1, selection_metric="acc@0.5"),
                           lambda m: {"rsum": 1.0, "protocol": "all"})
    with pytest.raises(ValueError, match=r"'acc@0.5'.*\['rsum'\]"):
        trainer.run()


def test_resuming_by_another_metric_is_refused(tmp_path, tokenizer):
    make_trainer(tmp_path, tokenizer, base_config(max_iters=3)).run()
    other = make_trainer(tmp_path, tokenizer, base_config(selection_metric="t2i_r1"))
    with pytest.raises(ValueError, match="selects its best model by 'rsum'"):
        other.resume()


def test_a_state_with_best_rsum_still_resumes(tmp_path, tokenizer):
    make_trainer(tmp_path, tokenizer, base_config(max_iters=5), lambda m: {"rsum": 7.5}).run()
    assert _make_legacy(tmp_path) == 7.5
    resumed = make_trainer(tmp_path, tokenizer, base_config(), lambda m: {"rsum": 7.0})
    assert resumed.resume()
    assert resumed.position.iteration == 5 and resumed.position.best_score == 7.5
    assert resumed.position.selection_metric == "rsum" and resumed.position.best_rsum == 7.5
    assert resumed.run().iteration == 24
    assert torch.load(tmp_path / STATE_FILE, weights_only=True)["position"]["selection_metric"] == "rsum"


def test_an_old_grounding_run_resumes_by_its_combined_score(tmp_path):
    """Old grounding runs stored Acc@0.5 + mIoU under the name rsum; the default metric now has that
    value's honest name, so the old best carries over."""
    from hrem.data.cache import ensure_shapesref

    data = ensure_shapesref(tmp_path / "shapes", train=12, dev=3, test=3, size=64, workers=1)
    out = tmp_path / "run"
    args = ["--log-level", "WARNING", "train-grounding", "--out", str(out), "--card", "mcn-tiny", "--data", str(data),
            "--batch-size", "4", "--workers", "0", "--device", "cpu", "--save-every", "1", "--test-splits", "",
            "--no-progress"]
    assert main([*args, "--max-iters", "2"]) == 0
    first = _evals(out)[-1]
    assert first["selection_metric"] == "acc@0.5+miou"
    assert first["acc@0.5+miou"] == pytest.approx(first["acc@0.5"] + first["miou"])
    best = _make_legacy(out)
    assert main([*args, "--max-iters", "3"]) == 0
    position = torch.load(out / STATE_FILE, weights_only=True)["position"]
    assert position["iteration"] == 3 and position["selection_metric"] == "acc@0.5+miou"
    assert position["best_score"] >= best
