"""The MCN grounding model on the tiny card: shapes of every stage, losses, overfitting, predict()."""

import dataclasses
import os
import tempfile

import numpy as np
import pytest
import torch

from hrem.config import ConfigError
from hrem.config.base import load_json
from hrem.config.grounding import MCNCard, load_mcn_card, mcn_card_from_dict
from hrem.grounding import (
    GroundingCriterion,
    GroundingOutput,
    GroundingTask,
    build_mcn,
    build_mcn_tokenizer,
    build_targets,
    letterbox_image,
    letterbox_meta,
)
from hrem.grounding.yolo import decode_boxes
from hrem.utils.paths import CARDS_DIR
from hrem.vision.letterbox import box_to_letterbox, mask_to_letterbox

TEXTS = ["the red circle on the left", "big blue square"]


@pytest.fixture(scope="module")
def card() -> MCNCard:
    return load_mcn_card(str(CARDS_DIR / "mcn-tiny.json"))


@pytest.fixture(scope="module")
def tokenizer(card):
    return build_mcn_tokenizer(card)


@pytest.fixture()
def model(card):
    torch.manual_seed(0)
    return build_mcn(card, "cpu")


@pytest.mark.parametrize("name", ["mcn-tiny", "mcn-demo", "mcn-resnet50", "mcn-demo-step", "mcn-demo-xtask",
                                  "mcn-demo-ca2m"])
def test_packaged_cards_validate(name):
    card = load_mcn_card(str(CARDS_DIR / f"{name}.json"))
    assert card.name == name and card.kind == "mcn" and card.input_size % 32 == 0 and len(card.anchors) == 3


def test_card_errors_name_the_field():
    data = load_json(CARDS_DIR / "mcn-tiny.json")
    with pytest.raises(ConfigError, match="input_size: expected a positive multiple of 32, found 100"):
        mcn_card_from_dict({**data, "input_size": 100})
    with pytest.raises(ConfigError, match="anchors: expected 3"):
        mcn_card_from_dict({**data, "anchors": [[1, 2], [3, 4]]})
    with pytest.raises(ConfigError, match="widths.neck"):
        mcn_card_from_dict({**data, "widths": {**data["widths"], "neck": 15}})
    with pytest.raises(ConfigError, match="frozen_stages"):
        mcn_card_from_dict({**data, "backbone": {**data["backbone"], "frozen_stages": 9}})


def test_every_stage_has_the_documented_shape(model, tokenizer, card):
    model.eval()
    images, tokens = torch.rand(2, 3, 64, 64), tokenizer(TEXTS)
    with torch.no_grad():
        sentence = model.language(tokens).sentence
        c3, c4, c5 = model.backbone(images)
        fused = model.fusion.fuse(c5, sentence)
        mid, down = model.top_down(fused, c4, c3)
        res = model.res_garan(down, sentence)
        rec_in = model.bottom_up(res.features, mid, fused)
        rec = model.rec_garan(rec_in, sentence)
        out = model(images, tokens)
    w = card.widths
    assert sentence.shape == (2, card.language.dim)
    assert (c3.shape[2:], c4.shape[2:], c5.shape[2:]) == ((8, 8), (4, 4), (2, 2))
    assert fused.shape == (2, w.fusion, 2, 2)
    assert mid.shape == (2, w.neck, 4, 4) and down.shape == (2, w.neck, 8, 8)
    assert res.features.shape == res.attended.shape == (2, w.neck, 8, 8) and res.collect.shape == (2, 2, 64)
    assert rec_in.shape == rec.attended.shape == (2, w.neck, 2, 2)
    assert out.raw.shape == (2, 2, 2, 3, 5) and out.boxes_xywh.shape == (2, 2, 2, 3, 4)
    assert out.objectness.shape == (2, 2, 2, 3) and out.mask_logits.shape == (2, 1, 8, 8)
    torch.testing.assert_close(out.res_attended, res.attended)
    torch.testing.assert_close(out.raw[..., 4], out.objectness)


def test_forward_rejects_a_wrong_input_size(model, tokenizer):
    with pytest.raises(ValueError, match=r"expected \[B, 3, 64, 64\]"):
        model(torch.rand(1, 3, 96, 96), tokenizer(TEXTS[:1]))


def _synthetic_batch(size: int = 64):
    """Two letterboxed scenes with one bright rectangle each; boxes and masks are the rectangles."""
    boxes = torch.tensor([[8.0, 12.0, 40.0, 36.0], [30.0, 20.0, 60.0, 60.0]])
    images = torch.full((2, 3, size, size), 0.2)
    masks = torch.zeros(2, size, size)
    for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        images[i, i, y1:y2, x1:x2] = 0.9
        masks[i, y1:y2, x1:x2] = 1
    return images, boxes, masks


def test_losses_are_finite_positive_and_the_total_is_the_weighted_sum(model, tokenizer, card):
    images, boxes, masks = _synthetic_batch()
    targets = build_targets(boxes, model.anchors, 64, masks)
    terms = GroundingCriterion.for_model(model, GroundingTask())(model(images, tokenizer(TEXTS)), targets)
    assert set(terms) == {"loss", "xy", "wh", "conf", "mask", "cem", "energy"}
    assert all(torch.isfinite(v) and v >= 0 for v in terms.values())
    assert 0 < terms["energy"] < 1
    expected = terms["xy"] + terms["wh"] + terms["conf"] + 0.1 * terms["mask"] + terms["cem"]
    torch.testing.assert_close(terms["loss"], expected)
    terms["loss"].backward()
    assert model.cem.res_proj.weight.grad is not None and model.box_head.conv.weight.grad is not None


def test_loss_decreases_when_overfitting_one_tiny_batch(model, tokenizer):
    torch.manual_seed(0)
    images, boxes, masks = _synthetic_batch()
    tokens, targets = tokenizer(TEXTS), build_targets(boxes, model.anchors, 64, masks)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    criterion = GroundingCriterion.for_model(model, GroundingTask())
    model.train()
    history = []
    for _ in range(30):
        terms = criterion(model(images, tokens), targets)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in terms.items()})
    first, last = history[0], history[-1]
    assert last["loss"] < 0.5 * first["loss"], [h["loss"] for h in history]
    for name in ("wh", "conf", "mask", "cem"):  # xy has a floor: the entropy of its soft targets
        assert last[name] < 0.7 * first[name], (name, first[name], last[name])


def _hand_made_output(model, objectness_logit: float, blob_logit: float) -> GroundingOutput:
    """Top box [16, 24, 48, 40] (letterbox px) at row 1, col 0, anchor 1; mask logits +10 on that box."""
    raw = torch.zeros(1, 2, 2, 3, 5)
    raw[..., 4] = -8.0
    anchor = model.anchors[1]
    # centre (32, 32) = cell (row 1, col 1) with offsets sigma(-30) ~ 0; size 32 x 16
    raw[0, 1, 1, 1] = torch.tensor(
        [-30.0, -30.0, float(np.log(32 / anchor[0])), float(np.log(16 / anchor[1])), objectness_logit]
    )
    mask_logits = torch.full((1, 1, 8, 8), -10.0)
    mask_logits[0, 0, 3:5, 2:6] = 10.0  # rows 24..40, cols 16..48 of the 64 px canvas
    mask_logits[0, 0, 6, 0] = blob_logit  # a blob outside the box
    zeros = torch.zeros(1, model.card.widths.neck, 8, 8)
    return GroundingOutput(
        raw=raw,
        boxes_xywh=decode_boxes(raw, model.anchors),
        objectness=raw[..., 4],
        mask_logits=mask_logits,
        res_attended=zeros,
        rec_attended=zeros[..., :2, :2],
        res_collect=torch.zeros(1, 2, 64),
        rec_collect=torch.zeros(1, 2, 4),
        sentence=torch.zeros(1, 32),
    )


def test_predict_maps_box_and_mask_back_to_the_original_image(model):
    from hrem.eval.grounding import box_iou, mask_iou

    meta = letterbox_meta(100, 50, 64)  # nw 64, nh 32, dx 0, dy 16, scale 0.64
    out = _hand_made_output(model, objectness_logit=3.0, blob_logit=-10.0)
    (pred,) = model.predict(out, [meta])
    np.testing.assert_allclose(pred.box_xyxy, [25.0, 12.5, 75.0, 37.5], atol=1e-3)
    assert pred.score == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert pred.box_letterbox == (16, 24, 48, 40)
    assert pred.mask.shape == (50, 100) and pred.mask.dtype == bool
    gt_mask = np.zeros((50, 100), dtype=bool)
    gt_mask[12:38, 25:75] = True
    assert box_iou(pred.box_xyxy[None], np.array([[25.0, 12.5, 75.0, 37.5]]))[0] == pytest.approx(
        1.0, abs=1e-4
    )
    assert mask_iou([pred.mask], [gt_mask])[0] > 0.85


def test_asnls_switch_suppresses_a_blob_outside_a_doubtful_box(model):
    meta = letterbox_meta(64, 64, 64)
    out = _hand_made_output(model, objectness_logit=-1.0, blob_logit=0.5)  # s = 0.27; blob p = 0.62
    (with_asnls,) = model.predict(out, [meta], asnls=True)
    (without,) = model.predict(out, [meta], asnls=False)
    assert without.mask[48:56, 0:4].any() and not with_asnls.mask[48:56, 0:4].any()
    assert with_asnls.mask[28:36, 20:44].all()  # inside the box p x (2 - s) stays above 0.35


def test_ground_runs_the_whole_inference_path_on_real_images(model, tokenizer):
    from PIL import Image

    rng = np.random.default_rng(0)
    pil = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in [(91, 37), (40, 120)]]
    boxed = [letterbox_image(p, 64) for p in pil]
    images = torch.from_numpy(np.stack([b[0] for b in boxed]))
    model.train()
    predictions = model.ground(images, tokenizer(TEXTS), [b[1] for b in boxed])
    assert model.training  # restored
    for p, image in zip(predictions, pil):
        assert p.mask.shape == (image.height, image.width)
        assert (
            0 <= p.box_xyxy[0] <= p.box_xyxy[2] <= image.width
            and 0 <= p.box_xyxy[1] <= p.box_xyxy[3] <= image.height
        )
        assert 0 < p.score < 1


def test_letterboxed_targets_line_up_with_the_model_grid(model):
    meta = letterbox_meta(100, 50, 64)
    box = torch.from_numpy(box_to_letterbox(np.array([[25.0, 12.5, 75.0, 37.5]]), meta)).float()
    mask = np.zeros((50, 100), bool)
    mask[12:38, 25:75] = True
    targets = build_targets(
        box, model.anchors, 64, torch.from_numpy(mask_to_letterbox(mask, meta))[None].float()
    )
    assert (
        targets.mask.shape == (1, 1, 8, 8) and targets.mask[0, 0, 3:5, 2:6].all() and targets.mask.sum() == 8
    )
    assert targets.yolo.object_mask[0, 1, 1].sum() == 1


def test_padding_does_not_change_the_sentence_vector(card, tokenizer):
    for kind in ("hf", "gru"):
        torch.manual_seed(0)
        variant = dataclasses.replace(
            card, language=dataclasses.replace(card.language, kind=kind, word_dim=8)
        )
        language = build_mcn(variant).language.eval()
        alone = language(tokenizer(["big blue square"])).sentence
        padded = language(
            tokenizer(["big blue square", "the small red circle left of the green triangle"])
        ).sentence
        torch.testing.assert_close(padded[:1], alone, atol=1e-5, rtol=1e-4)


def test_frozen_stages_have_no_gradients_and_fixed_batch_norm(card):
    frozen = dataclasses.replace(card, backbone=dataclasses.replace(card.backbone, frozen_stages=2))
    model = build_mcn(frozen).train()
    embedder, stage1 = model.backbone.body.embedder, model.backbone.body.encoder.stages[0]
    assert not any(p.requires_grad for p in [*embedder.parameters(), *stage1.parameters()])
    assert all(p.requires_grad for p in model.backbone.body.encoder.stages[1].parameters())
    assert not embedder.training and not stage1.training and model.backbone.body.encoder.stages[1].training


def test_build_honours_device_and_dtype(card, tokenizer):
    model = build_mcn(card, "cpu", torch.float64).eval()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    out = model(torch.rand(1, 3, 64, 64, dtype=torch.float64), tokenizer(TEXTS[:1]))
    assert out.mask_logits.dtype == torch.float64


def test_factory_builds_mcn_cards():
    from hrem import factory

    assert {"mcn-tiny", "mcn-demo", "mcn-resnet50"} <= set(factory.list_models("mcn"))
    model = factory.create_model("mcn-tiny")
    assert model.card.name == "mcn-tiny"
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
        again = factory.create_model("mcn-tiny", weights=path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)


def test_resnet50_card_forward_at_416(tokenizer):
    card = load_mcn_card(str(CARDS_DIR / "mcn-resnet50.json"))
    model = build_mcn(card).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 416, 416), build_mcn_tokenizer(card)(TEXTS[:1]))
    assert out.raw.shape == (1, 13, 13, 3, 5) and out.mask_logits.shape == (1, 1, 52, 52)
    assert out.res_attended.shape == (1, 512, 52, 52) and out.rec_attended.shape == (1, 512, 13, 13)
