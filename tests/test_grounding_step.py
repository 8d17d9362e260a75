"""STEP RES head (REFERENCE_EXTRA.md §1.5) vs naive references: mask-weighted sentence, ConvGRU, head."""

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from hrem.config.grounding_options import STEPCfg
from hrem.grounding.options.step import (
    ConvGRUCell,
    STEPHead,
    coord_map,
    level_schedule,
    mask_weighted_sentence,
    text_heatmap,
)

TINY = STEPCfg(attention_dim=6, embed_dim=10, gru_hidden=4, context_width=0)
LEVEL_CHANNELS = (5, 7, 9)
LEVEL_SIZES = ((8, 10), (4, 5), (2, 3))  # fine -> coarse, odd aspect so H/W swaps show up
GRID = (8, 10)
TEXT_DIM = 12


def _sentence_inputs(gen: torch.Generator, batch=2, positions=7, length=5, att=4, dim=3):
    pixels = torch.randn(batch, positions, att, generator=gen, dtype=torch.float64)
    words_proj = torch.randn(batch, length, att, generator=gen, dtype=torch.float64)
    words = torch.randn(batch, length, dim, generator=gen, dtype=torch.float64)
    prev = torch.rand(batch, positions, generator=gen, dtype=torch.float64)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 3:] = False
    return pixels, words_proj, words, mask, prev


def _naive_sentence(pixels, words_proj, words, mask, prev, temperature):
    batch, positions, _ = pixels.shape
    out = torch.zeros(batch, words.shape[-1], dtype=words.dtype)
    for b in range(batch):
        real = [j for j in range(words.shape[1]) if mask[b, j]]
        weights = [torch.exp(prev[b, i] / temperature) for i in range(positions)]
        total = sum(weights)
        for i in range(positions):
            scores = [torch.exp(pixels[b, i] @ words_proj[b, j]) for j in real]
            norm = sum(scores)
            for score, j in zip(scores, real):
                out[b] += weights[i] / total * score / norm * words[b, j]
    return out


def _head_inputs(gen: torch.Generator, batch=2, length=5):
    levels = [torch.randn(batch, c, *s, generator=gen) for c, s in zip(LEVEL_CHANNELS, LEVEL_SIZES)]
    words = torch.randn(batch, length, TEXT_DIM, generator=gen)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 2:] = False
    return levels, words, mask


# ------------------------------------------------------------------------------- mask-weighted sentence
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_mask_weighted_sentence_matches_naive_loops(temperature):
    inputs = _sentence_inputs(torch.Generator().manual_seed(0))
    expected = _naive_sentence(*inputs, temperature)
    torch.testing.assert_close(mask_weighted_sentence(*inputs, temperature=temperature), expected)


def test_identical_word_states_give_that_state_exactly():
    # Both softmaxes sum to 1, so s_t is a convex combination of identical vectors (§1.5 test 1).
    pixels, words_proj, words, mask, prev = _sentence_inputs(torch.Generator().manual_seed(1))
    same = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    words = same.expand_as(words).clone()
    out = mask_weighted_sentence(pixels, words_proj, words, mask, prev)
    torch.testing.assert_close(out, same.expand(2, 3))


def test_padded_words_do_not_change_the_sentence():
    gen = torch.Generator().manual_seed(2)
    pixels, words_proj, words, mask, prev = _sentence_inputs(gen)
    base = mask_weighted_sentence(pixels, words_proj, words, mask, prev)
    pad = 4  # random, even large, pad values must get exactly zero weight
    words_pad = torch.cat([words, 100 * torch.randn(2, pad, 3, generator=gen, dtype=torch.float64)], 1)
    proj_pad = torch.cat([words_proj, 100 * torch.randn(2, pad, 4, generator=gen, dtype=torch.float64)], 1)
    mask_pad = torch.cat([mask, torch.zeros(2, pad, dtype=torch.bool)], 1)
    out = mask_weighted_sentence(pixels, proj_pad, words_pad, mask_pad, prev)
    torch.testing.assert_close(out, base, rtol=0, atol=1e-12)


def test_previous_mask_selects_pixels_at_low_temperature():
    # A one-hot P_{t-1} with a tiny temperature puts all pixel weight on pixel k: s = sum_j a_kj h_j.
    pixels, words_proj, words, mask, _ = _sentence_inputs(torch.Generator().manual_seed(3))
    prev = torch.zeros(2, 7, dtype=torch.float64)
    prev[:, 4] = 1.0
    out = mask_weighted_sentence(pixels, words_proj, words, mask, prev, temperature=1e-3)
    scores = torch.einsum("ba,bla->bl", pixels[:, 4], words_proj).masked_fill(~mask, float("-inf"))
    expected = torch.einsum("bl,bld->bd", torch.softmax(scores, -1), words)
    torch.testing.assert_close(out, expected)


def test_mask_weighted_sentence_rejects_mismatched_prev_mask():
    pixels, words_proj, words, mask, prev = _sentence_inputs(torch.Generator().manual_seed(4))
    with pytest.raises(ValueError, match="prev_mask"):
        mask_weighted_sentence(pixels, words_proj, words, mask, prev[:, :-1])


# ------------------------------------------------------------------------------------ coords, schedule, Q
def test_coord_map_matches_hu2016_loops():
    height, width = 3, 5
    out = coord_map(2, height, width, "cpu", torch.float64)
    assert out.shape == (2, 8, height, width)
    for h in range(height):
        for w in range(width):
            x_min, x_max = w / width * 2 - 1, (w + 1) / width * 2 - 1
            y_min, y_max = h / height * 2 - 1, (h + 1) / height * 2 - 1
            ref = [
                x_min,
                y_min,
                x_max,
                y_max,
                (x_min + x_max) / 2,
                (y_min + y_max) / 2,
                1 / width,
                1 / height,
            ]
            torch.testing.assert_close(out[1, :, h, w], torch.tensor(ref, dtype=torch.float64))


def test_level_schedule_cycles_levels_per_fold():
    assert level_schedule(3, 2, "coarse_to_fine") == [2, 1, 0, 2, 1, 0]
    assert level_schedule(3, 1, "fine_to_coarse") == [0, 1, 2]
    with pytest.raises(ValueError, match="level_order"):
        level_schedule(3, 1, "sideways")


def test_heatmap_is_zero_exactly_where_cosine_is_negative():
    sentence = torch.tensor([[1.0, 0.0]])
    # Unit vectors at angles 0, 60, 120, 180 degrees: cosines 1, 0.5, -0.5, -1.
    angles = torch.tensor([0.0, 60.0, 120.0, 180.0]).deg2rad()
    pixels = torch.stack([angles.cos(), angles.sin()])[None, :, None, :]  # [1, 2, 1, 4]
    q = text_heatmap(pixels, sentence)
    assert q.shape == (1, 1, 1, 4)
    torch.testing.assert_close(q.flatten(), torch.tensor([1.0, 0.5, 0.0, 0.0]))
    assert (q.flatten()[2:] == 0).all()


# -------------------------------------------------------------------------------------------- ConvGRU
def test_convgru_keeps_shapes():
    cell = ConvGRUCell(2, 4, kernel=3)
    out = cell(torch.randn(3, 2, 5, 6), torch.randn(3, 4, 5, 6))
    assert out.shape == (3, 4, 5, 6)


def test_convgru_large_update_bias_copies_the_state():
    torch.manual_seed(0)
    cell = ConvGRUCell(1, 4, kernel=3)
    with torch.no_grad():
        cell.update_bias.fill_(1e4)  # z = 1: the keep gate holds h_{t-1}
    h = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(cell(torch.randn(2, 1, 5, 5), h), h, rtol=0, atol=0)


def test_convgru_zero_input_state_and_biases_stay_zero():
    torch.manual_seed(0)
    cell = ConvGRUCell(1, 4, kernel=3)
    with torch.no_grad():
        for conv in (cell.w_r, cell.w_z, cell.w_h):
            conv.bias.zero_()
    h = cell(torch.zeros(2, 1, 5, 5), torch.zeros(2, 4, 5, 5))
    assert torch.equal(h, torch.zeros_like(h))
    with torch.no_grad():
        cell.w_h.bias.fill_(0.5)  # the check fails if any bias is live
    assert cell(torch.zeros(2, 1, 5, 5), torch.zeros(2, 4, 5, 5)).abs().min() > 0


def test_convgru_closed_keep_gate_returns_the_candidate():
    # Pins the convention: z = 0 -> h_t = h_hat = tanh(R_h(r h) + W_h x); with R_h = 0 only W_h x remains.
    torch.manual_seed(0)
    cell = ConvGRUCell(1, 4, kernel=3)
    with torch.no_grad():
        cell.update_bias.fill_(-1e4)
        cell.r_h.weight.zero_()
    x = torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(cell(x, torch.randn(2, 4, 5, 5)), torch.tanh(cell.w_h(x)))


# ------------------------------------------------------------------------------------------ STEP head
@pytest.mark.parametrize("gru_inputs", ["heatmap", "heatmap_and_mask"])
def test_head_ranges_and_shapes_for_every_step(gru_inputs):
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, folds=2, gru_inputs=gru_inputs)
    head = STEPHead(LEVEL_CHANNELS, TEXT_DIM, cfg)
    out = head(*_head_inputs(torch.Generator().manual_seed(0)), grid=GRID)
    steps = 2 * len(LEVEL_CHANNELS)
    assert len(out.probs) == len(out.heatmaps) == steps
    for prob, heat in zip(out.probs, out.heatmaps):
        assert prob.shape == heat.shape == (2, 1, *GRID)
        assert ((prob > 0) & (prob < 1)).all()
        assert ((heat >= 0) & (heat <= 1)).all()
    assert out.logits.shape == (2, 1, *GRID) and out.hidden.shape == (2, cfg.gru_hidden, *GRID)
    assert out.sentence.shape == (2, TEXT_DIM)
    torch.testing.assert_close(torch.sigmoid(out.logits), out.probs[-1])


def test_head_ignores_padded_words():
    torch.manual_seed(0)
    head = STEPHead(LEVEL_CHANNELS, TEXT_DIM, TINY)
    levels, words, mask = _head_inputs(torch.Generator().manual_seed(1))
    base = head(levels, words, mask, GRID)
    noisy = words.clone()
    noisy[~mask] = 50.0
    torch.testing.assert_close(head(levels, noisy, mask, GRID).logits, base.logits)


def test_head_uses_the_context_width_and_rejects_bad_levels():
    head = STEPHead(LEVEL_CHANNELS, TEXT_DIM, dataclasses.replace(TINY, context_width=3))
    assert [conv.out_channels for conv in head.context] == [3, 3, 3]
    wide = STEPHead(LEVEL_CHANNELS, TEXT_DIM, TINY)
    assert [conv.in_channels for conv in wide.context] == [c + 8 for c in LEVEL_CHANNELS]
    assert [conv.dilation for conv in wide.context] == [(3, 3)] * 3
    levels, words, mask = _head_inputs(torch.Generator().manual_seed(0))
    levels[1] = levels[1][:, :-1]
    with pytest.raises(ValueError, match=r"levels\[1\]"):
        wide(levels, words, mask, GRID)


def test_gradient_reaches_every_parameter_from_the_logits():
    torch.manual_seed(0)
    head = STEPHead(LEVEL_CHANNELS, TEXT_DIM, TINY)
    out = head(*_head_inputs(torch.Generator().manual_seed(2)), grid=GRID)
    (out.logits * torch.randn_like(out.logits)).sum().backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_head_overfits_one_square_mask():
    # §1.5 test 4: one synthetic sample (random maps and words, a square target) to IoU > 0.9.
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, attention_dim=8, embed_dim=16, gru_hidden=8)
    head = STEPHead(LEVEL_CHANNELS, TEXT_DIM, cfg)
    levels, words, mask = _head_inputs(torch.Generator().manual_seed(3), batch=1)
    target = torch.zeros(1, 1, *GRID)
    target[..., 2:6, 3:8] = 1.0
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.binary_cross_entropy_with_logits(head(levels, words, mask, GRID).logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        pred = head(levels, words, mask, GRID).probs[-1] > 0.5
    iou = (pred & target.bool()).sum() / (pred | target.bool()).sum()
    assert iou > 0.9


def test_shifted_heatmap_is_in_unit_range_and_never_dead():
    torch.manual_seed(0)
    pixels = torch.nn.functional.normalize(torch.randn(2, 6, 4, 5), dim=1).requires_grad_(True)
    sentence = torch.nn.functional.normalize(torch.randn(2, 6), dim=1)
    shifted = text_heatmap(pixels, -sentence.abs(), "shifted")
    assert shifted.shape == (2, 1, 4, 5)
    assert float(shifted.detach().min()) >= 0.0 and float(shifted.detach().max()) <= 1.0
    cosine = torch.einsum("behw,be->bhw", pixels.detach(), -sentence.abs())[:, None]
    torch.testing.assert_close(shifted.detach(), (cosine + 1) / 2)
    shifted.sum().backward()
    assert pixels.grad.abs().min() > 0  # the clipped form gives zero gradient wherever cos < 0
    with pytest.raises(ValueError, match="heatmap kind"):
        text_heatmap(pixels, sentence, "softplus")


def test_normalize_visual_makes_the_head_blind_to_feature_scale():
    # Hu et al. 2016 / RRN L2-normalise the visual map per pixel: scaling a level changes nothing
    torch.manual_seed(0)
    levels, words, mask = _head_inputs(torch.Generator().manual_seed(4))
    scaled = [x * 30.0 for x in levels]
    head = STEPHead(LEVEL_CHANNELS, TEXT_DIM, dataclasses.replace(TINY, normalize_visual=True))
    torch.testing.assert_close(head(scaled, words, mask, GRID).logits, head(levels, words, mask, GRID).logits)
    plain = STEPHead(LEVEL_CHANNELS, TEXT_DIM, TINY)
    assert not torch.allclose(plain(scaled, words, mask, GRID).logits, plain(levels, words, mask, GRID).logits)


def test_step_logits_are_the_logits_of_every_probability():
    torch.manual_seed(0)
    out = STEPHead(LEVEL_CHANNELS, TEXT_DIM, TINY)(*_head_inputs(torch.Generator().manual_seed(5)), grid=GRID)
    assert len(out.step_logits) == len(out.probs) == 3 and out.step_logits[-1] is out.logits
    for logits, prob in zip(out.step_logits, out.probs):
        torch.testing.assert_close(torch.sigmoid(logits), prob)
