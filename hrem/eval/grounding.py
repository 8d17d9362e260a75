"""Grounding metrics (REC box + RES mask) per (image, expression) sample, in original image pixels.

Conventions (MCN, REFERENCE_MCN.md §4):
* Boxes are [x1, y1, x2, y2] in continuous original-image coordinates: area = (x2 - x1) * (y2 - y1), no +1.
  A box covering pixel columns 0 … W-1 is [0, 0, W, H]. Boxes are used as given (the grounding stage
  clamps predictions to the image); x2 < x1 or y2 < y1 is an error. `xywh_to_xyxy` converts COCO boxes.
* Masks are 2-D arrays of each sample's original size (bool, or integers where nonzero = foreground; COCO
  RLE dicts are decoded). Float masks are rejected: threshold probabilities first.
* IoU with an empty union (two empty masks, or two zero-area boxes) is 0, as in the common referring-
  segmentation evaluators (LAVT/CRIS `computeIoU`); a referring expression always has a non-empty target.

Metrics, all in percent over samples:
* `acc@0.5`: box IoU > 0.5 (strict, like MCN K `cal_detect_iou`); `box_miou`: mean box IoU.
* `miou`: mean of per-sample mask IoU (what MCN tables call mIoU); `oiou`: ΣI / ΣU over all samples.
* `prec@X`, X = 0.50, 0.55, …, 0.95: mask IoU > X (strict).
* `ie`: inconsistency error, the share of samples where exactly one of (box IoU > 0.5, mask IoU > 0.5) holds.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hrem.eval.rle import rle_decode

PREC_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
SUCCESS_IOU = 0.5


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO [x, y, w, h] -> [x1, y1, x2, y2] (float64)."""
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([array[:, :2], array[:, :2] + array[:, 2:]], axis=1)


def _check_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name}: expected [n, 4] boxes [x1, y1, x2, y2], found shape {array.shape}")
    inverted = (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
    bad = np.flatnonzero(inverted | ~np.isfinite(array).all(axis=1))
    if bad.size:
        raise ValueError(f"{name}: expected x2 >= x1, y2 >= y1 and finite values, "
                         f"found {array[bad[0]].tolist()} "
                         f"at sample {int(bad[0])} ({bad.size} bad boxes)")
    return array


def box_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Element-wise IoU of paired boxes [n, 4] (not all pairs), float64 [n]."""
    p, g = _check_boxes(pred, "pred_boxes"), _check_boxes(gt, "gt_boxes")
    if p.shape != g.shape:
        raise ValueError(f"boxes: expected as many predictions as ground truths, found {len(p)} and {len(g)}")
    width = np.clip(np.minimum(p[:, 2], g[:, 2]) - np.maximum(p[:, 0], g[:, 0]), 0, None)
    height = np.clip(np.minimum(p[:, 3], g[:, 3]) - np.maximum(p[:, 1], g[:, 1]), 0, None)
    inter = width * height
    union = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]) + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def as_binary_mask(mask: Any, name: str) -> np.ndarray:
    """A 2-D boolean mask from a bool / integer array or a COCO RLE dict."""
    if isinstance(mask, dict):
        return rle_decode(mask)
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mask of the original image size, found shape {array.shape}")
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: expected a bool or integer mask, found dtype {array.dtype}; threshold "
                         "probability maps before evaluating")
    return array != 0


def mask_intersection_union(pred: Sequence[Any], gt: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample pixel counts (intersection [n], union [n]) of paired masks of possibly different sizes."""
    if len(pred) != len(gt):
        raise ValueError(f"masks: expected as many predictions as ground truths, "
                         f"found {len(pred)} and {len(gt)}")
    inter, union = np.zeros(len(gt), dtype=np.int64), np.zeros(len(gt), dtype=np.int64)
    for i, (p_raw, g_raw) in enumerate(zip(pred, gt)):
        p, g = as_binary_mask(p_raw, f"pred_masks[{i}]"), as_binary_mask(g_raw, f"gt_masks[{i}]")
        if p.shape != g.shape:
            raise ValueError(f"masks[{i}]: expected the prediction at the original image size {g.shape}, "
                             f"found {p.shape}")
        inter[i], union[i] = np.count_nonzero(p & g), np.count_nonzero(p | g)
    return inter, union


def mask_iou(pred: Sequence[Any], gt: Sequence[Any]) -> np.ndarray:
    """Per-sample mask IoU, float64 [n]; an empty union gives 0."""
    inter, union = mask_intersection_union(pred, gt)
    return np.divide(inter, union, out=np.zeros(len(inter)), where=union > 0)
