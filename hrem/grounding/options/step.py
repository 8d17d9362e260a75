"""STEP's see-through-text RES head (REFERENCE_EXTRA.md §1.1, plugged into MCN as in §1.4).

Per step t = 1..T (T = folds x levels), at level l_t (fine -> coarse order of `levels`, visited per
`level_order`):
  v_i  = AtrousConv3x3_rate(F_l ++ coord8)                         context features of pixel i
  a_ij = softmax_j <W_a v_i, W_b h_j>   (real words only)           word attention per pixel
  w_i  = softmax_i P_{t-1}(i) / tau     (P_{t-1} bilinearly resized to level l_t)
  s_t  = sum_i w_i sum_j a_ij h_j                                   mask-weighted sentence vector
  Q_t  = relu(<phi(v_i), psi(s_t)>), phi/psi = L2norm(tanh(linear)) -> bilinear to the shared grid
  h_t  = ConvGRU([Q_t] or [Q_t, P_{t-1}], h_{t-1});  P_t = sigmoid(W_P h_t + b_P)
with h_0 = 0 and P_0 = `initial_mask` everywhere. The loss (BCE on P_T) lives with the caller; the head
returns the logits of P_T, h_T (the CEM / bottom-up feature) and s_T (optionally fed to the REC GARAN).
There is no official code; every open point is a field of `STEPCfg` (see §1.1 [assumption] items).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from hrem.config.grounding_options import STEPCfg

COORD_CHANNELS = 8  # RRN / Hu-2016 spatial feature width


def coord_map(batch: int, height: int, width: int, device, dtype) -> torch.Tensor:
    """[B, 8, H, W]: per cell (x_min, y_min, x_max, y_max, x_ctr, y_ctr) in [-1, 1], then 1/W, 1/H.

    Same layout as Hu et al. 2016 `generate_spatial_batch` (cell w spans [w/W, (w+1)/W] * 2 - 1).
    """
    xs = torch.arange(width, device=device, dtype=dtype)
    ys = torch.arange(height, device=device, dtype=dtype)
    x_min, x_max = xs / width * 2 - 1, (xs + 1) / width * 2 - 1
    y_min, y_max = ys / height * 2 - 1, (ys + 1) / height * 2 - 1
    along_x = [x_min, x_max, (x_min + x_max) / 2]
    along_y = [y_min, y_max, (y_min + y_max) / 2]
    planes = [
        along_x[0][None, :].expand(height, width),
        along_y[0][:, None].expand(height, width),
        along_x[1][None, :].expand(height, width),
        along_y[1][:, None].expand(height, width),
        along_x[2][None, :].expand(height, width),
        along_y[2][:, None].expand(height, width),
        torch.full((height, width), 1.0 / width, device=device, dtype=dtype),
        torch.full((height, width), 1.0 / height, device=device, dtype=dtype),
    ]
    return torch.stack(planes)[None].expand(batch, -1, -1, -1)


def level_schedule(num_levels: int, folds: int, order: str) -> list[int]:
    """Level index (into the fine -> coarse `levels`) used at each of the T = folds x levels steps."""
    if order == "coarse_to_fine":
        one_fold = list(range(num_levels - 1, -1, -1))
    elif order == "fine_to_coarse":
        one_fold = list(range(num_levels))
    else:
        raise ValueError(f"step.level_order: expected 'coarse_to_fine' or 'fine_to_coarse', found {order!r}")
    return one_fold * folds


def mask_weighted_sentence(
    pixels: torch.Tensor,
    words_proj: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    prev_mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """s_t [B, D] = sum_i w_i sum_j a_ij h_j (see the module docstring for a_ij and w_i).

    pixels [B, HW, A] (W_a v_i), words_proj [B, L, A] (W_b h_j), words [B, L, D] (h_j),
    word_mask [B, L] (True = real word), prev_mask [B, HW] (P_{t-1} at this level).
    """
    _check_sentence_inputs(pixels, words_proj, words, word_mask, prev_mask)
    scores = torch.bmm(pixels, words_proj.transpose(1, 2))  # [B, HW, L]
    # A finite fill (not -inf) keeps an all-pad sentence finite (uniform over pads) instead of NaN;
    # with at least one real word the pad weights still underflow to exactly 0.
    scores = scores.masked_fill(~word_mask.bool()[:, None, :], torch.finfo(scores.dtype).min)
    attention = torch.softmax(scores, dim=-1)
    pixel_weights = torch.softmax(prev_mask / temperature, dim=-1)  # [B, HW]
    # sum_i w_i sum_j a_ij h_j == sum_j (sum_i w_i a_ij) h_j: never materialise the [B, HW, D] tensor.
    word_weights = torch.bmm(pixel_weights[:, None, :], attention)  # [B, 1, L]
    return torch.bmm(word_weights, words).squeeze(1)


def _check_sentence_inputs(
    pixels: torch.Tensor,
    words_proj: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    prev_mask: torch.Tensor,
) -> None:
    batch, positions, dim = pixels.shape
    length = words.shape[1]
    expected = {
        "words_proj": (words_proj, (batch, length, dim)),
        "word_mask": (word_mask, (batch, length)),
        "prev_mask": (prev_mask, (batch, positions)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"mask_weighted_sentence: {name} expected shape {shape}, found {tuple(tensor.shape)}"
            )
    if words.dim() != 3 or words.shape[0] != batch:
        raise ValueError(
            f"mask_weighted_sentence: words expected [{batch}, L, D], found {tuple(words.shape)}"
        )


def text_heatmap(pixel_embed: torch.Tensor, sentence_embed: torch.Tensor, kind: str = "clipped") -> torch.Tensor:
    """Q [B, 1, H, W] in [0, 1] from unit vectors phi [B, E, H, W] and psi [B, E]: max(0, cos) (the paper,
    "clipped") or (cos + 1) / 2 ("shifted", an hrem option: a level whose cosines are all negative gets no
    gradient through the clipped form and stays dead, which happened on ShapesRef)."""
    cosine = torch.einsum("behw,be->bhw", pixel_embed, sentence_embed)[:, None]
    if kind == "shifted":
        return (cosine + 1.0) / 2.0
    if kind != "clipped":
        raise ValueError(f"heatmap kind: expected 'clipped' or 'shifted', found {kind!r}")
    return torch.relu(cosine)


class ConvGRUCell(nn.Module):
    """ConvGRU of §1.1 with z as the *keep* gate: h_t = z * h_{t-1} + (1 - z) * h_hat.

    (Penn-Lam / Group-WSSS write (1 - z) h + z h_hat: the same model with z relabelled.) Input convs W_*
    carry the biases b_*; recurrent convs R_* have none, so "all biases zero" means the W_* biases.
    `update_bias` is b_z: a large positive value makes z -> 1 and the cell copies h_{t-1}.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"ConvGRUCell: kernel expected odd (for 'same' padding), found {kernel}")
        self.hidden = hidden
        pad = kernel // 2
        self.w_r, self.w_z, self.w_h = (nn.Conv2d(in_channels, hidden, kernel, padding=pad) for _ in range(3))
        self.r_r, self.r_z, self.r_h = (
            nn.Conv2d(hidden, hidden, kernel, padding=pad, bias=False) for _ in range(3)
        )

    @property
    def update_bias(self) -> nn.Parameter:
        return self.w_z.bias

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if h.shape[1] != self.hidden or h.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"ConvGRUCell: state expected [B, {self.hidden}, {x.shape[-2]}, {x.shape[-1]}], "
                f"found {tuple(h.shape)}"
            )
        reset = torch.sigmoid(self.r_r(h) + self.w_r(x))
        keep = torch.sigmoid(self.r_z(h) + self.w_z(x))
        candidate = torch.tanh(self.r_h(reset * h) + self.w_h(x))
        return keep * h + (1 - keep) * candidate


@dataclass(frozen=True)
class STEPOutput:
    logits: torch.Tensor  # [B, 1, H', W'] logit of P_T (W_P h_T + b_P), the RES mask logits
    hidden: torch.Tensor  # [B, gru_hidden, H', W'] h_T
    sentence: torch.Tensor  # [B, D] s_T, the last mask-attended sentence vector
    probs: tuple[torch.Tensor, ...]  # P_1..P_T, each [B, 1, H', W']
    heatmaps: tuple[torch.Tensor, ...]  # Q_1..Q_T on the ConvGRU grid, each [B, 1, H', W'] in [0, 1]
    step_logits: tuple[torch.Tensor, ...]  # the logits of P_1..P_T (deep supervision reads them)


@dataclass(frozen=True)
class _LevelFeatures:
    """What a level contributes at every step it is visited (computed once per forward)."""

    pixels: torch.Tensor  # [B, H_l W_l, A] W_a v_i
    embed: torch.Tensor  # [B, E, H_l, W_l] phi(v_i), unit vectors over E
    size: tuple[int, int]


class STEPHead(nn.Module):
    """STEP RES head over `levels` (fine -> coarse) and per-word text states."""

    def __init__(self, level_channels: tuple[int, ...], text_dim: int, cfg: STEPCfg) -> None:
        super().__init__()
        if not level_channels:
            raise ValueError("STEPHead: level_channels expected at least one level, found none")
        cfg.validate()
        self.cfg = cfg
        self.level_channels = tuple(level_channels)
        self.text_dim = text_dim
        widths = [cfg.context_width or c + COORD_CHANNELS for c in level_channels]
        rate = cfg.context_dilation
        self.context = nn.ModuleList(
            nn.Conv2d(c + COORD_CHANNELS, w, 3, padding=rate, dilation=rate)
            for c, w in zip(level_channels, widths)
        )
        self.pixel_attention = nn.ModuleList(nn.Conv2d(w, cfg.attention_dim, 1) for w in widths)  # W_a
        self.word_attention = nn.Linear(text_dim, cfg.attention_dim)  # W_b
        self.pixel_embed = nn.ModuleList(nn.Conv2d(w, cfg.embed_dim, 1) for w in widths)  # phi
        self.sentence_embed = nn.Linear(text_dim, cfg.embed_dim)  # psi
        gru_in = 1 if cfg.gru_inputs == "heatmap" else 2
        self.gru = ConvGRUCell(gru_in, cfg.gru_hidden, cfg.gru_kernel)
        self.mask_out = nn.Conv2d(cfg.gru_hidden, 1, 1)  # W_P, shared over t

    def forward(
        self,
        levels: Sequence[torch.Tensor],
        words: torch.Tensor,
        word_mask: torch.Tensor,
        grid: tuple[int, int],
    ) -> STEPOutput:
        self._check_inputs(levels, words, word_mask, grid)
        feats = [self._level_features(i, x) for i, x in enumerate(levels)]
        words_proj = self.word_attention(words)
        batch, ref = words.shape[0], levels[0]
        prob = torch.full((batch, 1, *grid), self.cfg.initial_mask, device=ref.device, dtype=ref.dtype)
        hidden = torch.zeros(batch, self.cfg.gru_hidden, *grid, device=ref.device, dtype=ref.dtype)
        probs, heatmaps, step_logits = [], [], []
        for index in level_schedule(len(levels), self.cfg.folds, self.cfg.level_order):
            level = feats[index]
            prev = F.interpolate(prob, size=level.size, mode="bilinear", align_corners=False).flatten(1)
            sentence = mask_weighted_sentence(
                level.pixels, words_proj, words, word_mask, prev, self.cfg.pixel_temperature
            )
            psi = F.normalize(torch.tanh(self.sentence_embed(sentence)), dim=-1)
            heat = F.interpolate(
                text_heatmap(level.embed, psi, self.cfg.heatmap), size=grid, mode="bilinear", align_corners=False
            )
            gru_input = heat if self.cfg.gru_inputs == "heatmap" else torch.cat([heat, prob], dim=1)
            hidden = self.gru(gru_input, hidden)
            logits = self.mask_out(hidden)
            prob = torch.sigmoid(logits)
            probs.append(prob)
            heatmaps.append(heat)
            step_logits.append(logits)
        return STEPOutput(logits, hidden, sentence, tuple(probs), tuple(heatmaps), tuple(step_logits))

    def _level_features(self, index: int, x: torch.Tensor) -> _LevelFeatures:
        batch, _, height, width = x.shape
        if self.cfg.normalize_visual:
            x = F.normalize(x, dim=1)
        coords = coord_map(batch, height, width, x.device, x.dtype)
        v = self.context[index](torch.cat([x, coords], dim=1))
        pixels = self.pixel_attention[index](v).flatten(2).transpose(1, 2)
        embed = F.normalize(torch.tanh(self.pixel_embed[index](v)), dim=1)
        return _LevelFeatures(pixels, embed, (height, width))

    def _check_inputs(
        self,
        levels: Sequence[torch.Tensor],
        words: torch.Tensor,
        word_mask: torch.Tensor,
        grid: tuple[int, int],
    ) -> None:
        if len(levels) != len(self.level_channels):
            raise ValueError(
                f"STEPHead: levels expected {len(self.level_channels)} maps, found {len(levels)}"
            )
        for i, (x, channels) in enumerate(zip(levels, self.level_channels)):
            if x.dim() != 4 or x.shape[1] != channels or x.shape[0] != words.shape[0]:
                raise ValueError(
                    f"STEPHead: levels[{i}] expected [{words.shape[0]}, {channels}, H, W], "
                    f"found {tuple(x.shape)}"
                )
        if words.dim() != 3 or words.shape[-1] != self.text_dim:
            raise ValueError(f"STEPHead: words expected [B, L, {self.text_dim}], found {tuple(words.shape)}")
        if tuple(word_mask.shape) != tuple(words.shape[:2]):
            raise ValueError(
                f"STEPHead: word_mask expected shape {tuple(words.shape[:2])}, found {tuple(word_mask.shape)}"
            )
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"STEPHead: grid expected (H', W') with positive sizes, found {grid}")


__all__ = [
    "ConvGRUCell",
    "STEPHead",
    "STEPOutput",
    "coord_map",
    "level_schedule",
    "mask_weighted_sentence",
    "text_heatmap",
]
