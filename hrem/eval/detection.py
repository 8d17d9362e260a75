"""Detection metrics (numpy only): box AP at IoU 0.5 and attribute accuracy of matched objects.

- **AP50** (class-agnostic): all detections of the split sorted by score; a detection is a true positive
  when its IoU with a not-yet-matched object of its image is >= 0.5 (greedy, best score first, the
  VOC / COCO rule); AP = area under the precision-recall curve with all-point interpolation (precision made
  monotone from the right, summed over recall steps; VOC 2010+).
- **per-class mAP50**: the same per object class, a detection's class being its predicted label.
- **attribute accuracy**: for every ground-truth object, the highest-scoring detection with IoU >= 0.5 in
  its image is its match; an attribute is correct when the match predicts it; an unmatched object counts
  as wrong for every attribute. "all" = every attribute (and the object class) right at once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5
COMBINED_SCORE = "ap50+attributes"   # box AP50 + joint attribute accuracy (both in %): one number to select by


@dataclass(frozen=True)
class ImageDetections:
    boxes: np.ndarray                  # [K, 4] x1, y1, x2, y2
    scores: np.ndarray                 # [K]
    labels: dict[str, np.ndarray]      # "object" + attributes, [K] each


@dataclass(frozen=True)
class ImageObjects:
    boxes: np.ndarray                  # [M, 4]
    labels: dict[str, np.ndarray]      # [M] each


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4] x [M, 4] xyxy -> [N, M] IoU."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def average_precision(scores: np.ndarray, true_positive: np.ndarray, n_objects: int) -> float:
    """All-point interpolated AP (in [0, 1]) of detections with these scores and TP flags."""
    if n_objects == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.asarray(true_positive, np.float64)[order]
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(1 - tp)
    recall = tp_sum / n_objects
    precision = tp_sum / np.maximum(tp_sum + fp_sum, 1e-12)
    recall = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    precision = np.concatenate([[1.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def greedy_true_positives(det: ImageDetections, gt: ImageObjects, mask_det: np.ndarray | None = None,
                          mask_gt: np.ndarray | None = None) -> np.ndarray:
    """TP flag per detection of one image (optionally restricted to a subset of detections / objects)."""
    keep_det = np.ones(len(det.scores), bool) if mask_det is None else mask_det
    keep_gt = np.ones(len(gt.boxes), bool) if mask_gt is None else mask_gt
    iou = iou_matrix(det.boxes, gt.boxes)
    iou[:, ~keep_gt] = 0.0
    taken = np.zeros(len(gt.boxes), bool)
    tp = np.zeros(len(det.scores), bool)
    for i in np.argsort(-det.scores, kind="stable"):
        if not keep_det[i] or not len(gt.boxes):
            continue
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= IOU_THRESHOLD:
            taken[j], tp[i] = True, True
    return tp


def _ap(detections: Sequence[ImageDetections], objects: Sequence[ImageObjects], cls: int | None) -> float:
    scores, flags, total = [], [], 0
    for det, gt in zip(detections, objects):
        mask_det = None if cls is None else det.labels["object"] == cls
        mask_gt = None if cls is None else gt.labels["object"] == cls
        tp = greedy_true_positives(det, gt, mask_det, mask_gt)
        chosen = np.ones(len(tp), bool) if mask_det is None else mask_det
        scores.append(det.scores[chosen])
        flags.append(tp[chosen])
        total += len(gt.boxes) if mask_gt is None else int(mask_gt.sum())
    return average_precision(np.concatenate(scores) if scores else np.zeros(0),
                             np.concatenate(flags) if flags else np.zeros(0), total)


def attribute_accuracy(detections: Sequence[ImageDetections], objects: Sequence[ImageObjects]) -> dict[str, float]:
    names = list(objects[0].labels) if objects else []
    correct = {n: 0 for n in names + ["all"]}
    total = 0
    for det, gt in zip(detections, objects):
        iou = iou_matrix(det.boxes, gt.boxes)
        for j in range(len(gt.boxes)):
            total += 1
            hits = np.flatnonzero(iou[:, j] >= IOU_THRESHOLD)
            if not len(hits):
                continue
            best = hits[np.argmax(det.scores[hits])]
            right = {n: det.labels[n][best] == gt.labels[n][j] for n in names}
            for n, ok in right.items():
                correct[n] += int(ok)
            correct["all"] += int(all(right.values()))
    return {n: 100.0 * c / max(total, 1) for n, c in correct.items()}


def detection_report(detections: Sequence[ImageDetections], objects: Sequence[ImageObjects],
                     object_names: Sequence[str]) -> dict:
    """{"ap50", "map50", "ap50_per_object", "attribute_accuracy", "objects", "images"} (percentages)."""
    if len(detections) != len(objects):
        raise ValueError(f"detections: expected one entry per image ({len(objects)}), found {len(detections)}")
    per_class = {name: 100.0 * _ap(detections, objects, c) for c, name in enumerate(object_names)}
    present = [v for v in per_class.values() if not np.isnan(v)]
    return {"ap50": 100.0 * _ap(detections, objects, None), "map50": float(np.mean(present)) if present else float("nan"),
            "ap50_per_object": per_class, "attribute_accuracy": attribute_accuracy(detections, objects),
            "objects": int(sum(len(o.boxes) for o in objects)), "images": len(objects)}
