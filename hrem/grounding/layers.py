"""Darknet-style building blocks shared by MCN's fusion, neck and heads (K `DarknetConv2D_BN_Leaky`)."""

from __future__ import annotations

import torch
from torch import nn

LEAKY_SLOPE = 0.1  # every LeakyReLU in MCN uses alpha 0.1


class ConvBNLeaky(nn.Sequential):
    """Conv (no bias, 'same' padding) -> BatchNorm -> LeakyReLU(0.1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> None:
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.LeakyReLU(LEAKY_SLOPE),
        )


class DarknetResBlock(nn.Module):
    """1x1 to half width, 3x3 back to full width, plus identity (K `darknet_resblock`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBNLeaky(channels, channels // 2, 1), ConvBNLeaky(channels // 2, channels, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
