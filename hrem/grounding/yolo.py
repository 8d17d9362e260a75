"""Single-scale YOLOv3 box coding for MCN's REC branch: targets, decoding and the top-box selection.

One GT box per sample, one output scale (stride 32), 3 anchors (K `preprocess_true_boxes`, `yolo_head`):
- the box goes to the cell of its centre and to the anchor of best shape-only IoU (both centred);
- targets: in-cell centre offsets (for BCE on sigma(tx), sigma(ty)), log(w / a_w), log(h / a_h), and the
  box-loss scale 2 - w*h with w, h normalised by the input size;
- decoding inverts this: x = (sigma(tx) + i) * 32, w = a_w * exp(tw), conf = sigma(obj).
All coordinates are pixels of the letterboxed S x S input. Deviation from K: the centre is the exact
float centre, not K's integer-floored one, so decoding a target gives back the box exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STRIDE = 32


@dataclass(frozen=True)
class YoloTargets:
    object_mask: torch.Tensor  # [B, g, g, A] 1 at the responsible (row, col, anchor), else 0
    xy: torch.Tensor  # [B, g, g, A, 2] in-cell centre offsets in [0, 1]
    wh: torch.Tensor  # [B, g, g, A, 2] log(box / anchor); 0 where there is no object
    scale: torch.Tensor  # [B, g, g, A] 2 - w * h / S^2 (K box_loss_scale)
    boxes_xywh: torch.Tensor  # [B, 4] GT centre x, y, w, h in input pixels (ignore-IoU reference)
    valid: torch.Tensor  # [B] bool, False for degenerate boxes (no positive, only negatives)

    def to(self, device: torch.device | str) -> YoloTargets:
        return YoloTargets(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] corners -> centre x, centre y, width, height."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_iou_xywh(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of broadcastable [..., 4] centre-size boxes."""
    a1, b1 = xywh_to_xyxy(a), xywh_to_xyxy(b)
    lo = torch.maximum(a1[..., :2], b1[..., :2])
    hi = torch.minimum(a1[..., 2:], b1[..., 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / union.clamp(min=1e-12)


def shape_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of centred boxes [N, 2] against anchors [A, 2] -> [N, A] (position ignored)."""
    inter = torch.minimum(wh[:, None, :], anchors[None]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)


def build_yolo_targets(boxes_xyxy: torch.Tensor, anchors: torch.Tensor, input_size: int) -> YoloTargets:
    """YOLO targets for one GT box per sample, boxes_xyxy [B, 4] in letterbox pixels, anchors [A, 2]."""
    if input_size % STRIDE:
        raise ValueError(f"input_size: expected a multiple of {STRIDE}, found {input_size}")
    boxes = xyxy_to_xywh(boxes_xyxy.float())
    batch, grid, n_anchors = boxes.shape[0], input_size // STRIDE, anchors.shape[0]
    anchors = anchors.to(boxes)
    object_mask = boxes.new_zeros(batch, grid, grid, n_anchors)
    xy = boxes.new_zeros(batch, grid, grid, n_anchors, 2)
    wh = boxes.new_zeros(batch, grid, grid, n_anchors, 2)
    scale = boxes.new_zeros(batch, grid, grid, n_anchors)
    valid = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    b = torch.nonzero(valid).squeeze(1)
    centre = boxes[b, :2] / STRIDE
    cell = centre.floor().long().clamp(0, grid - 1)  # (col, row); a centre on the far edge stays in
    k = shape_iou(boxes[b, 2:], anchors).argmax(dim=1)
    row, col = cell[:, 1], cell[:, 0]
    object_mask[b, row, col, k] = 1.0
    xy[b, row, col, k] = centre - cell.to(centre)
    wh[b, row, col, k] = torch.log(boxes[b, 2:] / anchors[k])
    scale[b, row, col, k] = 2.0 - boxes[b, 2] * boxes[b, 3] / float(input_size) ** 2
    return YoloTargets(object_mask, xy, wh, scale, boxes, valid)


def _grid(grid: int, like: torch.Tensor) -> torch.Tensor:
    """[g, g, 1, 2] (col, row) cell offsets."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.stack([cols, rows], dim=-1).to(like)[:, :, None, :]


def decode_boxes(raw: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """raw [B, g, g, A, 5] -> boxes [B, g, g, A, 4] (centre x, y, w, h) in input pixels."""
    grid = raw.shape[1]
    xy = (torch.sigmoid(raw[..., :2]) + _grid(grid, raw)) * STRIDE
    wh = torch.exp(raw[..., 2:4]) * anchors.to(raw)
    return torch.cat([xy, wh], dim=-1)


def select_top_box(boxes_xywh: torch.Tensor, objectness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The single highest-confidence box per sample (K: NMS with max_boxes 1, thresholds 0 == argmax).

    boxes_xywh [B, g, g, A, 4], objectness logits [B, g, g, A] -> (xyxy [B, 4], sigma(obj) [B]).
    """
    flat_scores = torch.sigmoid(objectness.flatten(1))
    best = flat_scores.argmax(dim=1)
    chosen = boxes_xywh.flatten(1, 3)[torch.arange(best.shape[0], device=best.device), best]
    return xywh_to_xyxy(chosen), flat_scores.gather(1, best[:, None]).squeeze(1)
