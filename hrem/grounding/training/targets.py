"""Training targets of one batch: YOLO targets for the box, the stride-8 mask target (K `get_random_data`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hrem.grounding.yolo import YoloTargets, build_yolo_targets

MASK_STRIDE = 8
FINE_MASK_STRIDE = 4  # the stride-4 target of hrem's mask_refine option


@dataclass(frozen=True)
class GroundingTargets:
    yolo: YoloTargets
    mask: torch.Tensor | None  # [B, 1, S/8, S/8] float 0/1, or None to train without the RES loss
    fine_mask: torch.Tensor | None = None  # [B, 1, S/4, S/4] for mask_refine, else None

    def to(self, device: torch.device | str) -> GroundingTargets:
        move = (lambda t: None if t is None else t.to(device))
        return GroundingTargets(self.yolo.to(device), move(self.mask), move(self.fine_mask))


def mask_target(masks: torch.Tensor, stride: int = MASK_STRIDE) -> torch.Tensor:
    """Letterboxed masks [B, S, S] -> [B, 1, S/stride, S/stride] by nearest sampling at cell centres.

    K resizes the letterboxed mask to 1/8 with nearest interpolation; sampling the pixel at each cell's
    centre (row 8i + 4) is that, without OpenCV's bias toward the top-left pixel of every cell.
    """
    if masks.dim() != 3 or masks.shape[1] % stride or masks.shape[2] % stride:
        raise ValueError(
            f"masks: expected [B, S, S] with S a multiple of {stride}, found {tuple(masks.shape)}"
        )
    centre = stride // 2
    return (masks[:, centre::stride, centre::stride] > 0).float().unsqueeze(1)


def build_targets(
    boxes_xyxy: torch.Tensor, anchors: torch.Tensor, input_size: int, masks: torch.Tensor | None = None,
    fine_mask: bool = False,
) -> GroundingTargets:
    """Targets from letterboxed GT boxes [B, 4] (x1, y1, x2, y2 input pixels) and masks [B, S, S];
    `fine_mask` adds the stride-4 target of the card's mask_refine."""
    if masks is not None and tuple(masks.shape[1:]) != (input_size, input_size):
        raise ValueError(
            f"masks: expected [B, {input_size}, {input_size}] letterboxed masks, found {tuple(masks.shape)}"
        )
    yolo = build_yolo_targets(boxes_xyxy, anchors, input_size)
    if masks is None:
        return GroundingTargets(yolo, None)
    return GroundingTargets(yolo, mask_target(masks), mask_target(masks, FINE_MASK_STRIDE) if fine_mask else None)
