"""MCN's multi-scale collaborative neck (K `segmentation_branch` / `detection_branch`).

RES, top-down: F_m (stride 32) -> up x2, concat 1x1-projected C4, 1x1 -> F_mid (stride 16) -> up x2,
concat 1x1-projected C3, 1x1 -> F_down (stride 8), which then goes through the RES GARAN.
REC, bottom-up, built from the RES branch's *post-GARAN* stride-8 features (the "RES helps REC"
connection; SimREC runs both GARANs in parallel on a PAN neck instead):
  [avg-pool 2x2(F_down') -> 1x1 -> 3x3] (+) F_mid -> [1x1 -> avg-pool -> 1x1 -> 3x3] (+) F_m -> 1x1.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hrem.grounding.layers import ConvBNLeaky


class UpProjCat(nn.Module):
    """K `up_proj_cat_proj`: nearest x2 upsample, concat the projected skip map, 1x1 to `out_ch`."""

    def __init__(self, in_ch: int, skip_ch: int, skip_proj: int, out_ch: int) -> None:
        super().__init__()
        self.skip = ConvBNLeaky(skip_ch, skip_proj, 1)
        self.out = ConvBNLeaky(in_ch + skip_proj, out_ch, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.out(torch.cat([up, self.skip(skip)], dim=1))


class PoolProjCat(nn.Module):
    """K `pool_proj_cat`: (1x1 to `width` if wider), 2x2 avg-pool, 1x1 to width/2, 3x3 to width, concat."""

    def __init__(self, in_ch: int, width: int) -> None:
        super().__init__()
        entry = ConvBNLeaky(in_ch, width, 1) if in_ch > width else nn.Identity()
        mid_in = min(in_ch, width)
        self.entry = entry
        self.pool = nn.AvgPool2d(2)
        self.body = nn.Sequential(ConvBNLeaky(mid_in, width // 2, 1), ConvBNLeaky(width // 2, width, 3))

    def forward(self, x: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(self.pool(self.entry(x))), lateral], dim=1)


class TopDownPath(nn.Module):
    """(F_m, C4, C3) -> (F_mid [B, neck, S/16], F_down [B, neck, S/8])."""

    def __init__(self, fusion: int, c4: int, c3: int, skip: tuple[int, int], neck: int) -> None:
        super().__init__()
        self.mid = UpProjCat(fusion, c4, skip[0], neck)
        self.down = UpProjCat(neck, c3, skip[1], neck)

    def forward(
        self, fused: torch.Tensor, c4: torch.Tensor, c3: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mid = self.mid(fused, c4)
        return mid, self.down(mid, c3)


class BottomUpPath(nn.Module):
    """(F_down' post-GARAN, F_mid, F_m) -> REC map [B, neck, S/32]."""

    def __init__(self, fusion: int, neck: int) -> None:
        super().__init__()
        self.to_mid = PoolProjCat(neck, neck)  # -> 2 * neck channels at stride 16
        self.to_top = PoolProjCat(2 * neck, neck)  # -> neck + fusion channels at stride 32
        self.out = ConvBNLeaky(neck + fusion, neck, 1)

    def forward(self, down: torch.Tensor, mid: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        return self.out(self.to_top(self.to_mid(down, mid), fused))
