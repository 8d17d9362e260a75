"""The image side of a model batch: pixels for grid cards, zero-padded region features for region cards."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageBatch:
    pixels: torch.Tensor | None = None    # [B, 3, H, W] float32 in the card's normalisation (grid cards)
    regions: torch.Tensor | None = None   # [B, N, F] float32, zero-padded (region cards)
    lengths: torch.Tensor | None = None   # [B] int64 number of valid regions (region cards)
    # [B, 6] (dx, dy, nw, nh, W, H): where each image lies inside its letterboxed pixels, and its original
    # size (detected-region cards; hrem.vision.region_rows.content_rect)
    content: torch.Tensor | None = None

    @classmethod
    def from_regions(cls, regions: torch.Tensor, lengths: torch.Tensor | None = None) -> "ImageBatch":
        """Region features; without `lengths` every region of every item is valid."""
        if regions.dim() != 3:
            raise ValueError(f"regions: expected [B, N, F], found shape {tuple(regions.shape)}")
        if lengths is None:
            lengths = torch.full((regions.shape[0],), regions.shape[1], dtype=torch.long, device=regions.device)
        return cls(regions=regions, lengths=lengths.long())

    @classmethod
    def from_pixels(cls, pixels: torch.Tensor) -> "ImageBatch":
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels: expected [B, 3, H, W], found shape {tuple(pixels.shape)}")
        return cls(pixels=pixels)

    def __len__(self) -> int:
        data = self.pixels if self.pixels is not None else self.regions
        return 0 if data is None else int(data.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ImageBatch":
        """Move to `device`; floating tensors are also cast to `dtype` when given (lengths stay int64)."""
        def move(t: torch.Tensor | None, cast: bool) -> torch.Tensor | None:
            if t is None:
                return None
            return t.to(device=device, dtype=dtype) if cast and dtype is not None else t.to(device)
        return ImageBatch(move(self.pixels, True), move(self.regions, True), move(self.lengths, False),
                          move(self.content, False))
