"""Streaming grounding evaluation: add per batch, `summary()` at the end (definitions in hrem.eval.grounding).

Only per-sample numbers are kept (box IoU, mask intersection and union), never the masks, so memory is
O(samples). Boxes only (REC), masks only (RES) or both may be evaluated, but every batch must carry the
same kinds; the inconsistency error needs both.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hrem.eval.grounding import PREC_THRESHOLDS, SUCCESS_IOU, box_iou, mask_intersection_union


class GroundingAccumulator:
    def __init__(self) -> None:
        self._box_iou: list[np.ndarray] = []
        self._inter: list[np.ndarray] = []
        self._union: list[np.ndarray] = []
        self._kinds: tuple[bool, bool] | None = None  # (has boxes, has masks), fixed by the first batch

    def add(self, pred_boxes: np.ndarray | None = None, gt_boxes: np.ndarray | None = None,
            pred_masks: Sequence[Any] | None = None, gt_masks: Sequence[Any] | None = None) -> None:
        """One batch of paired predictions / ground truths in original image pixels."""
        kinds = self._batch_kinds(pred_boxes, gt_boxes, pred_masks, gt_masks)
        if kinds[0]:
            self._box_iou.append(box_iou(pred_boxes, gt_boxes))
        if kinds[1]:
            inter, union = mask_intersection_union(pred_masks, gt_masks)
            self._inter.append(inter)
            self._union.append(union)
        if kinds[0] and kinds[1] and len(self._box_iou[-1]) != len(self._inter[-1]):
            raise ValueError(f"batch: expected as many boxes as masks, found {len(self._box_iou[-1])} "
                             f"and {len(self._inter[-1])}")

    def _batch_kinds(self, pred_boxes, gt_boxes, pred_masks, gt_masks) -> tuple[bool, bool]:
        if (pred_boxes is None) != (gt_boxes is None) or (pred_masks is None) != (gt_masks is None):
            raise ValueError("batch: expected predictions and ground truths in pairs (boxes with boxes, "
                             "masks with masks), found one of a pair missing")
        kinds = (pred_boxes is not None, pred_masks is not None)
        if not any(kinds):
            raise ValueError("batch: expected boxes and/or masks, found neither")
        if self._kinds is not None and kinds != self._kinds:
            raise ValueError("batch: expected the same kinds as the first batch, (boxes, masks) = "
                             f"{self._kinds}, "
                             f"found {kinds}")
        self._kinds = kinds
        return kinds

    @property
    def n_samples(self) -> int:
        return int(sum(len(x) for x in (self._box_iou or self._inter)))

    def summary(self) -> dict:
        """Metrics in percent (see hrem.eval.grounding), plus `n_samples` and `task`."""
        if self.n_samples == 0:
            raise ValueError("grounding summary: expected at least one sample, found none (add() was never "
                             "called with data)")
        out: dict = {"task": "grounding", "n_samples": self.n_samples}
        box_ok = mask_ok = None
        if self._kinds[0]:
            ious = np.concatenate(self._box_iou)
            box_ok = ious > SUCCESS_IOU
            out["acc@0.5"] = 100.0 * float(box_ok.mean())
            out["box_miou"] = 100.0 * float(ious.mean())
        if self._kinds[1]:
            inter, union = np.concatenate(self._inter), np.concatenate(self._union)
            ious = np.divide(inter, union, out=np.zeros(len(inter)), where=union > 0)
            mask_ok = ious > SUCCESS_IOU
            out["miou"] = 100.0 * float(ious.mean())
            total_union = int(union.sum())
            out["oiou"] = 100.0 * float(inter.sum()) / total_union if total_union else 0.0
            for threshold in PREC_THRESHOLDS:
                out[f"prec@{threshold:.2f}"] = 100.0 * float((ious > threshold).mean())
        if box_ok is not None and mask_ok is not None:
            out["ie"] = 100.0 * float((box_ok != mask_ok).mean())
        return out


def grounding_summary(pred_boxes: np.ndarray | None = None, gt_boxes: np.ndarray | None = None,
                      pred_masks: Sequence[Any] | None = None, gt_masks: Sequence[Any] | None = None) -> dict:
    """Functional form: every sample at once."""
    accumulator = GroundingAccumulator()
    accumulator.add(pred_boxes, gt_boxes, pred_masks, gt_masks)
    return accumulator.summary()
