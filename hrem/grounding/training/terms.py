"""The per-sample [B] loss terms of one grounding forward, before any weighting (hrem.grounding.criterion
weights and sums them; the self-paced weighting needs them per sample)."""

from __future__ import annotations

import torch

from hrem.config.grounding import MCNCard
from hrem.grounding.model import GroundingOutput
from hrem.grounding.options.box_regression import cxcywh_to_xyxy, giou_loss, l1_box_loss
from hrem.grounding.training.losses import mask_loss_per_sample, yolo_losses_per_sample
from hrem.grounding.training.targets import GroundingTargets


def per_sample_terms(card: MCNCard, output: GroundingOutput, targets: GroundingTargets) -> dict[str, torch.Tensor]:
    """"xy", "wh", "conf", "mask" (0 without a mask target), with mask_refine "mask_fine" (stride 4, when the
    targets have it) and, with the direct box head, "box_l1" and "box_giou" on normalised coordinates (0 for
    samples without a box)."""
    cfg = card.losses
    terms = yolo_losses_per_sample(output.raw, output.boxes_xywh, targets.yolo, cfg.ignore_iou, cfg.wh_sigma)
    no_mask = output.raw.new_zeros(output.raw.shape[0])
    terms["mask"] = no_mask if targets.mask is None else _mask_term(output, targets.mask)
    if output.fine_mask_logits is not None and targets.fine_mask is not None:
        terms["mask_fine"] = mask_loss_per_sample(output.fine_mask_logits, targets.fine_mask)
    if output.direct_box is not None:
        valid = targets.yolo.valid.to(output.direct_box.dtype)
        gt = targets.yolo.boxes_xywh.to(output.direct_box.dtype) / card.input_size
        terms["box_l1"] = valid * l1_box_loss(output.direct_box, gt)
        terms["box_giou"] = valid * giou_loss(cxcywh_to_xyxy(output.direct_box), cxcywh_to_xyxy(gt))
    return terms


def _mask_term(output: GroundingOutput, target: torch.Tensor) -> torch.Tensor:
    """BCE of the stride-8 mask; with STEP's deep supervision the mean of the BCE of every P_t (the last is
    the output mask, so a one-step STEP gives the plain term)."""
    if output.step_mask_logits is None:
        return mask_loss_per_sample(output.mask_logits, target)
    return torch.stack([mask_loss_per_sample(logits, target) for logits in output.step_mask_logits]).mean(0)
