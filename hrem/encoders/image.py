"""Image encoders: precomputed region features or a vision backbone's grid, then the same HREM head.

Both project fragments with the FC + MLP-BN head (`fc.*`), optionally relate them with the fragment
Transformer (`aggr.*`, injected) and pool them (hrem.encoders.head). The grid encoder adds `backbone.*`:
its last-stage feature map [B, C, h, w] becomes h*w tokens of width C.
"""
from __future__ import annotations

import torch
from torch import nn

from hrem.config.model import HeadCard
from hrem.encoders.head import EncoderOutput, make_gpool, pool_fragments
from hrem.encoders.pooling import lengths_to_mask
from hrem.encoders.projection import FCMLP


class RegionImageEncoder(nn.Module):
    """regions [B, N, F] zero-padded + lengths [B] -> EncoderOutput with D-dimensional tokens."""

    def __init__(self, feature_dim: int, embed_size: int, hidden_dim: int, head: HeadCard,
                 aggr: nn.Module | None) -> None:
        super().__init__()
        self.head = head
        self.fc = FCMLP(feature_dim, hidden_dim, embed_size)
        self.aggr = aggr
        self.gpool = make_gpool(head)

    def forward(self, regions: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        if regions.dim() != 3 or regions.shape[-1] != self.fc.fc.in_features:
            raise ValueError(f"regions: expected [B, N, {self.fc.fc.in_features}], found {tuple(regions.shape)}")
        if bool((lengths < 1).any()) or int(lengths.max()) > regions.shape[1]:
            raise ValueError(f"region lengths: expected values in [1, {regions.shape[1]}], found "
                             f"{lengths.min().item()}..{lengths.max().item()}")
        mask = lengths_to_mask(lengths.to(regions.device), regions.shape[1])
        tokens = self.fc(regions, mask)
        return EncoderOutput(pool_fragments(tokens, mask, self.head, self.aggr, self.gpool), tokens, mask)


class GridImageEncoder(RegionImageEncoder):
    """pixels [B, 3, H, W] -> backbone stage feature map -> grid tokens -> the region head."""

    def __init__(self, backbone: nn.Module, channels: int, embed_size: int, hidden_dim: int, head: HeadCard,
                 aggr: nn.Module | None) -> None:
        super().__init__(channels, embed_size, hidden_dim, head, aggr)
        self.backbone = backbone

    def grid_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone(pixel_values=pixels).feature_maps[-1]   # [B, C, h, w]
        return fmap.flatten(2).transpose(1, 2)                       # [B, h*w, C]

    def forward(self, pixels: torch.Tensor) -> EncoderOutput:  # type: ignore[override]
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels: expected [B, 3, H, W], found {tuple(pixels.shape)}")
        grid = self.grid_tokens(pixels)
        lengths = torch.full((grid.shape[0],), grid.shape[1], dtype=torch.long, device=grid.device)
        return super().forward(grid, lengths)
