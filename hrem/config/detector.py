"""The region-detector card (kind "detector"): a ShapesRef detector in the BUTD mould, validated from JSON.

BUTD (Anderson et al. 2018) trains a Faster R-CNN on Visual Genome objects and attributes and keeps, per
box, the pooled RoI feature that feeds the object and attribute classifiers. hrem's detector keeps that
split with parts sized for a CPU: a transformers ResNet (the same config as mcn-demo's backbone, so its
weights can start MCN), a one-stage anchor-free box head on a small FPN, and a region head (RoIAlign ->
MLP -> feature f) with object (shape) and attribute (colour, size) classifiers on f. Stdlib only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hrem.config.base import require
from hrem.config.grounding import MCNBackboneCfg


@dataclass(frozen=True)
class BoxHeadCfg:
    """Anchor-free boxes on the stride-`stride` FPN level (FCOS-style centre sampling, YOLOX-style box)."""
    width: int = 96                      # FPN / head channels
    centre_radius: float = 1.5           # positives: cells whose centre is inside the box and within this many
                                         # strides of the box centre (FCOS centre sampling)
    prior: float = 0.01                  # initial objectness probability (RetinaNet bias init)
    nms_iou: float = 0.5                 # NMS for evaluation / detections
    regions_nms_iou: float = 0.3         # NMS before BUTD's fixed-R region selection (BUTD uses 0.3)

    def validate(self) -> None:
        require(self.width >= 8, f"box_head.width: expected >= 8, found {self.width}")
        require(0 < self.prior < 1, f"box_head.prior: expected a probability in (0, 1), found {self.prior}")
        for name in ("nms_iou", "regions_nms_iou"):
            require(0 < getattr(self, name) <= 1, f"box_head.{name}: expected (0, 1], found {getattr(self, name)}")


@dataclass(frozen=True)
class RegionHeadCfg:
    """RoIAlign on the fine maps -> MLP -> region feature f -> classifiers (BUTD's pool5_flat + heads)."""
    pool: int = 7                        # RoIAlign output side
    sampling_ratio: int = 2
    hidden: int = 512
    feature_dim: int = 256               # |f|, what `hrem regions` writes per box
    jitter_boxes: int = 2                # jittered copies of each GT box per image (foreground samples)
    background_boxes: int = 8            # random boxes with IoU < background_iou to every object
    background_iou: float = 0.3
    geometry_inputs: bool = True         # classifiers also see the box's w, h (size is absolute, RoIs are not)

    def validate(self) -> None:
        require(self.pool >= 1 and self.sampling_ratio >= 1 and self.hidden >= 1 and self.feature_dim >= 1,
                "region_head: pool, sampling_ratio, hidden and feature_dim must be positive")
        require(self.jitter_boxes >= 0 and self.background_boxes >= 0,
                f"region_head: jitter_boxes and background_boxes must be >= 0, found {self.jitter_boxes}, "
                f"{self.background_boxes}")


@dataclass(frozen=True)
class DetectorLossCfg:
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_weight: float = 2.0              # GIoU loss weight (per positive cell)
    region_weight: float = 1.0           # object + attribute cross-entropies


@dataclass(frozen=True)
class DetectorCard:
    name: str
    kind: Literal["detector"]
    backbone: MCNBackboneCfg
    input_size: int = 128
    stride: int = 8                      # the FPN level boxes are predicted on (8 = ResNet stage2)
    box_head: BoxHeadCfg = field(default_factory=BoxHeadCfg)
    region_head: RegionHeadCfg = field(default_factory=RegionHeadCfg)
    losses: DetectorLossCfg = field(default_factory=DetectorLossCfg)
    # label vocabularies (ShapesRef's): objects (the last object class is "background") and attributes
    objects: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")
    attributes: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "colour": ("red", "green", "blue", "yellow", "purple", "orange", "white", "black"),
        "size": ("small", "medium", "large")})
    description: str = ""

    def __post_init__(self) -> None:
        # JSON gives lists: normalise so a card read back from a run directory equals the original
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "attributes", {k: tuple(v) for k, v in self.attributes.items()})

    def validate(self) -> None:
        require(self.stride in (4, 8, 16), f"stride: expected 4, 8 or 16, found {self.stride}")
        require(self.input_size % 32 == 0 and self.input_size >= 32,
                f"input_size: expected a multiple of 32 (>= 32), found {self.input_size}")
        require(len(self.objects) >= 1, "objects: expected at least one object class")
        require(all(len(v) >= 1 for v in self.attributes.values()),
                f"attributes: every attribute needs at least one value, found {self.attributes}")
        require(self.backbone.out_features == ("stage2", "stage3", "stage4"),
                f"backbone.out_features: the detector's FPN reads stage2..stage4, found {self.backbone.out_features}")


__all__ = ["BoxHeadCfg", "DetectorCard", "DetectorLossCfg", "RegionHeadCfg"]
