"""Multi-grained CA2M cross-attention fusion (Miao et al., arXiv 2204.09957); REFERENCE_EXTRA §3.1, §3.4(a).

A CA2M layer is post-LN with two cross-attentions and no self-attention: the visual tokens attend to the
text, then the text attends to the *updated* visual tokens. `MultiGrainedCA2M` resamples C3/C4/C5 to the
stride-16 grid, projects them to F_v^0, runs one stack of CA2M layers per text granularity (the grouping
stage, width C0) and then a shared stack on the channel-concatenated groups (the fusion stage, width C1).

    fusion = MultiGrainedCA2M((c3_ch, c4_ch, c5_ch), (768, 768, 768), CA2MCfg(), max_tokens=40)
    out = fusion(c3, c4, c5, [bert_layer2, bert_layer4, bert_layer6], attention_mask)
    out.visual  # [B, 768, H/16, W/16] -> MCN's fused map F_m;  out.cls  # [B, 768] -> f_q or a box head

Heads, FFN width and the positional encodings are [assumption]s of the reference (CA2MCfg fields or fixed
here as DETR / TransVG do: 2-D sine on the visual tokens, learned 1-D on the text, ReLU FFN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hrem.config.grounding_options import CA2MCfg


def _real_token_mask(text_mask: Tensor, text: Tensor) -> Tensor:
    """Check `text_mask` against `text` [B, L, d] and return it as bool (True = real token)."""
    if text_mask.shape != text.shape[:2]:
        raise ValueError(f"text_mask: expected shape {tuple(text.shape[:2])}, found {tuple(text_mask.shape)}")
    mask = text_mask.to(torch.bool)  # accept HF-style int attention masks too
    # A sample with no real token would make every visual query attend to nothing (softmax of all -inf = NaN).
    if not bool(mask.any(dim=1).all()):
        raise ValueError("text_mask: expected at least one real (True) token per sample, found none")
    return mask


class CrossAttention(nn.Module):
    """Multi-head softmax((X_q W_q)(X_s W_k)^T / sqrt(d_head)) (X_s W_v) W_o, optional key pad mask."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"CrossAttention dim: expected a multiple of heads={heads}, found {dim}")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        return x.view(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)  # [B, h, N, d_head]

    def forward(self, query: Tensor, source: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """query [B, Nq, d], source [B, Ns, d], key_mask [B, Ns] bool (True = attend) -> [B, Nq, d]."""
        # SDPA's bool mask means "may attend"; broadcast over heads and queries. Masked keys get -inf scores,
        # so their weights are exactly 0 and pad values cannot leak into the output.
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        mixed = F.scaled_dot_product_attention(
            self._split(self.query(query)),
            self._split(self.key(source)),
            self._split(self.value(source)),
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        batch, _, tokens, _ = mixed.shape
        return self.out(mixed.transpose(1, 2).reshape(batch, tokens, -1))


def _ffn(dim: int, ffn_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))


class CA2MLayer(nn.Module):
    """One CA2M layer (§3.1), post-LN: visual <- text attention + FFN, then text <- updated visual + FFN."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.visual_attn = CrossAttention(dim, heads, dropout)
        self.visual_norm1 = nn.LayerNorm(dim)
        self.visual_ffn = _ffn(dim, ffn_dim, dropout)
        self.visual_norm2 = nn.LayerNorm(dim)
        self.text_attn = CrossAttention(dim, heads, dropout)
        self.text_norm1 = nn.LayerNorm(dim)
        self.text_ffn = _ffn(dim, ffn_dim, dropout)
        self.text_norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, visual: Tensor, text: Tensor, text_mask: Tensor, validated: bool = False
                ) -> tuple[Tensor, Tensor]:
        """visual [B, Nv, d], text [B, Nl, d], text_mask [B, Nl] (True = real) -> same shapes.

        `validated`: the caller already checked the inputs and passes a bool mask (the mask check syncs
        with the device, so a stack of layers should not repeat it).

        Outputs at pad text positions are meaningless (pad queries still attend); nothing else reads them.
        """
        mask = text_mask if validated else self._check(visual, text, text_mask)
        visual = self.visual_norm1(visual + self.drop(self.visual_attn(visual, text, mask)))
        visual = self.visual_norm2(visual + self.drop(self.visual_ffn(visual)))
        # The language update reads the visual tokens just computed (F_v'), not the layer's input.
        text = self.text_norm1(text + self.drop(self.text_attn(text, visual)))
        text = self.text_norm2(text + self.drop(self.text_ffn(text)))
        return visual, text

    @staticmethod
    def _check(visual: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        if visual.dim() != 3 or text.dim() != 3 or visual.shape[0] != text.shape[0]:
            raise ValueError(f"CA2MLayer: expected visual [B, Nv, d] and text [B, Nl, d], found "
                             f"{tuple(visual.shape)} and {tuple(text.shape)}")
        return _real_token_mask(text_mask, text)


def sine_position_2d(height: int, width: int, dim: int, device: torch.device | str | None,
                     dtype: torch.dtype) -> Tensor:
    """DETR's normalised 2-D sine encoding, [H*W, dim], row-major (y, x); first half y, second half x."""
    if dim % 4 != 0:
        raise ValueError(f"sine_position_2d dim: expected a multiple of 4, found {dim}")
    half = dim // 2
    # Computed in float32 whatever `dtype` is: half precision loses the high-frequency phases.
    steps = torch.arange(half, device=device, dtype=torch.float32)
    inv_freq = 10000.0 ** (-2.0 * torch.div(steps, 2, rounding_mode="floor") / half)  # [half]

    def encode(size: int) -> Tensor:
        # DETR normalise=True: positions 1..size scaled to (0, 2*pi].
        position = torch.arange(1, size + 1, device=device, dtype=torch.float32) / (size + 1e-6) * 2 * math.pi
        angles = position[:, None] * inv_freq[None, :]  # [size, half]
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)  # interleaved

    pos_y = encode(height)[:, None, :].expand(height, width, half)
    pos_x = encode(width)[None, :, :].expand(height, width, half)
    return torch.cat((pos_y, pos_x), dim=2).reshape(height * width, dim).to(dtype)


def with_mean_first_token(states: Tensor, mask: Tensor) -> Tensor:
    """states [B, L, d] with position 0 replaced by the mean of the real tokens (mask [B, L] bool)."""
    weights = mask.to(states.dtype)[..., None]
    mean = (states * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
    return torch.cat([mean, states[:, 1:]], dim=1)


@dataclass(frozen=True)
class CA2MOutput:
    visual: Tensor  # [B, fusion_width, H16, W16]: F_v^3 as a map at stride 16
    cls: Tensor  # [B, fusion_width]: F_l^3[:, 0], the [CLS] token
    text: Tensor  # [B, L, fusion_width]: F_l^3


def _stack(count: int, width: int, cfg: CA2MCfg) -> nn.ModuleList:
    return nn.ModuleList(
        CA2MLayer(width, cfg.heads, cfg.ffn_mult * width, cfg.dropout) for _ in range(count)
    )


def _run(layers: nn.ModuleList, visual: Tensor, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    for layer in layers:
        visual, text = layer(visual, text, mask, validated=True)  # checked once by MultiGrainedCA2M
    return visual, text


class _Group(nn.Module):
    """Grouping stage for one text granularity: project both sides to C0, add text positions, CA2M layers."""

    def __init__(self, fusion_width: int, text_width: int, max_tokens: int, cfg: CA2MCfg) -> None:
        super().__init__()
        self.visual_in = nn.Linear(fusion_width, cfg.group_width)
        self.text_in = nn.Linear(text_width, cfg.group_width)
        self.text_position = nn.Embedding(max_tokens, cfg.group_width)
        self.layers = _stack(cfg.group_layers, cfg.group_width, cfg)

    def forward(self, visual0: Tensor, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        positions = torch.arange(text.shape[1], device=text.device)
        text = self.text_in(text) + self.text_position(positions)[None]
        return _run(self.layers, self.visual_in(visual0), text, mask)


class MultiGrainedCA2M(nn.Module):
    """(C3, C4, C5, text levels, text mask) -> CA2MOutput; replaces MCN's simple fusion (§3.4(a))."""

    def __init__(self, visual_channels: tuple[int, int, int], text_widths: tuple[int, ...], cfg: CA2MCfg,
                 max_tokens: int) -> None:
        super().__init__()
        cfg.validate()
        if len(visual_channels) != 3:
            raise ValueError(f"visual_channels: expected 3 widths (C3, C4, C5), found {visual_channels}")
        if not text_widths:  # one group per text granularity (HF: ca2m.text_layers; GRU: embeddings + states)
            raise ValueError("text_widths: expected at least one text granularity, found none")
        if max_tokens < 1:
            raise ValueError(f"max_tokens: expected >= 1, found {max_tokens}")
        self.fusion_width = cfg.fusion_width
        self.max_tokens = max_tokens
        self.cls_token = cfg.cls_token
        self.visual_in = nn.Linear(sum(visual_channels), cfg.fusion_width)
        # The blog leaves open whether each group sees per-stage visual features or the one concatenated
        # F_v^0; hrem gives every group the same F_v^0 (through its own linear to C0).
        self.groups = nn.ModuleList(_Group(cfg.fusion_width, w, max_tokens, cfg) for w in text_widths)
        concat = len(text_widths) * cfg.group_width
        # The paper has C1 = 3 x C0, so concatenation already gives C1; other widths need a bridge.
        same = concat == cfg.fusion_width
        self.visual_bridge = nn.Identity() if same else nn.Linear(concat, cfg.fusion_width)
        self.text_bridge = nn.Identity() if same else nn.Linear(concat, cfg.fusion_width)
        self.fusion = _stack(cfg.fusion_layers, cfg.fusion_width, cfg)

    def visual_tokens(self, c3: Tensor, c4: Tensor, c5: Tensor) -> Tensor:
        """F_v^0 [B, H16*W16, fusion_width]: C3/C4/C5 at stride 16, concatenated, projected, + 2-D sine."""
        height, width = c4.shape[-2:]
        c5_doubled = (2 * c5.shape[-2], 2 * c5.shape[-1])
        if c3.shape[-2:] != (2 * height, 2 * width) or c5_doubled != (height, width):
            raise ValueError(f"c3/c4/c5: expected spatial sizes (2H, 2W), (H, W), (H/2, W/2), found "
                             f"{tuple(c3.shape[-2:])}, {tuple(c4.shape[-2:])}, {tuple(c5.shape[-2:])}")
        # Averaging keeps all of C3's stride-8 evidence; nearest upsampling copies C5, inventing no values.
        c5_up = F.interpolate(c5, scale_factor=2.0, mode="nearest")
        grid = torch.cat((F.avg_pool2d(c3, 2), c4, c5_up), dim=1)
        tokens = self.visual_in(grid.flatten(2).transpose(1, 2))
        return tokens + sine_position_2d(height, width, self.fusion_width, c4.device, tokens.dtype)[None]

    def _check_text(self, text_levels: Sequence[Tensor], text_mask: Tensor) -> Tensor:
        if len(text_levels) != len(self.groups):
            raise ValueError(f"text_levels: expected {len(self.groups)} levels, found {len(text_levels)}")
        first = text_levels[0]
        for index, (level, group) in enumerate(zip(text_levels, self.groups)):
            expected = (first.shape[0], first.shape[1], group.text_in.in_features)
            if tuple(level.shape) != expected:
                raise ValueError(f"text_levels[{index}]: expected shape {expected}, "
                                 f"found {tuple(level.shape)}")
        if first.shape[1] > self.max_tokens:
            raise ValueError(f"text_levels: expected at most max_tokens={self.max_tokens} tokens, "
                             f"found {first.shape[1]}")
        return _real_token_mask(text_mask, first)

    def forward(self, c3: Tensor, c4: Tensor, c5: Tensor, text_levels: Sequence[Tensor],
                text_mask: Tensor) -> CA2MOutput:
        mask = self._check_text(text_levels, text_mask)
        visual0 = self.visual_tokens(c3, c4, c5)
        if visual0.shape[0] != mask.shape[0]:
            raise ValueError(f"c4: expected batch {mask.shape[0]} (the text's), found {visual0.shape[0]}")
        if self.cls_token == "mean":
            text_levels = [with_mean_first_token(level, mask) for level in text_levels]
        outputs = [group(visual0, level, mask) for group, level in zip(self.groups, text_levels)]
        visual = self.visual_bridge(torch.cat([v for v, _ in outputs], dim=2))
        text = self.text_bridge(torch.cat([t for _, t in outputs], dim=2))
        visual, text = _run(self.fusion, visual, text, mask)
        height, width = c4.shape[-2:]
        visual_map = visual.transpose(1, 2).reshape(visual.shape[0], self.fusion_width, height, width)
        return CA2MOutput(visual=visual_map, cls=text[:, 0], text=text)


__all__ = ["CA2MLayer", "CA2MOutput", "CrossAttention", "MultiGrainedCA2M", "sine_position_2d", "with_mean_first_token"]
