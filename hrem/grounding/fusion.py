"""The fusion interface and MCN's "simple fusion" at stride 32 (K `simple_fusion`).

A fusion turns the backbone maps and the language output into MCN's fused map F_m; the card's `fusion`
picks one once, in hrem.grounding.parts ("simple" here, "ca2m" in hrem.grounding.options.ca2m_fusion).

Simple fusion: projected C5 (*) tiled f_q, BN, LeakyReLU. Only the top scale is fused with language
directly; the stride 16 and 8 maps receive it through the top-down path and GARAN. K's visual projection is
a Darknet residual block on its 1024-channel C5; a ResNet C5 has another width, so hrem first maps it to the
fusion width with a 1x1 conv-BN-Leaky.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from hrem.grounding.language import LanguageOutput
from hrem.grounding.layers import LEAKY_SLOPE, ConvBNLeaky, DarknetResBlock


@dataclass(frozen=True)
class FusionOutput:
    fused: torch.Tensor  # [B, fusion, S/32, S/32] F_m
    cls: torch.Tensor | None = None  # [B, ca2m.fusion_width] fused [CLS] token (CA2M only)
    sentence: torch.Tensor | None = None  # [B, D] replacement f_q for the GARANs, or None to keep f_q


class Fusion(Protocol):
    """(C3, C4, C5, language) -> FusionOutput; an nn.Module, registered on the model as `fusion`."""

    def __call__(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor,
                 language: LanguageOutput) -> FusionOutput: ...

    @property
    def last_weight(self) -> torch.Tensor:
        """The last conv weight of the fused trunk (GradNorm's shared layer W)."""
        ...


class SimpleFusion(nn.Module):
    """(C5 [B, c5, g, g], f_q [B, Dq]) -> F_m [B, width, g, g]; C3 and C4 are not read."""

    def __init__(self, c5_channels: int, text_dim: int, width: int) -> None:
        super().__init__()
        entry = nn.Identity() if c5_channels == width else ConvBNLeaky(c5_channels, width, 1)
        self.visual = nn.Sequential(entry, DarknetResBlock(width))
        self.text = nn.Sequential(
            nn.Linear(text_dim, width), nn.BatchNorm1d(width), nn.LeakyReLU(LEAKY_SLOPE)
        )
        self.out = nn.Sequential(nn.BatchNorm2d(width), nn.LeakyReLU(LEAKY_SLOPE))

    def fuse(self, c5: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        visual = self.visual(c5)
        text = self.text(sentence)[:, :, None, None]  # tiled over the grid by broadcasting
        return self.out(visual * text)

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor,
                language: LanguageOutput) -> FusionOutput:
        return FusionOutput(self.fuse(c5, language.sentence))

    @property
    def last_weight(self) -> torch.Tensor:
        return self.visual[-1].body[-1][0].weight
