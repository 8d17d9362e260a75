"""hrem's stride-4 mask refinement (card `mask_refine`): MCN's stride-8 mask and its gradients stay as they
are, the refined mask starts as the upsampled stride-8 one, reads the stride-4 backbone map, is trained on a
stride-4 target and is what inference uses."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrem.config.base import ConfigError
from hrem.factory import create_model, load_card
from hrem.grounding import GroundingCriterion, GroundingTask, build_mcn_tokenizer, build_targets
from hrem.grounding.options.mask_refine import MaskRefiner
from hrem.vision.letterbox import letterbox_meta

REFINE = {"mask_refine.enabled": True, "mask_refine.skip": 4, "mask_refine.width": 8}


def _inputs(card):
    tokens = build_mcn_tokenizer(card)(["a red circle", "the blue square"])
    return torch.rand(2, 3, 64, 64), tokens


def _targets(model, fine_mask=True):
    masks = torch.zeros(2, 64, 64)
    masks[:, 5:7, 9:11] = 1  # covers the centre (6, 10) of stride-4 cell (1, 2) and no stride-8 centre
    boxes = torch.tensor([[9.0, 5.0, 11.0, 7.0]] * 2)
    return build_targets(boxes, model.anchors, 64, masks, fine_mask=fine_mask)


def test_refined_mask_starts_as_the_upsampled_stride_8_mask():
    torch.manual_seed(0)
    card = load_card("mcn-tiny", REFINE)
    model = create_model(card)
    out = model(*_inputs(card))
    assert out.mask_logits.shape == (2, 1, 8, 8) and out.fine_mask_logits.shape == (2, 1, 16, 16)
    upsampled = F.interpolate(out.mask_logits, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.fine_mask_logits, upsampled)
    assert out.output_mask_logits is out.fine_mask_logits


def test_stride_4_target_and_loss_term():
    torch.manual_seed(0)
    model = create_model(load_card("mcn-tiny", REFINE))
    targets = _targets(model)
    assert targets.mask.sum() == 0 and targets.fine_mask.shape == (2, 1, 16, 16)
    assert targets.fine_mask.sum() == 2 and targets.fine_mask[0, 0, 1, 2] == 1
    out = model(*_inputs(model.card))
    criterion = GroundingCriterion.for_model(model, GroundingTask())
    terms = criterion(out, targets)
    per_image = F.binary_cross_entropy_with_logits(out.fine_mask_logits, targets.fine_mask, reduction="none")
    torch.testing.assert_close(terms["mask_fine"], per_image.sum(dim=(1, 2, 3)).mean())
    without_fine = criterion(out, _targets(model, False))
    torch.testing.assert_close(terms["loss"], without_fine["loss"] + 0.1 * terms["mask_fine"])
    assert "mask_fine" not in without_fine


def test_refiner_leaves_mcn_gradients_unchanged_when_detached():
    torch.manual_seed(0)
    card = load_card("mcn-tiny", REFINE)
    model = create_model(card)
    images, tokens = _inputs(card)
    out = model(images, tokens)
    out.fine_mask_logits.sum().backward()
    outside = [name for name, p in model.named_parameters()
               if p.grad is not None and p.grad.abs().sum() > 0 and not name.startswith("mask_refiner.")]
    assert outside == []
    attached = create_model(load_card("mcn-tiny", {**REFINE, "mask_refine.detach": False}))
    attached(images, tokens).fine_mask_logits.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in attached.backbone.parameters())


def test_refiner_learns_detail_that_only_the_fine_map_carries():
    torch.manual_seed(0)
    refiner = MaskRefiner(merged_ch=3, fine_ch=1, skip=4, width=8)
    merged, coarse = torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4)
    pattern = torch.zeros(1, 1, 8, 8)
    pattern[..., ::2, ::2] = 1.0  # a stride-4 checkerboard no stride-8 map can express
    optimizer = torch.optim.Adam(refiner.parameters(), lr=0.05)
    for _ in range(150):
        loss = F.binary_cross_entropy_with_logits(refiner(merged, coarse, pattern), pattern)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    refiner.eval()
    assert torch.equal((refiner(merged, coarse, pattern) > 0).float(), pattern)


def test_inference_uses_the_refined_mask():
    torch.manual_seed(0)
    card = load_card("mcn-tiny", {**REFINE, "inference.asnls": False})
    model = create_model(card).eval()
    with torch.no_grad():
        model.mask_refiner.out.bias.fill_(-50.0)  # refined: 20 - 50 < 0 everywhere; stride 8: 20 > 0
        model.mask_head.out.bias.fill_(20.0)
        out = model(*_inputs(card))
    (pred, _) = model.predict(out, [letterbox_meta(64, 64, 64)] * 2)
    assert pred.mask.shape == (64, 64) and not pred.mask.any()
    assert torch.sigmoid(out.mask_logits).min() > 0.99  # the stride-8 mask alone would cover everything


def test_default_card_keeps_mcn_parameter_names():
    card = load_card("mcn-tiny")
    model = create_model(card)
    out = model(*_inputs(card))
    assert model.mask_refiner is None and out.fine_mask_logits is None
    assert {"mask_head.out.weight", "mask_head.out.bias"} <= set(model.state_dict())
    assert not any(key.startswith("mask_refiner.") for key in model.state_dict())


@pytest.mark.parametrize("overrides, field", [
    ({**REFINE, "res_head": "step"}, "mask_refine.enabled"),
    ({**REFINE, "mask_refine.feature": "stage2"}, "mask_refine.feature"),
    ({**REFINE, "mask_refine.feature": "stage9"}, "mask_refine.feature"),
    ({**REFINE, "mask_refine.weight": -1.0}, "mask_refine.weight"),
])
def test_invalid_refine_settings_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_card("mcn-tiny", overrides)
