"""Golden loss terms of the grounding training path, so a refactor of the model or the criterion cannot drift.

For every card variant training supports (the packaged mcn-* cards as shipped, the trained demo-grounding
asset, and each option of REFERENCE_EXTRA.md on mcn-tiny, also under the REC-only / RES-only / no-CEM
ablations) a model is built at a fixed seed and run once in training mode on fixed synthetic inputs; the
golden file holds every term `GroundingCriterion` returns, the statistics of every model output, the
gradient norm that reaches each top-level part of the model and of the criterion, and (in eval mode) the
predictions. After an intended change, regenerate with
`HREM_REGEN_GOLDEN=1 python -m pytest -q tests/test_grounding_criterion.py` and say why in the commit.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from hrem.checkpoint import load_run
from hrem.factory import create_model, load_card
from hrem.grounding import GroundingCriterion, GroundingTask, build_mcn_tokenizer, build_targets
from hrem.utils.paths import ASSETS_DIR
from hrem.vision.letterbox import letterbox_meta

GOLDEN = Path(__file__).parent / "golden" / "grounding_criterion.json"
RTOL, ATOL = 1e-5, 1e-6
TEXTS = ["the red circle on the left", "a big blue square", "green triangle"]

# tiny versions of the options (the same as tests/test_grounding_options.py, so each builds in ms)
STEP = {"res_head": "step", "step.embed_dim": 16, "step.attention_dim": 8, "step.gru_hidden": 4}
CA2M = {"fusion": "ca2m", "ca2m.text_layers": [1], "ca2m.group_width": 8, "ca2m.fusion_width": 16,
        "ca2m.heads": 2, "ca2m.group_layers": 1, "ca2m.fusion_layers": 1}
DIRECT = {**CA2M, "ca2m.box_head": True}
XTASK = {"xtask.enabled": True, "xtask.tt_width": 4}
REFINE = {"mask_refine.enabled": True, "mask_refine.skip": 4, "mask_refine.width": 8}
SELF_PACED = {"loss_weighting": "self_paced"}
TINY_OPTIONS = {
    "baseline": {},
    "step": STEP,
    "step+sentence": {**STEP, "step.sentence_to_rec": True},
    "step+neck+shifted+mask_input": {**STEP, "step.visual_source": "neck", "step.heatmap": "shifted",
                                     "step.gru_inputs": "heatmap_and_mask", "step.folds": 2},
    "step+xtask+gradnorm": {**STEP, **XTASK, "xtask.balance": "gradnorm", "xtask.gradnorm_lr": 0.05},
    "ca2m": CA2M,
    "ca2m+garan": {**CA2M, "ca2m.sentence_to_garan": True},
    "ca2m+direct": DIRECT,
    "ca2m+direct+box_source": {**DIRECT, "inference.box_source": "direct"},
    "ca2m+direct+self_paced": {**DIRECT, **SELF_PACED},
    "ca2m+direct+self_paced_both": {**DIRECT, **SELF_PACED, "self_paced.apply_to": "both"},
    "ca2m+gru": {**CA2M, "language.kind": "gru", "language.config_overrides": {}},
    "self_paced_yolo": {**SELF_PACED, "self_paced.apply_to": "yolo"},
    "xtask": XTASK,
    "xtask+uncertainty": {**XTASK, "xtask.balance": "uncertainty", "xtask.lambda1": 0.2, "xtask.lambda2": 0.3},
    "xtask+gradnorm": {**XTASK, "xtask.balance": "gradnorm", "xtask.gradnorm_lr": 0.05},
    "xtask+alignment": {**XTASK, "xtask.mode": "alignment"},
    "uncertainty": {"xtask.balance": "uncertainty"},
    "gradnorm": {"xtask.balance": "gradnorm", "xtask.gradnorm_lr": 0.05},
    "mask_refine": REFINE,
    "mask_refine+attached": {**REFINE, "mask_refine.detach": False},
    "mask_refine+xtask": {**REFINE, **XTASK},
}
ABLATIONS = {"rec": ("rec", True), "res": ("res", True), "joint-no-cem": ("joint", False)}
ABLATED = ("baseline", "mask_refine", "ca2m+direct+self_paced", "xtask+gradnorm", "xtask+uncertainty", "step")
PACKAGED = ("mcn-tiny", "mcn-demo", "mcn-demo-step", "mcn-demo-ca2m", "mcn-demo-xtask")


def _variants() -> dict[str, tuple[str, dict, tuple[str, bool]]]:
    """name -> (card source, overrides, (task, cem))."""
    variants = {f"card:{name}": (name, {}, ("joint", True)) for name in PACKAGED}
    variants["asset:demo-grounding"] = ("asset:demo-grounding", {}, ("joint", True))
    variants.update({f"tiny:{name}": ("mcn-tiny", o, ("joint", True)) for name, o in TINY_OPTIONS.items()})
    for name in ABLATED:
        for ablation, task in ABLATIONS.items():
            variants[f"tiny:{name}/{ablation}"] = ("mcn-tiny", TINY_OPTIONS[name], task)
    return variants


def _build(source: str, overrides: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    if source.startswith("asset:"):
        model, _, _ = load_run(ASSETS_DIR / source.removeprefix("asset:"))
        return model.train()
    return create_model(load_card(source, overrides)).train()


def _inputs(card, generator: torch.Generator):
    """Three letterboxed scenes with one bright rectangle each (the referred object), fixed by `generator`."""
    size = card.input_size
    scale = size / 64
    boxes = torch.tensor([[4.0, 6.0, 20.0, 30.0], [30.0, 30.0, 50.0, 44.0], [10.0, 36.0, 58.0, 60.0]]) * scale
    images = 0.2 + 0.1 * torch.rand(3, 3, size, size, generator=generator)
    masks = torch.zeros(3, size, size)
    for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        images[i, i % 3, y1:y2, x1:x2] = 0.9
        masks[i, y1:y2, x1:x2] = 1
    return images, boxes, masks


def _stats(tensor: torch.Tensor) -> list[float]:
    values = tensor.detach().double()
    return [float(values.sum()), float(values.abs().sum()), float((values * values).sum())]


def _grad_norms(module: torch.nn.Module) -> dict[str, float]:
    """Squared gradient norm per top-level child (0.0 when no gradient reaches it)."""
    norms: dict[str, float] = {}
    for name, param in module.named_parameters():
        part = name.split(".")[0]
        grad = 0.0 if param.grad is None else float(param.grad.double().pow(2).sum())
        norms[part] = norms.get(part, 0.0) + grad
    return norms


def compute_variant(source: str, overrides: dict, task: tuple[str, bool]) -> dict:
    model = _build(source, overrides)
    card = model.card
    criterion = GroundingCriterion.for_model(model, GroundingTask(*task)).train()
    generator = torch.Generator().manual_seed(1)
    images, boxes, masks = _inputs(card, generator)
    tokens = build_mcn_tokenizer(card)(TEXTS)
    targets = build_targets(boxes, model.anchors, card.input_size, masks if criterion.task.res else None,
                            fine_mask=card.mask_refine.enabled)
    torch.manual_seed(2)  # dropout in training mode
    output = model(images, tokens)
    terms = criterion(output, targets)
    terms["loss"].backward()
    record = {
        "terms": {name: float(value.detach()) for name, value in sorted(terms.items())},
        "outputs": {name: _stats(value) for name, value in sorted(vars(output).items()) if value is not None},
        "grad_model": _grad_norms(model),
        "grad_criterion": _grad_norms(criterion),
    }
    model.eval()
    with torch.no_grad():
        predictions = model.predict(model(images, tokens), [letterbox_meta(card.input_size, card.input_size,
                                                                           card.input_size)] * 3)
    record["predictions"] = [[*map(float, p.box_xyxy), p.score, int(p.mask.sum())] for p in predictions]
    return record


def compute() -> dict:
    return {name: compute_variant(*spec) for name, spec in _variants().items()}


def _compare(got, want, where: str) -> None:
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != golden {sorted(want)}"
        for key in want:
            _compare(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{where}: length {len(got)} != golden {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{where}[{i}]")
    else:
        assert math.isclose(got, want, rel_tol=RTOL, abs_tol=ATOL), f"{where}: {got!r} != golden {want!r}"


@pytest.fixture(scope="module")
def golden() -> dict:
    if os.environ.get("HREM_REGEN_GOLDEN") == "1":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the tests run (conftest): the thread count changes float sums
        try:
            GOLDEN.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
        finally:
            torch.set_num_threads(threads)
    return json.loads(GOLDEN.read_text())


def test_golden_covers_every_variant(golden):
    assert sorted(golden) == sorted(_variants())


@pytest.mark.parametrize("name", sorted(_variants()))
def test_training_losses_match_golden(golden, name):
    _compare(compute_variant(*_variants()[name]), golden[name], name)
