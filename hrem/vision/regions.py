"""The contract between region detectors and the region-feature consumers (`hrem regions`, the
`detected_regions` image side of retrieval cards).

A detector is any module with `input_size`, `feature_dim` and `detect_regions(pixels, count)`: the
ShapesRef detector of `hrem.detection` (one-stage boxes + RoIAlign region head, BUTD-style) and the adapter
for `transformers` object detectors (DETR family: boxes from post-processing, features = decoder states).
Consumers never look inside: they letterbox images to `input_size` (hrem.vision.letterbox), call
`detect_regions` and map the boxes back to original pixels.

Region selection (BUTD's fixed-36 setting, which always emits exactly 36 boxes): candidates after
non-maximum suppression, best score first; when fewer than `count` survive NMS, the highest-scoring
suppressed candidates fill the remaining rows, so every image gets exactly `count` real boxes (never zero
rows). A detector with fewer than `count` candidates in total (e.g. a DETR with fewer queries) returns
what it has; consumers decide whether that is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class RegionSet:
    """The regions of one image, best score first."""
    boxes: Tensor                  # [R, 4] x1, y1, x2, y2 in input (letterbox) pixels, float32
    scores: Tensor                 # [R] detection confidence in [0, 1]
    features: Tensor               # [R, F] the region features (what BUTD writes as pool5_flat)
    attributes: dict[str, Tensor] | None = None   # optional per-region predictions, e.g. {"shape": [R]}

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.features.dim() != 2 \
                or self.features.shape[0] != n:
            raise ValueError(f"RegionSet: expected boxes [R, 4], scores [R], features [R, F]; found "
                             f"{tuple(self.boxes.shape)}, {tuple(self.scores.shape)}, {tuple(self.features.shape)}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@runtime_checkable
class RegionDetector(Protocol):
    input_size: int                # square letterbox side the detector reads
    feature_dim: int               # F of RegionSet.features

    def detect_regions(self, pixels: Tensor, count: int) -> list[RegionSet]:
        """pixels [B, 3, S, S] float in [0, 1] (letterboxed RGB, no mean/std) -> one RegionSet per image
        with `count` rows, selected by the rule in this module's docstring."""
        ...


def fill_after_nms(scores: Tensor, keep: Tensor, count: int) -> Tensor:
    """Indices of the `count` regions to emit: NMS survivors `keep` (best first), then the suppressed
    candidates by descending score until `count` rows exist (BUTD's fixed-R rule)."""
    if keep.numel() >= count:
        return keep[:count]
    suppressed = torch.ones(scores.shape[0], dtype=torch.bool, device=scores.device)
    suppressed[keep] = False
    rest = torch.nonzero(suppressed).squeeze(1)
    rest = rest[torch.argsort(scores[rest], descending=True, stable=True)]
    return torch.cat([keep, rest])[:count]
