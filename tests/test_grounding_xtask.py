"""Cross-task consistency (REFERENCE_EXTRA.md §2.5): the soft box raster, the transfer nets, stop-gradient
routing, uncertainty weights and GradNorm."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hrem.config.grounding_options import XTaskCfg
from hrem.grounding.training.balance import GradNorm, UncertaintyWeights
from hrem.grounding.options.xtask import CrossTaskConsistency, TaskTransferNet, soft_box_raster
from hrem.grounding.yolo import select_top_box


def test_soft_box_raster_matches_a_naive_loop_and_is_differentiable():
    boxes = torch.tensor([[8.0, 16.0, 40.0, 30.0], [0.0, 0.0, 64.0, 64.0]], requires_grad=True)
    got = soft_box_raster(boxes, (8, 8), stride=8.0, sharpness=10.0)
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))
    for b in range(2):
        x1, y1, x2, y2 = (float(v) / 8.0 for v in boxes[b].detach())
        for i in range(8):
            for j in range(8):
                x, y = j + 0.5, i + 0.5
                want = sig(10 * (x - x1)) * sig(10 * (x2 - x)) * sig(10 * (y - y1)) * sig(10 * (y2 - y))
                assert abs(float(got[b, 0, i, j].detach()) - want) < 1e-6
    assert got[0, 0, 2, 3] > 0.99 and got[0, 0, 6, 6] < 1e-3  # inside the box / far outside
    got.sum().backward()
    assert boxes.grad is not None and boxes.grad[0].abs().sum() > 0


@pytest.mark.parametrize("size", [(13, 13), (16, 16), (52, 52)])
def test_transfer_net_keeps_any_grid_size(size):
    net = TaskTransferNet(1, 1, width=4)
    assert net(torch.rand(2, 1, *size)).shape == (2, 1, *size)
    assert net.out.bias is None  # xtask's final 1x1 conv has no bias


def _two_heads():
    """A RES 'head' (mask logits) and a REC 'head' (box) that are plain parameters."""
    torch.manual_seed(0)
    res = nn.Parameter(torch.randn(2, 1, 8, 8))
    rec = nn.Parameter(torch.tensor([[8.0, 8.0, 40.0, 48.0], [16.0, 4.0, 60.0, 30.0]]))
    return res, rec


@pytest.mark.parametrize("mode", ["consistency", "alignment"])
def test_transfer_losses_send_no_gradient_into_the_target_head(mode):
    res, rec = _two_heads()
    xtask = CrossTaskConsistency(XTaskCfg(enabled=True, mode=mode, tt_width=16), stride=8)
    gt_box, gt_mask = torch.tensor([[8.0, 8.0, 32.0, 32.0]] * 2), torch.zeros(2, 1, 8, 8)
    xtask(res, rec, gt_box, gt_mask).mask_to_box.backward()  # L_{s->c}: source RES, target REC
    assert res.grad is not None and res.grad.abs().sum() > 0
    assert rec.grad is None or rec.grad.abs().sum() == 0
    assert all(p.grad is not None for p in xtask.mask_to_box.parameters())
    assert all(p.grad is None for p in xtask.box_to_mask.parameters())
    res.grad = None
    xtask(res, rec, gt_box, gt_mask).box_to_mask.backward()  # L_{c->s}: source REC, target RES
    assert rec.grad is not None and rec.grad.abs().sum() > 0
    assert res.grad is None or res.grad.abs().sum() == 0


def test_consistency_targets_are_the_other_heads_detached_predictions():
    res, rec = _two_heads()
    xtask = CrossTaskConsistency(XTaskCfg(enabled=True, tt_width=4), stride=8)
    target_box_map = soft_box_raster(rec.detach(), (8, 8), 8.0, 10.0)
    # a transfer net that outputs exactly logit(target) is at the BCE minimum: zero gradient into its output
    logits = torch.logit(target_box_map.clamp(1e-6, 1 - 1e-6)).requires_grad_(True)
    xtask.mask_to_box.forward = lambda x: logits  # type: ignore[method-assign]
    xtask(res, rec).mask_to_box.backward()
    assert logits.grad.abs().max() < 1e-5
    with pytest.raises(ValueError, match="alignment"):
        CrossTaskConsistency(XTaskCfg(enabled=True, mode="alignment", tt_width=4), stride=8)(res, rec)


def test_top_box_is_the_highest_objectness_box_with_gradient():
    boxes = torch.rand(2, 3, 3, 3, 4, requires_grad=True)
    objectness = torch.randn(2, 3, 3, 3)
    got, _ = select_top_box(boxes, objectness)
    for b in range(2):
        idx = objectness[b].flatten().argmax()
        cx, cy, w, h = boxes[b].reshape(-1, 4)[idx]
        torch.testing.assert_close(got[b], torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    got.sum().backward()
    assert boxes.grad.abs().sum() > 0


def test_uncertainty_weight_reaches_its_analytic_optimum():
    weights = UncertaintyWeights(1)
    optimizer = torch.optim.SGD(weights.parameters(), lr=0.5)
    loss = torch.tensor(0.8)
    for _ in range(400):
        optimizer.zero_grad()
        value = weights([loss])
        assert float(value.detach()) >= 0.5 * math.exp(-math.log(0.4)) * 0.8 + math.log(0.4) - 1e-6  # >= its minimum
        value.backward()
        optimizer.step()
    assert abs(float(weights.log_vars.detach()[0]) - math.log(0.4)) < 1e-4  # s* = log(L / 2) = -0.9163
    assert abs(float(weights([loss]).detach()) - 0.0837) < 1e-3


def _shared_setup():
    torch.manual_seed(0)
    shared = nn.Linear(4, 4)
    heads = nn.ModuleList([nn.Linear(4, 1), nn.Linear(4, 1)])
    x = torch.randn(8, 4)
    features = shared(x)
    return shared, heads, features


def test_gradnorm_updates_only_the_task_weights_and_renormalises():
    shared, heads, features = _shared_setup()
    losses = [heads[0](features).pow(2).mean(), 10 * heads[1](features).pow(2).mean()]
    balancer = GradNorm(2, alpha=0.16, lr=0.05)
    balancer.update(losses, shared.weight)
    assert all(p.grad is None for p in [*shared.parameters(), *heads.parameters()])  # bug 1 of xtask avoided
    assert balancer.weights.grad is None
    torch.testing.assert_close(balancer.weights.sum(), torch.tensor(2.0))
    assert balancer.weights[1] < balancer.weights[0]  # the task with the larger gradient is down-weighted


def test_gradnorm_keeps_identical_tasks_identical_and_takes_initial_losses_once():
    shared, heads, features = _shared_setup()
    balancer = GradNorm(2, alpha=0.16, lr=0.05)
    loss = heads[0](features).pow(2).mean()
    for _ in range(3):
        balancer.update([loss, loss], shared.weight)
    torch.testing.assert_close(balancer.weights[0], balancer.weights[1])
    first = balancer.initial_losses.clone()
    balancer.update([2 * loss, loss], shared.weight)
    torch.testing.assert_close(balancer.initial_losses, first)  # L_i(0) is not overwritten (bug 2 of xtask)


def test_gradnorm_network_loss_uses_fixed_weights():
    shared, heads, features = _shared_setup()
    balancer = GradNorm(2)
    losses = [heads[0](features).pow(2).mean(), heads[1](features).pow(2).mean()]
    total = balancer(losses)
    balancer.update(losses, shared.weight)  # changes w in place after the product was taken
    total.backward()
    assert balancer.weights.grad is None
    torch.testing.assert_close(total, losses[0] + losses[1])
