"""MCN's "simple fusion" at stride 32 (K `simple_fusion`): projected C5 (*) tiled f_q, BN, LeakyReLU.

Only the top scale is fused with language directly; the stride 16 and 8 maps receive it through the
top-down path and GARAN. K's visual projection is a Darknet residual block on its 1024-channel C5; a ResNet
C5 has another width, so hrem first maps it to the fusion width with a 1x1 conv-BN-Leaky.
"""

from __future__ import annotations

import torch
from torch import nn

from hrem.grounding.layers import LEAKY_SLOPE, ConvBNLeaky, DarknetResBlock


class SimpleFusion(nn.Module):
    """(C5 [B, c5, g, g], f_q [B, Dq]) -> F_m [B, width, g, g]."""

    def __init__(self, c5_channels: int, text_dim: int, width: int) -> None:
        super().__init__()
        entry = nn.Identity() if c5_channels == width else ConvBNLeaky(c5_channels, width, 1)
        self.visual = nn.Sequential(entry, DarknetResBlock(width))
        self.text = nn.Sequential(
            nn.Linear(text_dim, width), nn.BatchNorm1d(width), nn.LeakyReLU(LEAKY_SLOPE)
        )
        self.out = nn.Sequential(nn.BatchNorm2d(width), nn.LeakyReLU(LEAKY_SLOPE))

    def forward(self, c5: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        visual = self.visual(c5)
        text = self.text(sentence)[:, :, None, None]  # tiled over the grid by broadcasting
        return self.out(visual * text)

    @property
    def last_weight(self) -> torch.Tensor:
        """The last conv weight of the fused trunk (GradNorm's shared layer W)."""
        return self.visual[-1].body[-1][0].weight
