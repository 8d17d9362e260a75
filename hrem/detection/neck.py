"""A small FPN (Lin et al. 2017) on C3..C5: 1x1 laterals, nearest top-down upsampling, a 3x3 output conv.
Only the finest level (P3, stride 8) is used: ShapesRef objects are 20-40 px, one scale is enough."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TinyFPN(nn.Module):
    def __init__(self, channels: tuple[int, int, int], width: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.output = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(inplace=True))

    def forward(self, c3: Tensor, c4: Tensor, c5: Tensor) -> Tensor:
        p5 = self.laterals[2](c5)
        p4 = self.laterals[1](c4) + F.interpolate(p5, size=c4.shape[-2:], mode="nearest")
        p3 = self.laterals[0](c3) + F.interpolate(p4, size=c3.shape[-2:], mode="nearest")
        return self.output(p3)
