"""MCN parts against naive references: letterbox, ASNLS, GARAN, CEM, YOLO coding, anchors."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from hrem.grounding.anchors import kmeans_anchors, mean_best_iou
from hrem.grounding.asnls import asnls, hard_nls, round_box
from hrem.grounding.cem import ConsistencyEnergy, cem_loss, consistency_energy
from hrem.grounding.garan import GARAN
from hrem.grounding.training.losses import ignore_mask, smooth_l1, yolo_losses
from hrem.grounding.training.targets import mask_target
from hrem.grounding.yolo import (
    build_yolo_targets,
    decode_boxes,
    select_top_box,
    shape_iou,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from hrem.vision.letterbox import (
    box_from_letterbox,
    box_to_letterbox,
    letterbox_image,
    letterbox_meta,
    mask_from_letterbox,
    mask_to_letterbox,
    probs_from_letterbox,
)

ODD_SIZES = [(37, 91), (91, 37), (200, 3), (3, 200), (64, 64), (13, 7), (641, 479)]


# ----------------------------------------------------------------------------------------------- letterbox
@pytest.mark.parametrize("width,height", ODD_SIZES)
def test_letterbox_geometry_centres_the_image_and_fills_the_long_side(width, height):
    meta = letterbox_meta(width, height, 64)
    assert max(meta.new_width, meta.new_height) == 64
    assert meta.new_width == max(1, math.floor(width * min(64 / width, 64 / height) + 1e-9))  # never 0 wide
    assert meta.dx == (64 - meta.new_width) // 2 and meta.dy == (64 - meta.new_height) // 2


def test_letterbox_image_pads_grey_and_resizes_bicubic():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(37, 91, 3), dtype=np.uint8)  # H=37, W=91
    image, meta = letterbox_image(Image.fromarray(pixels), 64)
    assert image.shape == (3, 64, 64) and image.dtype == np.float32
    expected = (
        np.asarray(Image.fromarray(pixels).resize((meta.new_width, meta.new_height), Image.BICUBIC)) / 255.0
    )
    content = image[:, meta.dy : meta.dy + meta.new_height, meta.dx : meta.dx + meta.new_width].transpose(
        1, 2, 0
    )
    np.testing.assert_allclose(content, expected, atol=1e-6)
    assert meta.dy > 0
    np.testing.assert_allclose(image[:, : meta.dy], 128 / 255.0, atol=1e-7)
    np.testing.assert_allclose(image[:, meta.dy + meta.new_height :], 128 / 255.0, atol=1e-7)


@pytest.mark.parametrize("width,height", ODD_SIZES)
@pytest.mark.parametrize("fmt", ["xyxy", "xywh"])
def test_box_round_trip_is_exact_including_border_boxes(width, height, fmt):
    meta = letterbox_meta(width, height, 64)
    full = [0, 0, width, height]  # the whole image, in both formats (x2 = w when x1 = 0)
    inner = (
        [1.5, 0.25, width * 0.6, height * 0.9] if fmt == "xyxy" else [1.5, 0.25, width * 0.3, height * 0.5]
    )
    boxes = np.array([full, inner], dtype=np.float64)
    there = box_to_letterbox(boxes, meta, fmt)
    back = box_from_letterbox(there, meta, fmt)
    np.testing.assert_allclose(back, boxes, atol=1e-9)
    # the whole image maps onto exactly the non-padded canvas
    whole = box_to_letterbox(np.array([0, 0, width, height], float), meta, "xyxy")
    np.testing.assert_allclose(whole, [meta.dx, meta.dy, meta.dx + meta.new_width, meta.dy + meta.new_height])


def test_box_from_letterbox_clips_to_the_image():
    meta = letterbox_meta(100, 50, 64)
    back = box_from_letterbox(np.array([-5.0, 0.0, 70.0, 64.0]), meta)
    np.testing.assert_allclose(back, [0, 0, 100, 50])


@pytest.mark.parametrize("width,height", [(13, 7), (20, 31), (64, 5), (1, 1)])
def test_mask_round_trip_is_exact_when_upscaling(width, height):
    rng = np.random.default_rng(width * 100 + height)
    mask = rng.random((height, width)) > 0.5
    meta = letterbox_meta(width, height, 64)
    boxed = mask_to_letterbox(mask, meta)
    assert boxed.shape == (64, 64)
    assert not boxed[: meta.dy].any() and not boxed[:, : meta.dx].any()
    np.testing.assert_array_equal(mask_from_letterbox(boxed, meta), mask)


def test_mask_round_trip_is_exact_for_masks_that_survive_downscaling():
    # 256 x 200 -> 128 x 100: scale 1/2; a mask made of aligned 2x2 blocks survives and comes back exactly
    rng = np.random.default_rng(1)
    blocks = rng.random((100, 128)) > 0.5
    mask = np.kron(blocks, np.ones((2, 2), dtype=bool))
    meta = letterbox_meta(256, 200, 128)
    np.testing.assert_array_equal(mask_from_letterbox(mask_to_letterbox(mask, meta), meta), mask)


@pytest.mark.parametrize("width,height", [(91, 37), (641, 479), (200, 3)])
def test_mask_round_trip_of_a_rectangle_is_within_one_source_pixel_when_downscaling(width, height):
    mask = np.zeros((height, width), dtype=bool)
    x1, y1, x2, y2 = width // 5, height // 4, width - width // 3, height - height // 5
    mask[y1:y2, x1:x2] = True
    meta = letterbox_meta(width, height, 64)
    back = mask_from_letterbox(mask_to_letterbox(mask, meta), meta)
    ys, xs = np.nonzero(back)
    tol_x, tol_y = math.ceil(1 / meta.scale_x), math.ceil(1 / meta.scale_y)
    assert abs(xs.min() - x1) <= tol_x and abs(xs.max() + 1 - x2) <= tol_x
    assert abs(ys.min() - y1) <= tol_y and abs(ys.max() + 1 - y2) <= tol_y


def test_probs_from_letterbox_crops_padding_then_resizes():
    meta = letterbox_meta(30, 10, 64)
    probs = torch.zeros(64, 64)
    probs[meta.dy : meta.dy + meta.new_height, meta.dx : meta.dx + meta.new_width] = 0.7
    back = probs_from_letterbox(probs, meta)
    assert back.shape == (10, 30)
    torch.testing.assert_close(back, torch.full((10, 30), 0.7))


def test_letterbox_rejects_wrong_shapes():
    meta = letterbox_meta(30, 10, 64)
    with pytest.raises(ValueError, match="expected shape"):
        mask_to_letterbox(np.zeros((30, 10)), meta)
    with pytest.raises(ValueError, match="positive"):
        letterbox_meta(0, 10, 64)


def test_mask_target_samples_cell_centres():
    masks = torch.zeros(1, 32, 32)
    masks[0, 4, 12] = 1  # centre of cell (0, 1) with stride 8
    masks[0, 0, 0] = 1  # a corner pixel: not a centre, ignored
    target = mask_target(masks)
    assert target.shape == (1, 1, 4, 4)
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 0, 1] = 1
    torch.testing.assert_close(target, expected)


# ----------------------------------------------------------------------------------------------- ASNLS
def test_asnls_on_a_hand_computed_map():
    prob = torch.tensor(
        [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.9, 1.0, 0.2, 0.4], [0.3, 0.3, 0.3, 0.3]]
    )
    out = asnls(prob, (1, 1, 2, 2), score=0.25)  # inside: x 1.75, outside: x 0.25
    expected = torch.tensor(
        [
            [0.025, 0.05, 0.075, 0.1],
            [0.125, 1.05, 1.225, 0.2],
            [0.225, 1.75, 0.35, 0.1],
            [0.075, 0.075, 0.075, 0.075],
        ]
    )
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(asnls(prob, (1, 1, 2, 2), score=1.0), prob)  # a sure box changes nothing
    hard = hard_nls(prob, (0, 0, 1, 0))
    torch.testing.assert_close(
        hard, torch.tensor([[0.1, 0.2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0.0]])
    )


def test_round_box_rounds_half_up_and_clamps_to_the_canvas():
    assert round_box((10.5, -3.0, 70.2, 63.49), 64) == (11, 0, 64, 63)


# ----------------------------------------------------------------------------------------------- GARAN
def _naive_garan_attended(unit: GARAN, visual: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
    """Loop over samples, heads and positions with the shared projections, as written in K."""
    batch, channels, height, width = visual.shape
    heads, c = unit.heads, channels // unit.heads
    d = sentence.shape[1] // heads
    out = torch.zeros_like(visual)
    conv = lambda layer, x: layer.weight[:, :, 0, 0] @ x + layer.bias
    for b in range(batch):
        for h in range(heads):
            q = unit.query.weight @ sentence[b, h * d : (h + 1) * d] + unit.query.bias
            positions = [visual[b, h * c : (h + 1) * c, i, j] for i in range(height) for j in range(width)]
            scores = torch.stack([conv(unit.key_collect, p) @ q for p in positions]) / math.sqrt(d)
            collect = torch.softmax(scores, 0)
            gathered = sum(a * conv(unit.value, p) for a, p in zip(collect, positions))
            for n, p in enumerate(positions):
                gate = torch.sigmoid(conv(unit.key_diffuse, p) @ q / math.sqrt(d))
                out[b, h * c : (h + 1) * c, n // width, n % width] = gate * gathered
    return out


def test_garan_matches_a_naive_reference_and_its_attention_is_normalised():
    # H != W, and the reference indexes position n as (n // W, n % W): SimREC's H/W transpose would fail here
    torch.manual_seed(0)
    unit = GARAN(channels=8, text_dim=6, heads=2).eval()
    visual, sentence = torch.randn(2, 8, 3, 5), torch.randn(2, 6)
    out = unit(visual, sentence)
    torch.testing.assert_close(
        out.attended, _naive_garan_attended(unit, visual, sentence), rtol=1e-4, atol=1e-5
    )
    assert out.collect.shape == (2, 2, 15) and out.diffuse.shape == (2, 2, 15)
    torch.testing.assert_close(out.collect.sum(-1), torch.ones(2, 2))
    assert ((out.diffuse > 0) & (out.diffuse < 1)).all()
    expected = F.leaky_relu(unit.norm(out.attended + visual), 0.1)
    torch.testing.assert_close(out.features, expected)


def test_garan_heads_share_projections():
    # swapping the two channel halves and the two halves of f_q swaps the heads' outputs
    torch.manual_seed(1)
    unit = GARAN(channels=8, text_dim=6, heads=2).eval()
    visual, sentence = torch.randn(1, 8, 4, 4), torch.randn(1, 6)
    swapped = unit(
        torch.cat([visual[:, 4:], visual[:, :4]], 1), torch.cat([sentence[:, 3:], sentence[:, :3]], 1)
    )
    plain = unit(visual, sentence)
    torch.testing.assert_close(swapped.attended, torch.cat([plain.attended[:, 4:], plain.attended[:, :4]], 1))


# ----------------------------------------------------------------------------------------------- CEM
def _naive_energy(f_s, f_c, l_s, l_c):
    e_s, e_c = torch.softmax(l_s.flatten(), 0), torch.softmax(l_c.flatten(), 0)
    fs, fc = f_s.flatten(1), f_c.flatten(1)
    total = 0.0
    for i in range(fs.shape[1]):
        for j in range(fc.shape[1]):
            cos = (fs[:, i] @ fc[:, j]) / (fs[:, i].norm() * fc[:, j].norm())
            total += e_s[i] * min(max((cos + 1) / 2, 1e-6), 1 - 1e-6) * e_c[j]
    return total


def test_cem_energy_matches_naive_sum_and_lies_in_zero_one():
    torch.manual_seed(0)
    f_s, f_c = torch.randn(3, 6, 4, 4), torch.randn(3, 6, 2, 2)
    l_s, l_c = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 2, 2)
    energy = consistency_energy(f_s, f_c, l_s, l_c)
    for b in range(3):
        torch.testing.assert_close(
            energy[b], torch.as_tensor(_naive_energy(f_s[b], f_c[b], l_s[b], l_c[b])).float()
        )
    assert ((energy > 0) & (energy < 1)).all()
    torch.testing.assert_close(cem_loss(energy), (-torch.log(energy + 1e-6)).mean())  # batch mean, as K


def _peaked_maps(agree: bool):
    """RES map 4x4 and REC map 2x2 whose energy convs peak at one position each."""
    torch.manual_seed(3)
    f_s, f_c = torch.randn(1, 4, 4, 4) * 0.1, torch.randn(1, 4, 2, 2) * 0.1
    # channel 0 (what the energy convs read) is high at both peaks; the other channels agree or oppose
    f_s[0, :, 1, 2] = torch.tensor([1.0, -5.0, 0.0, 0.0])
    f_c[0, :, 0, 1] = torch.tensor([1.0, -5.0 if agree else 5.0, 0.0, 0.0])
    return f_s, f_c


def test_cem_loss_is_lower_when_both_attentions_sit_on_agreeing_features():
    cem = ConsistencyEnergy(4)
    with torch.no_grad():  # the energy convs read channel 0, which is large only at the two peaks
        for conv in (cem.res_proj, cem.rec_proj):
            conv.weight.zero_()
            conv.weight[0, 0] = 20.0
            conv.bias.zero_()
    agree, disagree = cem(*_peaked_maps(True)), cem(*_peaked_maps(False))
    assert cem_loss(agree) < cem_loss(disagree)
    assert agree.item() > 0.99 and disagree.item() < 0.1  # T = (cos + 1) / 2 at the peaks: 1 vs 0.04


def test_cem_of_identical_one_hot_peaks_tends_to_zero_loss():
    f = torch.zeros(1, 3, 2, 2)
    f[0, :, 1, 1] = torch.tensor([1.0, 2.0, 3.0])
    logits = torch.full((1, 1, 2, 2), -1e4)
    logits[0, 0, 1, 1] = 0.0
    energy = consistency_energy(f, f, logits, logits)
    assert energy.item() == pytest.approx(1 - 1e-6, abs=1e-6)
    assert cem_loss(energy).item() < 1e-5


# ----------------------------------------------------------------------------------------------- YOLO
ANCHORS = torch.tensor([[10.0, 12.0], [24.0, 20.0], [40.0, 44.0]])


def test_yolo_targets_on_a_hand_computed_box():
    box = torch.tensor([[10.0, 20.0, 30.0, 50.0]])  # centre (20, 35), size 20 x 30, S = 64, g = 2
    t = build_yolo_targets(box, ANCHORS, 64)
    # shape IoUs: (10x12) 120/600 = 0.2, (24x20) 400/(600+480-400) = 0.588, (40x44) 600/1760 = 0.341
    torch.testing.assert_close(
        shape_iou(torch.tensor([[20.0, 30.0]]), ANCHORS), torch.tensor([[0.2, 400 / 680, 600 / 1760]])
    )
    assert t.object_mask.sum() == 1 and t.object_mask[0, 1, 0, 1] == 1  # row 1 (y 35), col 0 (x 20), anchor 1
    torch.testing.assert_close(t.xy[0, 1, 0, 1], torch.tensor([20 / 32, 35 / 32 - 1]))
    torch.testing.assert_close(t.wh[0, 1, 0, 1], torch.log(torch.tensor([20 / 24, 30 / 20])))
    torch.testing.assert_close(t.scale[0, 1, 0, 1], torch.tensor(2 - 20 * 30 / 64**2))
    assert t.valid.tolist() == [True]


def test_yolo_targets_keep_border_boxes_inside_the_grid_and_skip_degenerate_ones():
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [60.0, 60.0, 64.0, 64.0], [5.0, 5.0, 5.0, 9.0]])
    t = build_yolo_targets(boxes, ANCHORS, 64)
    assert t.object_mask[0].sum() == 1 and t.object_mask[0, 1, 1].sum() == 1  # centre (32, 32) -> cell (1, 1)
    assert t.object_mask[1, 1, 1, 0] == 1
    assert t.valid.tolist() == [True, True, False] and t.object_mask[2].sum() == 0


def test_yolo_decoding_inverts_the_targets():
    torch.manual_seed(0)
    xy1 = torch.rand(16, 2) * 150
    boxes = torch.cat([xy1, xy1 + 2 + torch.rand(16, 2) * 60], dim=1).clamp(max=160)
    t = build_yolo_targets(boxes, ANCHORS, 160)
    raw = torch.zeros(16, 5, 5, 3, 5)
    raw[..., :2] = torch.logit(t.xy.clamp(1e-6, 1 - 1e-6).double()).float()
    raw[..., 2:4] = t.wh
    decoded = decode_boxes(raw, ANCHORS)
    chosen = decoded[t.object_mask.bool()]
    torch.testing.assert_close(xywh_to_xyxy(chosen), boxes, atol=1e-4, rtol=0)
    raw[..., 4] = torch.where(t.object_mask.bool(), 5.0, -5.0)
    top, score = select_top_box(decoded, raw[..., 4])
    torch.testing.assert_close(top, boxes, atol=1e-4, rtol=0)
    torch.testing.assert_close(score, torch.sigmoid(torch.full((16,), 5.0)))
    torch.testing.assert_close(xyxy_to_xywh(xywh_to_xyxy(chosen)), chosen)


def test_ignore_mask_drops_negatives_that_already_match_the_gt():
    t = build_yolo_targets(torch.tensor([[8.0, 8.0, 40.0, 40.0]]), ANCHORS, 64)
    pred = torch.zeros(1, 2, 2, 3, 4)
    pred[..., :] = torch.tensor([100.0, 100.0, 1.0, 1.0])  # far away
    pred[0, 1, 1, 2] = torch.tensor([24.0, 24.0, 32.0, 32.0])  # the GT itself: IoU 1
    pred[0, 0, 1, 0] = torch.tensor([24.0, 24.0, 32.0, 16.0])  # IoU 0.5 exactly: ignored (K keeps iou < 0.5)
    keep = ignore_mask(pred, t, 0.5)
    assert keep[0, 1, 1, 2] == 0 and keep[0, 0, 1, 0] == 0 and keep.sum() == 10


def _naive_yolo_loss(raw, pred, t, ignore_iou=0.5, sigma=3.0):
    bce = lambda x, y: max(x, 0) - x * y + math.log1p(math.exp(-abs(x)))
    sl1 = lambda d: 0.5 * sigma**2 * d * d if abs(d) < 1 / sigma**2 else abs(d) - 0.5 / sigma**2
    keep = ignore_mask(pred, t, ignore_iou)
    xy = wh = conf = 0.0
    batch, g, _, a, _ = raw.shape
    for b in range(batch):
        for i in range(g):
            for j in range(g):
                for k in range(a):
                    r = raw[b, i, j, k].tolist()
                    if t.object_mask[b, i, j, k]:
                        s = t.scale[b, i, j, k].item()
                        xy += s * sum(bce(r[n], t.xy[b, i, j, k, n].item()) for n in range(2))
                        wh += s * 0.5 * sum(sl1(t.wh[b, i, j, k, n].item() - r[2 + n]) for n in range(2))
                        conf += bce(r[4], 1.0)
                    else:
                        conf += keep[b, i, j, k].item() * bce(r[4], 0.0)
    return xy / batch, wh / batch, conf / batch


def test_yolo_losses_match_a_naive_loop():
    torch.manual_seed(0)
    raw = torch.randn(3, 2, 2, 3, 5)
    pred = decode_boxes(raw, ANCHORS)
    t = build_yolo_targets(
        torch.tensor([[8.0, 8.0, 40.0, 40.0], [30.0, 2.0, 64.0, 20.0], [3, 3, 3, 3.0]]), ANCHORS, 64
    )
    got = yolo_losses(raw, pred, t)
    want = _naive_yolo_loss(raw, pred, t)
    for name, value in zip(("xy", "wh", "conf"), want):
        assert got[name].item() == pytest.approx(value, rel=1e-5), name


def test_smooth_l1_switches_at_one_over_sigma_squared():
    d = torch.tensor([0.0, 0.05, 1 / 9, 0.5, -2.0])
    torch.testing.assert_close(
        smooth_l1(d, 3.0), torch.tensor([0.0, 4.5 * 0.0025, 1 / 9 - 1 / 18, 0.5 - 1 / 18, 2 - 1 / 18])
    )


# ----------------------------------------------------------------------------------------------- anchors
def test_kmeans_anchors_recover_synthetic_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 10.0], [40.0, 20.0], [30.0, 80.0]])
    boxes = np.concatenate([c * (1 + 0.05 * rng.standard_normal((200, 2))) for c in centres])
    anchors = kmeans_anchors(boxes, k=3, seed=0)
    np.testing.assert_allclose(anchors, centres, rtol=0.03)  # sorted by area, as centres are
    np.testing.assert_array_equal(anchors, kmeans_anchors(boxes, k=3, seed=0))
    assert mean_best_iou(boxes, anchors) > 0.85
    assert mean_best_iou(boxes, anchors) > mean_best_iou(boxes, np.array([[5.0, 5], [6, 6], [7, 7]]))


def test_kmeans_anchors_rejects_bad_input():
    with pytest.raises(ValueError, match="at least k=3"):
        kmeans_anchors(np.ones((2, 2)), k=3)
    with pytest.raises(ValueError, match="positive"):
        kmeans_anchors(np.array([[1.0, 0.0], [2, 2], [3, 3]]), k=3)
