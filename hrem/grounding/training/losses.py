"""MCN's training losses (K `yolo_loss`): YOLO single-box terms + 0.1 x mask BCE + CEM, all / batch size.

- xy: BCE-with-logits between (tx, ty) and the in-cell offsets, x (2 - w*h), at the responsible anchor;
- wh: 0.5 x smooth-L1 (sigma 3) between (tw, th) and log(box / anchor), x (2 - w*h);
- conf: BCE on the objectness logit: 1 at the responsible anchor, 0 elsewhere except where the
  predicted box already overlaps the GT with IoU >= ignore_iou (those negatives are ignored);
- mask: BCE-with-logits summed over the stride-8 map, weight 0.1;
- cem: -log(E + 1e-6).
Every term is summed over elements and divided by the batch size, as K does.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from hrem.grounding.yolo import YoloTargets, box_iou_xywh


def smooth_l1(diff: torch.Tensor, sigma: float) -> torch.Tensor:
    """K's smooth-L1: 0.5 (sigma x)^2 if |x| < 1 / sigma^2, else |x| - 0.5 / sigma^2."""
    s2 = sigma * sigma
    ad = diff.abs()
    return torch.where(ad < 1.0 / s2, 0.5 * s2 * ad * ad, ad - 0.5 / s2)


def ignore_mask(pred_boxes: torch.Tensor, targets: YoloTargets, ignore_iou: float) -> torch.Tensor:
    """[B, g, g, A] 1 where a negative counts, 0 where its predicted box already matches the GT."""
    gt = targets.boxes_xywh[:, None, None, None, :]
    iou = box_iou_xywh(pred_boxes.detach(), gt)
    keep = (iou < ignore_iou) | ~targets.valid[:, None, None, None]
    return keep.to(pred_boxes.dtype)


def yolo_losses_per_sample(
    raw: torch.Tensor,
    pred_boxes: torch.Tensor,
    targets: YoloTargets,
    ignore_iou: float = 0.5,
    wh_sigma: float = 3.0,
) -> dict[str, torch.Tensor]:
    """raw [B, g, g, A, 5], decoded pred_boxes [B, g, g, A, 4] -> {"xy", "wh", "conf"}, each [B] (per-sample
    sums; the self-paced weighting needs them per sample)."""
    obj = targets.object_mask
    weight = (obj * targets.scale)[..., None]
    xy = weight * F.binary_cross_entropy_with_logits(raw[..., :2], targets.xy, reduction="none")
    wh = weight * 0.5 * smooth_l1(targets.wh - raw[..., 2:4], wh_sigma)
    conf_all = F.binary_cross_entropy_with_logits(raw[..., 4], obj, reduction="none")
    conf = obj * conf_all + (1.0 - obj) * conf_all * ignore_mask(pred_boxes, targets, ignore_iou)
    return {"xy": xy.flatten(1).sum(1), "wh": wh.flatten(1).sum(1), "conf": conf.flatten(1).sum(1)}


def yolo_losses(
    raw: torch.Tensor,
    pred_boxes: torch.Tensor,
    targets: YoloTargets,
    ignore_iou: float = 0.5,
    wh_sigma: float = 3.0,
) -> dict[str, torch.Tensor]:
    """raw [B, g, g, A, 5], decoded pred_boxes [B, g, g, A, 4] -> {"xy", "wh", "conf"} (sums / B)."""
    per_sample = yolo_losses_per_sample(raw, pred_boxes, targets, ignore_iou, wh_sigma)
    return {name: values.mean() for name, values in per_sample.items()}


def mask_loss_per_sample(mask_logits: torch.Tensor, mask_target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits summed over each sample's stride-8 map -> [B]."""
    if mask_logits.shape != mask_target.shape:
        raise ValueError(
            f"mask target: expected shape {tuple(mask_logits.shape)}, found {tuple(mask_target.shape)}"
        )
    return F.binary_cross_entropy_with_logits(mask_logits, mask_target, reduction="none").flatten(1).sum(1)


def mask_loss(mask_logits: torch.Tensor, mask_target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits summed over the stride-8 map, divided by the batch size (weight applied by caller)."""
    return mask_loss_per_sample(mask_logits, mask_target).mean()
