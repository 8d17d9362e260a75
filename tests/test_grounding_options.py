"""The optional grounding components wired into the MCN model, the criterion and the CLI: every option
builds from a card, trains a few steps from `hrem train-grounding --set ...`, saves, loads and predicts."""
from __future__ import annotations

import json

import pytest
import torch

from hrem.cli import main
from hrem.config.base import ConfigError
from hrem.factory import create_model, load_card
from hrem.grounding import GroundingCriterion, GroundingTask, build_mcn_tokenizer, build_targets
from hrem.train.config import TrainConfig
from hrem.train.optim import build_optimizer, run_lr
from hrem.vision.letterbox import letterbox_meta

STEP = {"res_head": "step", "step.embed_dim": 16, "step.attention_dim": 8, "step.gru_hidden": 4}
CA2M = {"fusion": "ca2m", "ca2m.text_layers": [1], "ca2m.group_width": 8, "ca2m.fusion_width": 16,
        "ca2m.heads": 2, "ca2m.group_layers": 1, "ca2m.fusion_layers": 1}
DIRECT = {**CA2M, "ca2m.box_head": True, "inference.box_source": "direct"}
XTASK = {"xtask.enabled": True, "xtask.tt_width": 4}
REFINE = {"mask_refine.enabled": True, "mask_refine.skip": 4, "mask_refine.width": 8}
OPTIONS = {
    "step": STEP, "step+sentence": {**STEP, "step.sentence_to_rec": True}, "ca2m": CA2M,
    "step+neck+shifted": {**STEP, "step.visual_source": "neck", "step.heatmap": "shifted"},
    "ca2m+garan": {**CA2M, "ca2m.sentence_to_garan": True}, "ca2m+direct+self_paced":
        {**DIRECT, "loss_weighting": "self_paced"}, "self_paced_yolo": {"loss_weighting": "self_paced",
                                                                         "self_paced.apply_to": "yolo"},
    "xtask": XTASK, "xtask+uncertainty": {**XTASK, "xtask.balance": "uncertainty"},
    "xtask+gradnorm": {**XTASK, "xtask.balance": "gradnorm"}, "alignment": {**XTASK, "xtask.mode": "alignment"},
    "step+normalize+supervise_all": {**STEP, "step.normalize_visual": True, "step.supervise": "all"},
    "ca2m+direct+mean_cls+weights": {**DIRECT, "ca2m.cls_token": "mean", "losses.box_l1_weight": 5.0,
                                     "losses.box_giou_weight": 2.0},
    "uncertainty": {"xtask.balance": "uncertainty"}, "mask_refine": REFINE, "mask_refine+xtask": {**REFINE, **XTASK},
}


def _batch(model):
    tokens = build_mcn_tokenizer(model.card)(["a red circle", "the blue square left of it"])
    boxes = torch.tensor([[4.0, 6.0, 20.0, 30.0], [30.0, 30.0, 50.0, 44.0]])
    masks = torch.zeros(2, 64, 64)
    masks[0, 6:30, 4:20] = 1
    masks[1, 30:44, 30:50] = 1
    return torch.rand(2, 3, 64, 64), tokens, build_targets(boxes, model.anchors, 64, masks,
                                                           fine_mask=model.card.mask_refine.enabled)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_option_trains_and_predicts(name):
    torch.manual_seed(0)
    model = create_model(load_card("mcn-tiny", OPTIONS[name]))
    images, tokens, targets = _batch(model)
    criterion = GroundingCriterion.for_model(model, GroundingTask())
    optimizer = build_optimizer(model, criterion, TrainConfig(lr=1e-3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        terms = criterion(model(images, tokens), targets)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    assert torch.isfinite(terms["loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    (pred, _) = model.predict(model(images, tokens), [letterbox_meta(64, 64, 64)] * 2)
    assert pred.mask.shape == (64, 64) and pred.box_xyxy.shape == (4,)


def test_transfer_and_uncertainty_recombine_the_sides_as_documented():
    torch.manual_seed(0)
    card = load_card("mcn-tiny", {**XTASK, "xtask.balance": "uncertainty", "xtask.lambda1": 0.2,
                                  "xtask.lambda2": 0.3})
    model = create_model(card)
    images, tokens, targets = _batch(model)
    criterion = GroundingCriterion.for_model(model, GroundingTask())
    with torch.no_grad():
        criterion.uncertainty.log_vars.copy_(torch.tensor([0.5, -0.25]))
    t = criterion(model(images, tokens), targets)
    rec = 0.7 * (t["xy"] + t["wh"] + t["conf"]) + 0.3 * t["xtask_box_to_mask"]
    res = 0.8 * 0.1 * t["mask"] + 0.2 * t["xtask_mask_to_box"]
    expected = 0.5 * torch.exp(torch.tensor(-0.5)) * rec + 0.5 + 0.5 * torch.exp(torch.tensor(0.25)) * res - 0.25
    torch.testing.assert_close(t["loss"], expected + t["cem"])


def test_step_deep_supervision_averages_the_bce_of_every_step():
    torch.manual_seed(0)
    model = create_model(load_card("mcn-tiny", {**STEP, "step.folds": 2, "step.supervise": "all"}))
    images, tokens, targets = _batch(model)
    output = model(images, tokens)
    assert len(output.step_mask_logits) == 6 and output.step_mask_logits[-1] is output.mask_logits
    terms = GroundingCriterion.for_model(model, GroundingTask())(output, targets)
    naive = sum(torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.mask, reduction="sum")
                for logits in output.step_mask_logits) / (6 * 2)
    torch.testing.assert_close(terms["mask"], naive)
    last = create_model(load_card("mcn-tiny", {**STEP, "step.folds": 2}))
    assert last(images, tokens).step_mask_logits is None  # the paper: BCE on P_T only


def test_direct_box_loss_weights_scale_l1_and_giou():
    torch.manual_seed(0)
    model = create_model(load_card("mcn-tiny", DIRECT))
    images, tokens, targets = _batch(model)
    output = model(images, tokens)
    plain = GroundingCriterion.for_model(model, GroundingTask())(output, targets)
    model.card = load_card("mcn-tiny", {**DIRECT, "losses.box_l1_weight": 5.0, "losses.box_giou_weight": 2.0})
    weighted = GroundingCriterion.for_model(model, GroundingTask())(output, targets)
    torch.testing.assert_close(weighted["loss"] - plain["loss"], 4 * plain["box_l1"] + plain["box_giou"])


def test_single_task_ablations_keep_the_plain_sum():
    model = create_model(load_card("mcn-tiny", {**XTASK, "xtask.balance": "gradnorm"}))
    criterion = GroundingCriterion.for_model(model, GroundingTask("rec"))
    assert criterion.xtask is None and criterion.gradnorm is None


def test_optimizer_groups_of_the_loss_weights():
    card = load_card("mcn-tiny", {**DIRECT, **XTASK, "xtask.balance": "gradnorm", "loss_weighting": "self_paced"})
    model = create_model(card)
    criterion = GroundingCriterion.for_model(model, GroundingTask())
    groups = {g["name"]: g for g in build_optimizer(model, criterion, TrainConfig(lr=1e-3)).param_groups}
    assert groups["self_paced"]["lr"] == 5e-5 and groups["self_paced"]["weight_decay"] == 0.0
    assert len(groups["self_paced"]["params"]) == 2  # sigma of L1 and of GIoU
    in_optimizer = {id(p) for g in groups.values() for p in g["params"]}
    assert id(criterion.gradnorm.weights) not in in_optimizer  # GradNorm's weights take their own step
    assert all(id(p) in in_optimizer for p in criterion.xtask.parameters())


def test_gradnorm_in_the_criterion_moves_only_the_task_weights():
    torch.manual_seed(0)
    model = create_model(load_card("mcn-tiny", {"xtask.balance": "gradnorm", "xtask.gradnorm_lr": 0.05}))
    images, tokens, targets = _batch(model)
    criterion = GroundingCriterion.for_model(model, GroundingTask()).train()
    criterion(model(images, tokens), targets)
    assert all(p.grad is None for p in model.parameters())
    weights = criterion.gradnorm.weights.detach()
    assert not torch.equal(weights, torch.ones(2)) and abs(float(weights.sum()) - 2.0) < 1e-5


def test_invalid_option_combinations_are_named():
    with pytest.raises(ConfigError, match="box_source"):
        load_card("mcn-tiny", {"inference.box_source": "direct"})
    with pytest.raises(ConfigError, match="apply_to"):
        load_card("mcn-tiny", {"loss_weighting": "self_paced"})
    with pytest.raises(ValueError, match="text_layers"):
        create_model(load_card("mcn-tiny", {**CA2M, "ca2m.text_layers": [2]}))  # the tiny BERT has 1 layer


def test_gru_language_gives_two_granularities_to_ca2m():
    card = load_card("mcn-tiny", {**CA2M, "language.kind": "gru", "language.config_overrides": {}})
    model = create_model(card)
    images, tokens, _ = _batch(model)
    assert model(images, tokens).mask_logits.shape == (2, 1, 8, 8)


@pytest.mark.parametrize("head", [STEP, REFINE], ids=["step", "mask_refine"])
def test_options_train_save_and_evaluate_from_the_cli(tmp_path, head):
    from hrem.data.cache import ensure_shapesref

    data = ensure_shapesref(tmp_path / "shapes", train=12, dev=3, test=3, size=64, workers=1)
    out = tmp_path / "run"
    sets = [arg for key, value in {**head, **XTASK, "xtask.balance": "gradnorm"}.items()
            for arg in ("--set", f"{key}={json.dumps(value)}")]
    args = ["train-grounding", "--out", str(out), "--card", "mcn-tiny", "--data", str(data), "--batch-size", "4",
            "--workers", "0", "--device", "cpu", "--save-every", "1", "--log-every", "1", *sets]
    assert main([*args, "--max-iters", "2", "--test-splits", ""]) == 0
    assert main([*args, "--max-iters", "3"]) == 0  # resumes, criterion state (GradNorm L(0)) included
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert state["position"]["iteration"] == 3
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("weight_rec" in s for s in steps if s["kind"] == "step")
    saved = json.loads((out / "config.json").read_text())
    assert saved["res_head"] == head.get("res_head", "mcn_aspp")
    assert saved["mask_refine"]["enabled"] == ("mask_refine.enabled" in head)
    report = json.loads((out / "report" / "report.json").read_text())["results"]["refs-test"]
    assert report["n_samples"] > 0


def test_ca2m_lr_mult_puts_the_fusion_and_box_head_in_their_own_group():
    card = load_card("mcn-tiny", {**DIRECT, "ca2m.lr_mult": 0.1})
    model = create_model(card)
    criterion = GroundingCriterion.for_model(model, GroundingTask())
    optimizer = build_optimizer(model, criterion, TrainConfig(lr=1e-3))
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert optimizer.param_groups[-1]["lr"] != 1e-3 and run_lr(optimizer) == pytest.approx(1e-3)  # logged lr
    names = {id(p): n for n, p in model.named_parameters()}
    for prefix in ("fusion.", "direct_box."):
        group = groups[f"model:{prefix}"]
        assert group["lr"] == pytest.approx(1e-4) and group["base_lr"] == pytest.approx(1e-4)
        assert group["params"] and all(names[id(p)].startswith(prefix) for p in group["params"])
    assert not any(names[id(p)].startswith(("fusion.", "direct_box.")) for p in groups["model"]["params"])
    plain = create_model(load_card("mcn-tiny", DIRECT))
    assert plain.lr_multipliers() == {}
    with pytest.raises(ConfigError, match="ca2m.lr_mult"):
        load_card("mcn-tiny", {**DIRECT, "ca2m.lr_mult": 0})
