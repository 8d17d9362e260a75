"""benchmarks/mask_threshold_sweep.py: its one-forward sweep gives, at every threshold and ASNLS setting, the
same figures as evaluating a run whose card has that threshold, and leaves the model's card as it was."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from hrem.checkpoint import save_run
from hrem.factory import create_model, load_card
from hrem.pipeline.ground import Grounder, evaluate_grounding, read_grounding_split


def _card_with_threshold(card, threshold: float):
    return dataclasses.replace(card, inference=dataclasses.replace(card.inference, mask_threshold=threshold))


def test_sweep_equals_evaluating_a_card_with_each_threshold(tmp_path, benchmark_script):
    from hrem.data.cache import ensure_shapesref

    sweep_script = benchmark_script("mask_threshold_sweep")
    data = ensure_shapesref(tmp_path / "shapes", train=4, dev=4, test=2, size=64, workers=1)
    refs = read_grounding_split(data, "val")
    torch.manual_seed(0)
    card = load_card("mcn-tiny")
    model = create_model(card)
    save_run(tmp_path / "run", model, card)
    grounder = Grounder.load(tmp_path / "run", batch_size=4)
    thresholds = [0.3, 0.5, 0.7]
    swept = sweep_script.sweep(grounder, refs, thresholds, batch_size=4, limit=None)
    assert grounder.model.card == card
    mious = set()
    for threshold in thresholds:
        save_run(tmp_path / f"run-{threshold}", model, _card_with_threshold(card, threshold))
        reference = Grounder.load(tmp_path / f"run-{threshold}", batch_size=4)
        for asnls in (True, False):
            expected = evaluate_grounding(reference.model, reference.tokenizer, refs, batch_size=4, asnls=asnls)
            got = swept[(threshold, asnls)]
            assert got["n_samples"] == expected["n_samples"] == sum(len(r.sentences) for r in refs)
            for key in ("acc@0.5", "miou", "oiou"):
                assert got[key] == pytest.approx(expected[key], abs=1e-9), (threshold, asnls, key)
            mious.add(round(got["miou"], 6))
    assert len(mious) > 1     # the thresholds do change the masks: the comparison is not vacuous
