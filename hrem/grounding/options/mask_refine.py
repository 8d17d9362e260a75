"""hrem's stride-4 mask refinement (card `mask_refine`; not in MCN): a DeepLabv3+ decoder step after ASPP."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hrem.grounding.layers import ConvBNLeaky


class MaskRefiner(nn.Module):
    """hrem option (a DeepLabv3+ decoder step, not in MCN): stride-8 mask -> stride-4 mask.

    logits4 = up(logits8) + out(conv3x3([up(reduce(aspp_merged)), skip(fine)])), `up` bilinear x2; `out` starts
    at zero, so an untrained refiner returns the upsampled stride-8 mask. With `detach` no gradient leaves
    the refiner (MCN's own training is unchanged).
    """

    def __init__(self, merged_ch: int, fine_ch: int, skip: int, width: int, detach: bool = True) -> None:
        super().__init__()
        self.detach = detach
        self.reduce = ConvBNLeaky(merged_ch, width, 1)
        self.skip = ConvBNLeaky(fine_ch, skip, 1)
        self.fuse = ConvBNLeaky(width + skip, width, 3)
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, merged: torch.Tensor, coarse_logits: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        if self.detach:
            merged, coarse_logits, fine = merged.detach(), coarse_logits.detach(), fine.detach()
        size = fine.shape[-2:]
        up = F.interpolate(self.reduce(merged), size=size, mode="bilinear", align_corners=False)
        base = F.interpolate(coarse_logits, size=size, mode="bilinear", align_corners=False)
        return base + self.out(self.fuse(torch.cat([up, self.skip(fine)], dim=1)))
