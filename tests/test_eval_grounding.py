"""Grounding metrics against pixel-counting brute force written here."""
import numpy as np
import pytest

from hrem.eval import (PREC_THRESHOLDS, GroundingAccumulator, box_iou, grounding_summary, mask_iou,
                       rle_encode, xywh_to_xyxy)


def raster_box(box, height, width):
    """Pixels (r, c) whose unit square [c, c+1) x [r, r+1) lies in an integer box [x1, y1, x2, y2]."""
    mask = np.zeros((height, width), dtype=bool)
    x1, y1, x2, y2 = (int(v) for v in box)
    for r in range(height):
        for c in range(width):
            mask[r, c] = x1 <= c < x2 and y1 <= r < y2
    return mask


def naive_iou(a, b):
    inter = sum(1 for x, y in zip(a.ravel(), b.ravel()) if x and y)
    union = sum(1 for x, y in zip(a.ravel(), b.ravel()) if x or y)
    return inter / union if union else 0.0


def random_integer_boxes(rng, n, height, width):
    x = np.sort(rng.integers(0, width + 1, size=(n, 2)), axis=1)
    y = np.sort(rng.integers(0, height + 1, size=(n, 2)), axis=1)
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(float)


def test_box_iou_equals_pixel_count_iou_including_image_borders():
    rng = np.random.default_rng(0)
    height, width = 9, 11
    pred, gt = random_integer_boxes(rng, 60, height, width), random_integer_boxes(rng, 60, height, width)
    pred[:5] = [0, 0, width, height]  # whole image
    gt[:3] = [[0, 0, 4, 4], [width - 3, height - 2, width, height], [0, 0, width, height]]  # corners, full
    got = box_iou(pred, gt)
    want = [naive_iou(raster_box(p, height, width), raster_box(g, height, width)) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert got[2] == 1.0


def test_box_iou_continuous_and_degenerate():
    pred = np.array([[0.5, 0.5, 2.5, 2.5], [1, 1, 1, 5], [0, 0, 1, 1]])
    gt = np.array([[1.5, 1.5, 3.5, 3.5], [1, 1, 1, 5], [2, 2, 3, 3]])
    np.testing.assert_allclose(box_iou(pred, gt), [1.0 / 7.0, 0.0, 0.0])  # zero-area union -> 0
    np.testing.assert_array_equal(xywh_to_xyxy([[2, 3, 4, 5]]), [[2, 3, 6, 8]])
    with pytest.raises(ValueError, match="x2 >= x1.*sample 1"):
        box_iou(np.array([[0, 0, 1, 1], [3, 0, 2, 1]]), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\[n, 4\]"):
        box_iou(np.zeros((2, 3)), np.zeros((2, 3)))


def random_masks(rng, shapes, density):
    return [rng.random(shape) < density for shape in shapes]


def test_mask_iou_varying_shapes_empty_union_and_formats():
    rng = np.random.default_rng(1)
    shapes = [(5, 7), (8, 3), (1, 1), (6, 6)]
    pred, gt = random_masks(rng, shapes, 0.4), random_masks(rng, shapes, 0.5)
    pred[2][:], gt[2][:] = False, False  # both empty: IoU 0 by convention
    want = [naive_iou(p, g) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(mask_iou(pred, gt), want)
    as_uint8 = [p.astype(np.uint8) * 255 for p in pred]
    as_rle = [rle_encode(g) for g in gt]
    np.testing.assert_allclose(mask_iou(as_uint8, as_rle), want)
    with pytest.raises(ValueError, match=r"masks\[1\].*\(8, 3\).*\(3, 8\)"):
        mask_iou([pred[0], pred[1].T], gt[:2])
    with pytest.raises(ValueError, match="threshold probability"):
        mask_iou([pred[0].astype(np.float32)], gt[:1])


def brute_force_summary(pred_boxes, gt_boxes, pred_masks, gt_masks):
    n = len(gt_boxes)
    box = [naive_iou(raster_box(p, 12, 12), raster_box(g, 12, 12)) for p, g in zip(pred_boxes, gt_boxes)]
    inter = [int(np.logical_and(p, g).sum()) for p, g in zip(pred_masks, gt_masks)]
    union = [int(np.logical_or(p, g).sum()) for p, g in zip(pred_masks, gt_masks)]
    mask = [i / u if u else 0.0 for i, u in zip(inter, union)]
    out = {"acc@0.5": 100 * sum(v > 0.5 for v in box) / n, "box_miou": 100 * sum(box) / n,
           "miou": 100 * sum(mask) / n, "oiou": 100 * sum(inter) / sum(union),
           "ie": 100 * sum((b > 0.5) != (m > 0.5) for b, m in zip(box, mask)) / n}
    for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        out[f"prec@{t:.2f}"] = 100 * sum(m > t for m in mask) / n
    return out


def test_accumulator_in_batches_equals_brute_force():
    rng = np.random.default_rng(2)
    n = 40
    gt_boxes = random_integer_boxes(rng, n, 12, 12)
    pred_boxes = np.clip(gt_boxes + rng.integers(-2, 3, size=(n, 4)), 0, 12)
    pred_boxes[:, 2:] = np.maximum(pred_boxes[:, 2:], pred_boxes[:, :2])
    gt_masks = [raster_box(b, 12, 12) | (rng.random((12, 12)) < 0.05) for b in gt_boxes]
    pred_masks = [g ^ (rng.random((12, 12)) < 0.15) for g in gt_masks]
    acc = GroundingAccumulator()
    for start in range(0, n, 7):
        part = slice(start, start + 7)
        acc.add(pred_boxes[part], gt_boxes[part], pred_masks[part], gt_masks[part])
    got = acc.summary()
    want = brute_force_summary(pred_boxes, gt_boxes, pred_masks, gt_masks)
    assert got["n_samples"] == n and got["task"] == "grounding"
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert 0 < got["ie"] < 100 and 0 < got["acc@0.5"] < 100  # the data exercises both outcomes
    assert grounding_summary(pred_boxes, gt_boxes, pred_masks, gt_masks) == got
    assert [f"prec@{t:.2f}" for t in PREC_THRESHOLDS][-1] == "prec@0.95"


def test_thresholds_are_strict():
    gt = [np.array([[True, True]]), np.array([[True, True, True, True]])]
    pred = [np.array([[True, False]]), np.array([[True, True, True, False]])]  # IoU 0.5 and 0.75
    boxes_gt = np.array([[0, 0, 2, 1], [0, 0, 4, 1]], dtype=float)
    boxes_pred = np.array([[0, 0, 1, 1], [0, 0, 3, 1]], dtype=float)
    out = grounding_summary(boxes_pred, boxes_gt, pred, gt)
    assert out["acc@0.5"] == 50.0 and out["prec@0.50"] == 50.0  # IoU exactly 0.5 is not a success
    assert out["prec@0.70"] == 50.0 and out["prec@0.75"] == 0.0
    assert out["ie"] == 0.0 and out["oiou"] == pytest.approx(100 * 4 / 6)


def test_boxes_only_masks_only_and_errors():
    boxes = np.array([[0, 0, 2, 2]], dtype=float)
    only_boxes = grounding_summary(boxes, boxes)
    assert only_boxes["acc@0.5"] == 100.0 and "miou" not in only_boxes and "ie" not in only_boxes
    mask = [np.ones((2, 2), dtype=bool)]
    only_masks = grounding_summary(pred_masks=mask, gt_masks=mask)
    assert only_masks["miou"] == 100.0 and "acc@0.5" not in only_masks
    acc = GroundingAccumulator()
    with pytest.raises(ValueError, match="at least one sample"):
        acc.summary()
    acc.add(boxes, boxes)
    with pytest.raises(ValueError, match="same kinds"):
        acc.add(boxes, boxes, mask, mask)
    with pytest.raises(ValueError, match="pairs"):
        GroundingAccumulator().add(boxes, None)
    with pytest.raises(ValueError, match="as many boxes as masks"):
        GroundingAccumulator().add(boxes, boxes, mask * 2, mask * 2)
