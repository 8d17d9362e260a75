"""The two output heads: ASPP -> 1 mask logit at stride 8 (RES) and the 1x1 YOLO conv at stride 32 (REC).

hrem's optional stride-4 mask refinement (card `mask_refine`) is hrem.grounding.options.mask_refine."""

from __future__ import annotations

import torch
from torch import nn

from hrem.grounding.layers import ConvBNLeaky


class ASPPDecoder(nn.Module):
    """K `aspp_decoder`: 1x1, three dilated 3x3 and an image-pooling branch, concat, 1x1 -> 1 logit."""

    def __init__(self, in_ch: int, width: int, dilations: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNLeaky(in_ch, width, 1))
        self.branches = nn.ModuleList(
            [ConvBNLeaky(in_ch, width, 1)] + [ConvBNLeaky(in_ch, width, 3, dilation=d) for d in dilations]
        )
        self.merged_channels = width * (len(dilations) + 2)
        self.out = nn.Conv2d(self.merged_channels, 1, 1)

    def merged(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated branches [B, merged_channels, h, w] the last 1x1 reads."""
        pooled = self.image_pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return torch.cat([pooled] + [branch(x) for branch in self.branches], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.merged(x))


class YoloHead(nn.Module):
    """1x1 conv -> raw predictions [B, g, g, anchors, 5] = (tx, ty, tw, th, objectness logit).

    The channel order is anchor-major (channel = anchor * 5 + field), as K's reshape of [..., 15] to
    [..., 3, 5].
    """

    def __init__(self, in_ch: int, anchors: int = 3) -> None:
        super().__init__()
        self.anchors = anchors
        self.conv = nn.Conv2d(in_ch, anchors * 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.conv(x)
        batch, _, height, width = raw.shape
        return raw.view(batch, self.anchors, 5, height, width).permute(0, 3, 4, 1, 2)
