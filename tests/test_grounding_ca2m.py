"""CA2M fusion and the direct box head (REFERENCE_EXTRA.md §3.5 tests 4-5) against naive references."""

import math

import pytest
import torch
from torch.nn import functional as F

from hrem.config.grounding_options import CA2MCfg
from hrem.grounding.options.box_regression import DirectBoxHead, cxcywh_to_xyxy, giou_loss, l1_box_loss
from hrem.grounding.options.ca2m import CA2MLayer, MultiGrainedCA2M, sine_position_2d

DIM, HEADS = 8, 2


def _mask(lengths, total):
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


def _layer(seed=0):
    torch.manual_seed(seed)
    return CA2MLayer(DIM, HEADS, ffn_dim=16).eval()


def _inputs(seed=1, batch=2, nv=5, nl=4, lengths=(4, 2)):
    generator = torch.Generator().manual_seed(seed)
    visual = torch.randn(batch, nv, DIM, generator=generator)
    text = torch.randn(batch, nl, DIM, generator=generator)
    return visual, text, _mask(lengths, nl)


def _scramble_pads(text, mask, seed=7):
    noise = torch.randn(text.shape, generator=torch.Generator().manual_seed(seed)) * 10
    return torch.where(mask[..., None], text, noise)


# ------------------------------------------------------------------------------- naive CA2M layer reference
def _linear(layer, x):
    return x @ layer.weight.T + layer.bias


def _naive_attention(attn, query, source, mask):
    batch, nq, dim = query.shape
    head = dim // attn.heads
    q, k, v = _linear(attn.query, query), _linear(attn.key, source), _linear(attn.value, source)
    out = torch.zeros(batch, nq, dim)
    for b in range(batch):
        for h in range(attn.heads):
            cols = slice(h * head, (h + 1) * head)
            scores = q[b, :, cols] @ k[b, :, cols].T / math.sqrt(head)
            if mask is not None:
                scores = scores.masked_fill(~mask[b][None, :], float("-inf"))
            out[b, :, cols] = torch.softmax(scores, dim=1) @ v[b, :, cols]
    return _linear(attn.out, out)


def _naive_ffn(ffn, x):
    return _linear(ffn[3], torch.relu(_linear(ffn[0], x)))


def _naive_layer(layer, visual, text, mask):
    def norm(module, x):
        return F.layer_norm(x, (DIM,), module.weight, module.bias, module.eps)

    visual = norm(layer.visual_norm1, visual + _naive_attention(layer.visual_attn, visual, text, mask))
    visual = norm(layer.visual_norm2, visual + _naive_ffn(layer.visual_ffn, visual))
    text = norm(layer.text_norm1, text + _naive_attention(layer.text_attn, text, visual, None))
    text = norm(layer.text_norm2, text + _naive_ffn(layer.text_ffn, text))
    return visual, text


# ------------------------------------------------------------------------------------------- 4. CA2M layer
def test_ca2m_layer_keeps_shapes_and_matches_the_naive_formula():
    layer = _layer()
    visual, text, mask = _inputs()
    with torch.no_grad():
        out_visual, out_text = layer(visual, text, mask)
        ref_visual, ref_text = _naive_layer(layer, visual, text, mask)
    assert out_visual.shape == visual.shape and out_text.shape == text.shape
    torch.testing.assert_close(out_visual, ref_visual, atol=1e-5, rtol=1e-5)
    real = mask[..., None].expand_as(out_text)
    torch.testing.assert_close(out_text[real], ref_text[real], atol=1e-5, rtol=1e-5)


def test_ca2m_layer_ignores_the_values_of_padded_text_tokens():
    layer = _layer()
    visual, text, mask = _inputs()
    with torch.no_grad():
        base_visual, base_text = layer(visual, text, mask)
        new_visual, new_text = layer(visual, _scramble_pads(text, mask), mask)
    torch.testing.assert_close(new_visual, base_visual, atol=1e-6, rtol=0)
    torch.testing.assert_close(new_text[mask], base_text[mask], atol=1e-6, rtol=0)
    assert not torch.allclose(new_text[~mask], base_text[~mask])  # pad queries did see the new values


def test_ca2m_text_update_reads_the_updated_visual_tokens():
    layer = _layer()
    visual, text, mask = _inputs()
    with torch.no_grad():
        _, base_text = layer(visual, text, mask)
        layer.visual_ffn[3].weight.add_(0.5 * torch.randn_like(layer.visual_ffn[3].weight))
        _, new_text = layer(visual, text, mask)
    # The visual FFN acts after the visual attention; the text can only notice it through F_v'.
    assert (new_text[mask] - base_text[mask]).abs().max() > 1e-3


def test_ca2m_layer_accepts_int_masks_and_rejects_bad_ones():
    layer = _layer()
    visual, text, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(layer(visual, text, mask.long())[0], layer(visual, text, mask)[0])
    with pytest.raises(ValueError, match="text_mask"):
        layer(visual, text, mask[:, :3])
    with pytest.raises(ValueError, match="at least one real"):
        layer(visual, text, torch.tensor([[True] * 4, [False] * 4]))


# ----------------------------------------------------------------------------------------- sine positions
def _naive_sine(height, width, dim):
    half = dim // 2
    out = torch.zeros(height * width, dim, dtype=torch.float64)
    for y in range(height):
        for x in range(width):
            for axis, (coord, size) in enumerate(((y, height), (x, width))):
                position = (coord + 1) / (size + 1e-6) * 2 * math.pi
                for i in range(half):
                    angle = position / 10000 ** (2 * (i // 2) / half)
                    out[y * width + x, axis * half + i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return out


def test_sine_position_2d_matches_detr_and_rejects_bad_widths():
    got = sine_position_2d(3, 5, 12, device="cpu", dtype=torch.float64)
    torch.testing.assert_close(got, _naive_sine(3, 5, 12), atol=1e-6, rtol=0)
    assert sine_position_2d(2, 2, 8, "cpu", torch.float16).dtype == torch.float16
    with pytest.raises(ValueError, match="dim"):
        sine_position_2d(2, 2, 6, "cpu", torch.float32)


# --------------------------------------------------------------------------------------- MultiGrainedCA2M
CFG = CA2MCfg(text_layers=(1, 2), group_width=8, group_layers=1, fusion_width=12, fusion_layers=1, heads=2,
              ffn_mult=2)
WIDTHS = (12, 20)
LENGTHS = (6, 3)


def _fusion(cfg=CFG, seed=0):
    torch.manual_seed(seed)
    return MultiGrainedCA2M((8, 16, 32), WIDTHS, cfg, max_tokens=10).eval()


def _multi_inputs(seed=3):
    generator = torch.Generator().manual_seed(seed)
    c3 = torch.randn(2, 8, 16, 16, generator=generator)
    c4 = torch.randn(2, 16, 8, 8, generator=generator)
    c5 = torch.randn(2, 32, 4, 4, generator=generator)
    levels = [torch.randn(2, 6, width, generator=generator) for width in WIDTHS]
    return c3, c4, c5, levels, _mask(LENGTHS, 6)


@pytest.mark.parametrize("fusion_width", [12, 16])  # 16 = 2 x group_width: no bridge linear
def test_multi_grained_ca2m_shapes(fusion_width):
    cfg = CA2MCfg(**{**CFG.__dict__, "fusion_width": fusion_width})
    with torch.no_grad():
        out = _fusion(cfg)(*_multi_inputs())
    assert out.visual.shape == (2, fusion_width, 8, 8)
    assert out.text.shape == (2, 6, fusion_width)
    assert out.cls.shape == (2, fusion_width)
    torch.testing.assert_close(out.cls, out.text[:, 0])


def test_visual_tokens_resample_to_stride_16_and_add_the_sine_encoding():
    model = _fusion()
    c3, c4, c5, _, _ = _multi_inputs()
    with torch.no_grad():
        tokens = model.visual_tokens(c3, c4, c5)
        expected = torch.zeros_like(tokens)
        sine = _naive_sine(8, 8, 12).float()
        for y in range(8):
            for x in range(8):
                pooled = c3[:, :, 2 * y:2 * y + 2, 2 * x:2 * x + 2].mean(dim=(2, 3))
                cell = torch.cat((pooled, c4[:, :, y, x], c5[:, :, y // 2, x // 2]), dim=1)
                expected[:, y * 8 + x] = _linear(model.visual_in, cell) + sine[y * 8 + x]
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-5)


def test_visual_map_is_the_last_layers_tokens_in_row_major_order():
    model = _fusion()
    captured = {}
    model.fusion[-1].register_forward_hook(lambda _m, _i, output: captured.update(visual=output[0]))
    with torch.no_grad():
        out = model(*_multi_inputs())
    tokens = captured["visual"]  # [B, 64, C]
    for y, x in ((0, 0), (0, 5), (3, 1), (7, 7)):
        torch.testing.assert_close(out.visual[:, :, y, x], tokens[:, y * 8 + x])


def test_multi_grained_ca2m_ignores_padded_text_end_to_end():
    model = _fusion()
    c3, c4, c5, levels, mask = _multi_inputs()
    with torch.no_grad():
        base = model(c3, c4, c5, levels, mask)
        new = model(c3, c4, c5, [_scramble_pads(level, mask, seed=i) for i, level in enumerate(levels)], mask)
    torch.testing.assert_close(new.visual, base.visual, atol=1e-6, rtol=0)
    torch.testing.assert_close(new.text[mask], base.text[mask], atol=1e-6, rtol=0)
    torch.testing.assert_close(new.cls, base.cls, atol=1e-6, rtol=0)
    # ...while a real token does matter.
    levels[1][1, 2] += 1.0
    with torch.no_grad():
        moved = model(c3, c4, c5, levels, mask)
    assert (moved.visual[1] - base.visual[1]).abs().max() > 1e-4


def test_every_parameter_gets_a_gradient():
    model = _fusion().train()
    out = model(*_multi_inputs())
    (out.visual.sum() + out.text.sum()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_multi_grained_ca2m_rejects_mismatched_inputs():
    model = _fusion()
    c3, c4, c5, levels, mask = _multi_inputs()
    with pytest.raises(ValueError, match="c3/c4/c5"):
        model(c3[:, :, :8, :8], c4, c5, levels, mask)
    with pytest.raises(ValueError, match=r"text_levels\[1\]"):
        model(c3, c4, c5, [levels[0], levels[0]], mask)
    with pytest.raises(ValueError, match="text_levels"):
        model(c3, c4, c5, levels[:1], mask)
    with pytest.raises(ValueError, match="max_tokens"):
        long = [torch.randn(2, 11, width) for width in WIDTHS]
        model(c3, c4, c5, long, torch.ones(2, 11, dtype=torch.bool))
    with pytest.raises(ValueError, match="text_widths"):
        MultiGrainedCA2M((8, 16, 32), (), CFG, max_tokens=10)


# ------------------------------------------------------------------------------------------------ 5. GIoU
def _naive_giou_loss(a, b, eps=1e-7):
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    iw, ih = min(ax2, bx2) - max(ax1, bx1), min(ay2, by2) - max(ay1, by1)
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))  # smallest enclosing box
    return 1 - (inter / (union + eps) - (hull - union) / (hull + eps))


def _random_xyxy(generator, count):
    centre = torch.rand(count, 2, generator=generator)
    size = torch.rand(count, 2, generator=generator) * 0.6 + 0.01
    return cxcywh_to_xyxy(torch.cat((centre, size), dim=1))


def test_giou_loss_matches_a_naive_per_box_reference():
    generator = torch.Generator().manual_seed(0)
    pred, target = _random_xyxy(generator, 200), _random_xyxy(generator, 200)
    pred[:5] = target[:5]  # identical
    pred[5] = torch.tensor([0.2, 0.2, 0.3, 0.3])  # contained in target
    target[5] = torch.tensor([0.1, 0.1, 0.6, 0.6])
    pred[6], target[6] = torch.tensor([0.0, 0.0, 0.5, 0.5]), torch.tensor([0.5, 0.0, 1.0, 0.5])  # touching
    got = giou_loss(pred, target)
    expected = torch.tensor([_naive_giou_loss(p.tolist(), t.tolist()) for p, t in zip(pred, target)])
    assert got.shape == (200,)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert bool((got >= 0).all()) and bool((got < 2).all())


def test_giou_loss_numeric_properties():
    box = torch.tensor([[0.1, 0.2, 0.5, 0.9]])
    assert giou_loss(box, box).item() == pytest.approx(0.0, abs=1e-6)
    # A = [0,0,2,2], B = [1,1,3,3]: IoU 1/7, C = [0,0,3,3] so the penalty is 2/9; loss = 1 - 1/7 + 2/9 = 68/63.
    hand = giou_loss(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
    assert hand.item() == pytest.approx(68 / 63, rel=1e-6)
    far = [giou_loss(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[s, s, s + 1, s + 1]])).item()
           for s in (2.0, 10.0, 1000.0)]
    assert far[0] < far[1] < far[2] < 2.0 and far[2] > 1.999


def test_giou_gradient_is_finite_for_identical_boxes():
    pred = torch.tensor([[0.1, 0.2, 0.5, 0.9]], requires_grad=True)
    giou_loss(pred, pred.detach().clone()).sum().backward()
    assert bool(torch.isfinite(pred.grad).all())


def test_box_conversion_and_l1_loss_by_hand():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]])
    expected = torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.0, 0.8, 0.2, 1.0]])
    torch.testing.assert_close(cxcywh_to_xyxy(boxes), expected)
    other = torch.tensor([[0.4, 0.6, 0.2, 0.1], [0.1, 0.9, 0.2, 0.2]])
    torch.testing.assert_close(l1_box_loss(boxes, other), torch.tensor([0.1 + 0.1 + 0.0 + 0.3, 0.0]))
    with pytest.raises(ValueError, match="target_cxcywh"):
        l1_box_loss(boxes, other[:1])
    with pytest.raises(ValueError, match="pred_xyxy"):
        giou_loss(boxes[:, :3], boxes[:, :3])


def test_direct_box_head_outputs_normalised_boxes():
    torch.manual_seed(0)
    head = DirectBoxHead(in_dim=12, hidden=16)
    boxes = head(torch.randn(5, 12) * 3)
    assert boxes.shape == (5, 4)
    assert bool((boxes > 0).all()) and bool((boxes < 1).all())
    assert len([m for m in head.mlp if isinstance(m, torch.nn.Linear)]) == 3
    with pytest.raises(ValueError, match="cls"):
        head(torch.randn(5, 11))


def test_mean_first_token_matches_a_naive_loop_and_feeds_the_groups():
    from hrem.grounding.options.ca2m import with_mean_first_token
    c3, c4, c5, levels, mask = _multi_inputs()
    out = with_mean_first_token(levels[0], mask)
    for b, length in enumerate(LENGTHS):
        torch.testing.assert_close(out[b, 0], levels[0][b, :length].mean(0))
        torch.testing.assert_close(out[b, 1:], levels[0][b, 1:])
    torch.manual_seed(0)
    mean_model = _fusion(CA2MCfg(**{**CFG.__dict__, "cls_token": "mean"}))
    with torch.no_grad():
        replaced = [with_mean_first_token(level, mask) for level in levels]
        mean_model.cls_token = "token"
        expected = mean_model(c3, c4, c5, replaced, mask).cls
        mean_model.cls_token = "mean"
        torch.testing.assert_close(mean_model(c3, c4, c5, levels, mask).cls, expected)
