"""RoIAlign (Mask R-CNN) written with `torch.nn.functional.grid_sample`, no torchvision.

Semantics of `torchvision.ops.roi_align(..., aligned=True)`: box corners are scaled by `spatial_scale` and
shifted by half a pixel; each of the out_h x out_w bins averages sampling_ratio x sampling_ratio bilinear
samples at the bin's sub-cell centres. A sample further than one pixel outside the map counts as zero;
one within that pixel is clamped to the border (torchvision's `bilinear_interpolate`). Clamping the
coordinates into [0, size - 1] and sampling with align_corners=True reproduces its bilinear weights
exactly, so grid_sample does the interpolation for all boxes of an image in one call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _sample_positions(start: Tensor, length: Tensor, bins: int, ratio: int) -> Tensor:
    """[K] box starts / lengths -> [K, bins * ratio] sample coordinates along one axis."""
    steps = (torch.arange(bins, device=start.device, dtype=start.dtype)[:, None]
             + (torch.arange(ratio, device=start.device, dtype=start.dtype)[None, :] + 0.5) / ratio) / bins
    return start[:, None] + steps.flatten()[None, :] * length[:, None]


def _normalised(coords: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """(grid_sample coordinates for align_corners=True, validity) of pixel-index coordinates."""
    valid = (coords >= -1.0) & (coords <= size)
    clamped = coords.clamp(0, size - 1)
    return clamped / max(size - 1, 1) * 2 - 1, valid


def roi_align_image(features: Tensor, boxes: Tensor, output_size: int | tuple[int, int],
                    spatial_scale: float, sampling_ratio: int = 2) -> Tensor:
    """features [C, H, W], boxes [K, 4] x1, y1, x2, y2 (input pixels) -> [K, C, out_h, out_w]."""
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio: expected >= 1 (adaptive sampling is not supported), found {sampling_ratio}")
    channels, height, width = features.shape
    k = boxes.shape[0]
    if k == 0:
        return features.new_zeros((0, channels, out_h, out_w))
    scaled = boxes.to(features.dtype) * spatial_scale - 0.5
    ys = _sample_positions(scaled[:, 1], scaled[:, 3] - scaled[:, 1], out_h, sampling_ratio)   # [K, out_h*r]
    xs = _sample_positions(scaled[:, 0], scaled[:, 2] - scaled[:, 0], out_w, sampling_ratio)   # [K, out_w*r]
    gy, vy = _normalised(ys, height)
    gx, vx = _normalised(xs, width)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)      # [K, hr, wr, 2]
    sampled = F.grid_sample(features[None], grid.reshape(1, -1, grid.shape[2], 2), mode="bilinear",
                            padding_mode="border", align_corners=True)                         # [1, C, K*hr, wr]
    sampled = sampled.view(channels, k, out_h, sampling_ratio, out_w, sampling_ratio)
    valid = (vy[:, :, None] & vx[:, None, :]).view(k, out_h, sampling_ratio, out_w, sampling_ratio)
    return (sampled * valid.to(sampled.dtype)).mean(dim=(3, 5)).transpose(0, 1)


def roi_align(features: Tensor, boxes: list[Tensor], output_size: int | tuple[int, int], spatial_scale: float,
              sampling_ratio: int = 2) -> Tensor:
    """features [B, C, H, W], one [K_b, 4] box tensor per image -> [sum K_b, C, out_h, out_w]."""
    if len(boxes) != features.shape[0]:
        raise ValueError(f"boxes: expected one box tensor per image ({features.shape[0]}), found {len(boxes)}")
    return torch.cat([roi_align_image(f, b, output_size, spatial_scale, sampling_ratio)
                      for f, b in zip(features, boxes)], dim=0)
