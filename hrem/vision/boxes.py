"""Box arithmetic shared by grounding and detection: conversions, IoU, GIoU loss and greedy NMS (torch,
no torchvision).

The GIoU's C is the smallest *enclosing* box; the formula and eps follow
`torchvision.ops.generalized_box_iou_loss` with reduction "none". `nms` follows `torchvision.ops.nms`:
boxes sorted by score, a box is dropped when its IoU with a kept, better box exceeds the threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor


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


def box_area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of xyxy boxes a [N, 4] and b [M, 4] -> [N, M]."""
    _check_boxes("a", a)
    _check_boxes("b", b)
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter).clamp(min=1e-12)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the kept boxes, best score first (greedy, class-agnostic)."""
    order = torch.argsort(scores, descending=True, stable=True)
    if order.numel() == 0:
        return order
    iou = box_iou(boxes[order], boxes[order])
    keep = torch.ones(order.numel(), dtype=torch.bool, device=boxes.device)
    for i in range(order.numel()):
        if keep[i]:
            keep[i + 1:] &= iou[i, i + 1:] <= iou_threshold
    return order[keep]
