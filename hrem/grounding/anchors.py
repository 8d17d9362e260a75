"""YOLO anchors by k-means on the training boxes' (w, h) with the distance 1 - IoU (boxes centred).

The training job calls `kmeans_anchors` on the letterboxed training boxes and stores the result in the
card's `anchors` (K ships fixed anchors in data/yolo_anchors.txt; the IoU k-means is how YOLO made them).
"""

from __future__ import annotations

import numpy as np


def shape_iou_np(wh: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """IoU of centred boxes [N, 2] against centres [K, 2] -> [N, K]."""
    inter = np.minimum(wh[:, None, :], centres[None]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + centres.prod(-1)[None] - inter)


def kmeans_anchors(boxes_wh: np.ndarray, k: int = 3, seed: int = 0, max_iter: int = 300) -> np.ndarray:
    """k anchors [k, 2] (w, h), sorted by area, from boxes [N, 2] with positive sides.

    Lloyd iterations with the nearest centre by IoU and the cluster mean as the new centre; an empty
    cluster keeps its previous centre. Deterministic for a given seed.
    """
    wh = np.asarray(boxes_wh, dtype=np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"boxes_wh: expected shape [N, 2], found {wh.shape}")
    if len(wh) < k:
        raise ValueError(f"boxes_wh: expected at least k={k} boxes, found {len(wh)}")
    if (wh <= 0).any():
        raise ValueError(
            f"boxes_wh: expected positive widths and heights, found {int((wh <= 0).any(1).sum())} "
            "degenerate box(es)"
        )
    rng = np.random.default_rng(seed)
    centres = wh[rng.choice(len(wh), size=k, replace=False)].copy()
    assignment = np.full(len(wh), -1)
    for _ in range(max_iter):
        new_assignment = shape_iou_np(wh, centres).argmax(axis=1)
        if np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        for cluster in range(k):
            members = wh[assignment == cluster]
            if len(members):
                centres[cluster] = members.mean(axis=0)
    return centres[np.argsort(centres.prod(axis=1))]


def mean_best_iou(boxes_wh: np.ndarray, anchors: np.ndarray) -> float:
    """Average over boxes of the best anchor IoU: the usual quality figure of a set of anchors."""
    return float(
        shape_iou_np(np.asarray(boxes_wh, np.float64), np.asarray(anchors, np.float64)).max(1).mean()
    )
