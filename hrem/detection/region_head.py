"""The region head, as BUTD's second stage: RoIAlign of the fine maps for each box -> a small conv + MLP
-> the region feature f -> an object classifier (shapes + "background") and one classifier per attribute.

f is what `hrem regions` writes for a box (BUTD's pool5_flat): it is trained only through the classifiers,
so it carries what they need -- shape, colour, size -- and, through the background class, whether the box
holds an object at all. The classifiers also see the box's width, height and sqrt(area) over the input
side (`geometry_inputs`): RoIAlign rescales every box to the same grid, so absolute size is otherwise
invisible; this is an hrem addition.

Training boxes per image (`sample_training_boxes`): every object's box, `jitter_boxes` jittered copies of
it (IoU >= 0.6, same labels), and `background_boxes` random boxes overlapping no object by more than
`background_iou` (object label = background, no attribute loss) -- BUTD samples RPN proposals with
foreground IoU >= 0.5 and background IoU < 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hrem.config.detector import RegionHeadCfg
from hrem.vision.boxes import box_iou
from hrem.vision.roi_align import roi_align

REDUCED_CHANNELS = 32
JITTER_MIN_IOU = 0.6


class RegionHead(nn.Module):
    def __init__(self, cfg: RegionHeadCfg, fine_channels: int, p3_channels: int, n_objects: int,
                 attribute_sizes: dict[str, int], input_size: int) -> None:
        super().__init__()
        self.cfg, self.input_size = cfg, input_size
        self.reduce = nn.Sequential(nn.Conv2d(fine_channels + p3_channels, REDUCED_CHANNELS, 3, padding=1),
                                    nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(nn.Linear(REDUCED_CHANNELS * cfg.pool * cfg.pool, cfg.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.hidden, cfg.feature_dim), nn.ReLU(inplace=True))
        extra = 3 if cfg.geometry_inputs else 0
        self.object_classifier = nn.Linear(cfg.feature_dim + extra, n_objects + 1)   # + background
        self.attribute_classifiers = nn.ModuleDict(
            {name: nn.Linear(cfg.feature_dim + extra, n) for name, n in attribute_sizes.items()})

    def features(self, fine: Tensor, p3: Tensor, boxes: list[Tensor]) -> Tensor:
        """fine [B, c2, S/4, S/4], p3 [B, c3, S/8, S/8], boxes per image [K_b, 4] -> f [sum K_b, F]."""
        size, pool, ratio = self.input_size, self.cfg.pool, self.cfg.sampling_ratio
        pooled = torch.cat([roi_align(fine, boxes, pool, fine.shape[-1] / size, ratio),
                            roi_align(p3, boxes, pool, p3.shape[-1] / size, ratio)], dim=1)
        return self.mlp(self.reduce(pooled).flatten(1))

    def classify(self, f: Tensor, boxes: Tensor) -> dict[str, Tensor]:
        """f [K, F], boxes [K, 4] -> {"object": [K, n_objects + 1], attribute: [K, n]} logits."""
        if self.cfg.geometry_inputs:
            wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0) / self.input_size
            f = torch.cat([f, wh, wh.prod(dim=1, keepdim=True).sqrt()], dim=1)
        logits = {"object": self.object_classifier(f)}
        logits.update({name: head(f) for name, head in self.attribute_classifiers.items()})
        return logits


@dataclass(frozen=True)
class RegionSamples:
    boxes: list[Tensor]              # per image [K_b, 4]
    labels: dict[str, Tensor]        # "object": [K] (background = n_objects), attributes: [K] (-100 = ignore)


def _jittered(boxes: Tensor, copies: int, generator: torch.Generator) -> Tensor:
    """`copies` jittered versions of each box (centre +-10 % and sides x0.85..1.15), IoU >= 0.6 kept."""
    if copies == 0 or boxes.shape[0] == 0:
        return boxes.new_zeros((0, 4))
    base = boxes.repeat(copies, 1)
    size = base[:, 2:] - base[:, :2]
    centre = (base[:, :2] + base[:, 2:]) / 2 + (torch.rand(size.shape, generator=generator) - 0.5) * 0.2 * size
    size = size * (0.85 + 0.3 * torch.rand(size.shape, generator=generator))
    jittered = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    good = box_iou(jittered, base).diagonal() >= JITTER_MIN_IOU
    return torch.where(good[:, None], jittered, base)


def _background(objects: Tensor, count: int, side: int, max_iou: float, generator: torch.Generator) -> Tensor:
    """Up to `count` random boxes (10-50 % of the side) with IoU <= max_iou to every object."""
    if count == 0:
        return objects.new_zeros((0, 4))
    tries = 4 * count
    size = (0.1 + 0.4 * torch.rand(tries, 2, generator=generator)) * side
    corner = torch.rand(tries, 2, generator=generator) * (side - size)
    boxes = torch.cat([corner, corner + size], dim=1)
    if objects.shape[0]:
        boxes = boxes[box_iou(boxes, objects).amax(dim=1) <= max_iou]
    return boxes[:count]


def sample_training_boxes(gt_boxes: list[Tensor], labels: list[dict[str, Tensor]], cfg: RegionHeadCfg,
                          n_objects: int, side: int, generator: torch.Generator) -> RegionSamples:
    boxes_out, label_parts = [], {name: [] for name in labels[0]} if labels else {}
    for boxes, lab in zip(gt_boxes, labels):
        jitter = _jittered(boxes, cfg.jitter_boxes, generator)
        background = _background(boxes, cfg.background_boxes, side, cfg.background_iou, generator)
        boxes_out.append(torch.cat([boxes, jitter, background]).to(boxes.dtype))
        repeats = 1 + cfg.jitter_boxes
        for name, values in lab.items():
            fill = n_objects if name == "object" else -100
            label_parts[name].append(torch.cat([values.repeat(repeats),
                                                torch.full((background.shape[0],), fill, dtype=torch.long)]))
    return RegionSamples(boxes_out, {n: torch.cat(v) for n, v in label_parts.items()})


def region_losses(logits: dict[str, Tensor], labels: dict[str, Tensor]) -> dict[str, Tensor]:
    """Cross-entropy per head; attribute heads ignore background boxes (label -100)."""
    return {f"region_{name}": F.cross_entropy(logits[name].float(), labels[name].to(logits[name].device),
                                              ignore_index=-100) for name in logits}
