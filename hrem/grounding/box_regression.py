"""Direct box regression for the CA2M option: per-sample L1 + GIoU, a [CLS] MLP head; REFERENCE_EXTRA §3.1.

Boxes are normalised to the (letterboxed) input square. The GIoU's C is the smallest *enclosing* box (the
blog's "smallest inscribed rectangle" is a translation error); the formula and eps follow
`torchvision.ops.generalized_box_iou_loss` with reduction "none" (torchvision itself is not a dependency).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _check_boxes(name: str, boxes: Tensor) -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name}: expected shape [..., 4], found {tuple(boxes.shape)}")


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2) over the last dimension."""
    _check_boxes("boxes", boxes)
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def giou_loss(pred_xyxy: Tensor, target_xyxy: Tensor, eps: float = 1e-7) -> Tensor:
    """1 - GIoU per box, [...]: in [0, 2); 0 for identical boxes, -> 2 for far-apart ones."""
    _check_boxes("pred_xyxy", pred_xyxy)
    _check_boxes("target_xyxy", target_xyxy)
    if pred_xyxy.shape != target_xyxy.shape:
        raise ValueError(f"target_xyxy: expected the shape of pred_xyxy {tuple(pred_xyxy.shape)}, "
                         f"found {tuple(target_xyxy.shape)}")
    x1, y1, x2, y2 = pred_xyxy.unbind(-1)
    x1g, y1g, x2g, y2g = target_xyxy.unbind(-1)
    inter_w = torch.minimum(x2, x2g) - torch.maximum(x1, x1g)
    inter_h = torch.minimum(y2, y2g) - torch.maximum(y1, y1g)
    # torchvision zeroes the intersection unless both sides are positive (not clamp(0) per side).
    intersection = torch.where((inter_w > 0) & (inter_h > 0), inter_w * inter_h, torch.zeros_like(inter_w))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intersection
    iou = intersection / (union + eps)
    enclosing_w = torch.maximum(x2, x2g) - torch.minimum(x1, x1g)
    enclosing = enclosing_w * (torch.maximum(y2, y2g) - torch.minimum(y1, y1g))
    return 1 - (iou - (enclosing - union) / (enclosing + eps))


def l1_box_loss(pred_cxcywh: Tensor, target_cxcywh: Tensor) -> Tensor:
    """|dx| + |dy| + |dw| + |dh| per box, [...], on normalised coordinates."""
    _check_boxes("pred_cxcywh", pred_cxcywh)
    if pred_cxcywh.shape != target_cxcywh.shape:
        raise ValueError(f"target_cxcywh: expected the shape of pred_cxcywh {tuple(pred_cxcywh.shape)}, "
                         f"found {tuple(target_cxcywh.shape)}")
    return (pred_cxcywh - target_cxcywh).abs().sum(dim=-1)


class DirectBoxHead(nn.Module):
    """[CLS] [B, in_dim] -> normalised (cx, cy, w, h) [B, 4] in (0, 1): 3-layer ReLU MLP, sigmoid."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 4)
        )

    def forward(self, cls: Tensor) -> Tensor:
        if cls.dim() != 2 or cls.shape[1] != self.in_dim:
            raise ValueError(f"cls: expected shape [B, {self.in_dim}], found {tuple(cls.shape)}")
        # Sigmoid as in TransVG ([assumption] in the reference): the box stays inside the input square.
        return self.mlp(cls).sigmoid()


__all__ = ["DirectBoxHead", "cxcywh_to_xyxy", "giou_loss", "l1_box_loss"]
