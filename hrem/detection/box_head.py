"""The one-stage, anchor-free box head (FCOS, Tian et al. 2019) on P3: per cell an objectness logit and
the distances (left, top, right, bottom) from the cell centre to the box edges, exp-parameterised in
units of the stride.

Targets: a cell is positive for an object when its centre lies inside the object's box and within
`centre_radius` strides of the box centre (FCOS centre sampling); ShapesRef objects never overlap, and a
cell inside two boxes would go to the smaller one. Losses: sigmoid focal loss on objectness over all
cells (normalised by the number of positives, RetinaNet) + GIoU on the decoded boxes of positive cells.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hrem.config.detector import BoxHeadCfg, DetectorLossCfg
from hrem.vision.boxes import box_area, giou_loss

MAX_LOG_DISTANCE = 6.0   # exp(6) = 403 strides: far beyond any image; keeps exp finite early in training


def _conv_bn_relu(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                         nn.ReLU(inplace=True))


class BoxHead(nn.Module):
    def __init__(self, cfg: BoxHeadCfg, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.tower = nn.Sequential(_conv_bn_relu(cfg.width), _conv_bn_relu(cfg.width))
        self.objectness = nn.Conv2d(cfg.width, 1, 1)
        self.distances = nn.Conv2d(cfg.width, 4, 1)
        nn.init.constant_(self.objectness.bias, -math.log((1 - cfg.prior) / cfg.prior))
        nn.init.zeros_(self.distances.weight)
        nn.init.zeros_(self.distances.bias)

    def forward(self, p3: Tensor) -> tuple[Tensor, Tensor]:
        """-> (objectness logits [B, G], boxes xyxy [B, G, 4] in input pixels), G = h * w cells."""
        x = self.tower(p3)
        logits = self.objectness(x).flatten(1)
        distances = torch.exp(self.distances(x).clamp(max=MAX_LOG_DISTANCE)) * self.stride   # [B, 4, h, w]
        distances = distances.flatten(2).transpose(1, 2)                                    # [B, G, 4]
        centres = cell_centres(p3.shape[-2], p3.shape[-1], self.stride, p3.device, distances.dtype)
        boxes = torch.cat([centres - distances[..., :2], centres + distances[..., 2:]], dim=-1)
        return logits, boxes


def cell_centres(height: int, width: int, stride: int, device, dtype) -> Tensor:
    """[h * w, 2] (x, y) pixel centres of the cells, row-major."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return (torch.stack([xs, ys], dim=-1).reshape(-1, 2) + 0.5) * stride


@dataclass(frozen=True)
class BoxTargets:
    positive: Tensor      # [B, G] bool
    boxes: Tensor         # [B, G, 4] the assigned object's box (zeros where not positive)


def assign_cells(gt_boxes: list[Tensor], centres: Tensor, stride: int, radius: float) -> BoxTargets:
    """Centre sampling for every image: gt_boxes [K_b, 4] xyxy per image, centres [G, 2]."""
    positives, targets = [], []
    for boxes in gt_boxes:
        inside = ((centres[:, None, :] > boxes[None, :, :2]) & (centres[:, None, :] < boxes[None, :, 2:])).all(-1)
        middle = (boxes[:, :2] + boxes[:, 2:]) / 2
        near = ((centres[:, None, :] - middle[None]).abs() <= radius * stride).all(-1)
        candidate = inside & near                                                        # [G, K]
        area = box_area(boxes)[None].expand_as(candidate).masked_fill(~candidate, float("inf"))
        chosen = area.argmin(dim=1) if boxes.shape[0] else torch.zeros(centres.shape[0], dtype=torch.long)
        positive = candidate.any(dim=1)
        assigned = boxes[chosen] if boxes.shape[0] else centres.new_zeros(centres.shape[0], 4)
        positives.append(positive)
        targets.append(assigned * positive[:, None])
    return BoxTargets(torch.stack(positives), torch.stack(targets))


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float, gamma: float) -> Tensor:
    """Per-element focal loss (RetinaNet; torchvision.ops.sigmoid_focal_loss, reduction none)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return (alpha * targets + (1 - alpha) * (1 - targets)) * loss


def box_losses(logits: Tensor, boxes: Tensor, targets: BoxTargets, cfg: DetectorLossCfg) -> dict[str, Tensor]:
    positive = targets.positive
    n_pos = positive.sum().clamp(min=1).to(logits.dtype)
    focal = sigmoid_focal_loss(logits.float(), positive.float(), cfg.focal_alpha, cfg.focal_gamma).sum() / n_pos
    giou = giou_loss(boxes[positive].float(), targets.boxes[positive].float()).sum() / n_pos
    return {"objectness": focal, "giou": giou}
