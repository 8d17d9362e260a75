"""Region-feature rows of images through any RegionDetector: what `hrem regions` writes to precomp files and
what the `detected_regions` image side of a retrieval card computes on the fly (the same function, so the
two give the same embeddings).

Row layout: the detector's region features [R, F], then, with `geometry`, five box-geometry columns
(GEOMETRY_COLUMNS): x1 / W, y1 / H, x2 / W, y2 / H and w * h / (W * H) of the box in the original image
(W x H = the letterbox content area, so padding never counts). This is a deliberate deviation from BUTD,
whose pool5_flat rows carry no box coordinates; the 5-d spatial vector is the one ViLBERT / LXMERT append.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hrem.vision.letterbox import LetterboxMeta
from hrem.vision.regions import RegionDetector

GEOMETRY_COLUMNS = ("x1", "y1", "x2", "y2", "area")


@dataclass(frozen=True)
class RegionRows:
    features: Tensor      # [B, R, F (+5)] float32
    boxes: Tensor         # [B, R, 4] x1, y1, x2, y2 in letterbox pixels
    scores: Tensor        # [B, R]


def content_rect(meta: LetterboxMeta) -> Tensor:
    """[6] = (dx, dy, nw, nh, W, H): where the image lies inside the letterbox square, and its original size."""
    return torch.tensor([meta.dx, meta.dy, meta.new_width, meta.new_height, meta.width, meta.height],
                        dtype=torch.float32)


def square_content(batch: int, side: int) -> Tensor:
    """The content rects of square `side` images that fill the whole input (no padding, no resizing)."""
    return torch.tensor([0.0, 0.0, side, side, side, side]).expand(batch, 6)


def box_geometry(boxes: Tensor, content: Tensor) -> Tensor:
    """boxes [..., R, 4] letterbox pixels, content [..., 6] -> [..., R, 5] geometry in [0, 1]."""
    origin, extent = content[..., None, 0:2], content[..., None, 2:4]
    lo = ((boxes[..., :2] - origin) / extent).clamp(0, 1)
    hi = ((boxes[..., 2:] - origin) / extent).clamp(0, 1)
    area = ((hi - lo).prod(dim=-1, keepdim=True))
    return torch.cat([lo, hi, area], dim=-1)


def row_width(detector: RegionDetector, geometry: bool) -> int:
    return int(detector.feature_dim) + (len(GEOMETRY_COLUMNS) if geometry else 0)


def extract_regions(detector: RegionDetector, pixels: Tensor, content: Tensor, count: int,
                    geometry: bool = True) -> RegionRows:
    """Exactly `count` rows per image (the fill rule of hrem.vision.regions); a detector that cannot give
    that many regions is an error naming both numbers."""
    found = detector.detect_regions(pixels, count)
    short = [len(r) for r in found if len(r) != count]
    if short:
        raise ValueError(f"detector {type(detector).__name__} returned {min(short)} region(s) for an image, "
                         f"expected exactly {count} (--regions / image.detector.regions); a DETR-family model "
                         f"gives at most its number of queries")
    boxes = torch.stack([r.boxes for r in found]).float()
    features = torch.stack([r.features for r in found]).float()
    if geometry:
        features = torch.cat([features, box_geometry(boxes, content.to(boxes))], dim=-1)
    return RegionRows(features, boxes, torch.stack([r.scores for r in found]).float())


def boxes_to_original(boxes: Tensor, content: Tensor) -> Tensor:
    """Letterbox-pixel boxes [B, R, 4] -> original-image pixels, clipped to the image (content [B, 6])."""
    origin, extent, size = content[:, None, 0:2], content[:, None, 2:4], content[:, None, 4:6]
    scale = size / extent
    lo = ((boxes[..., :2] - origin) * scale).clamp(min=0)
    hi = ((boxes[..., 2:] - origin) * scale).clamp(min=0)
    return torch.minimum(torch.cat([lo, hi], dim=-1), torch.cat([size, size], dim=-1))
