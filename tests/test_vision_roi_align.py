"""RoIAlign via grid_sample (hrem.vision.roi_align) against a literal loop of torchvision's algorithm, and
NMS / IoU (hrem.vision.boxes) against naive loops."""
import math

import pytest
import torch

from hrem.vision.boxes import box_iou, nms
from hrem.vision.roi_align import roi_align


def _bilinear(fmap, y, x):
    """torchvision's bilinear_interpolate for one channel map [H, W]."""
    height, width = fmap.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * fmap[y_low, x_low] + hy * lx * fmap[y_low, x_high] + ly * hx * fmap[y_high, x_low]
            + ly * lx * fmap[y_high, x_high])


def _naive_roi_align(features, box, out, scale, ratio):
    channels = features.shape[0]
    x1, y1, x2, y2 = [v * scale - 0.5 for v in box]
    bin_h, bin_w = (y2 - y1) / out, (x2 - x1) / out
    result = torch.zeros(channels, out, out, dtype=torch.float64)
    for c in range(channels):
        for ph in range(out):
            for pw in range(out):
                total = 0.0
                for iy in range(ratio):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / ratio
                    for ix in range(ratio):
                        x = x1 + pw * bin_w + (ix + 0.5) * bin_w / ratio
                        total += float(_bilinear(features[c], y, x))
                result[c, ph, pw] = total / (ratio * ratio)
    return result


@pytest.mark.parametrize("scale,ratio", [(1.0, 2), (0.125, 2), (0.25, 1), (0.5, 3)])
def test_roi_align_matches_torchvision_algorithm(scale, ratio):
    g = torch.Generator().manual_seed(int(scale * 100) + ratio)
    features = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    side = 11 / scale
    boxes = [torch.tensor([[0.0, 0.0, side, side], [3.2, 1.1, 20.7, 15.5], [-6.0, -4.0, 8.0, 5.0]],
                          dtype=torch.float64) * (scale * 8 if scale < 1 else 1),
             torch.tensor([[side * 0.9, side * 0.8, side * 1.2, side * 1.1]], dtype=torch.float64)]
    got = roi_align(features, boxes, 3, scale, ratio)
    expected = torch.stack([_naive_roi_align(features[b], box.tolist(), 3, scale, ratio)
                            for b, rows in enumerate(boxes) for box in rows])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_roi_align_empty_and_errors():
    features = torch.randn(1, 4, 8, 8)
    assert roi_align(features, [torch.zeros(0, 4)], 2, 1.0).shape == (0, 4, 2, 2)
    with pytest.raises(ValueError, match="one box tensor per image"):
        roi_align(features, [], 2, 1.0)


def _naive_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_iou_and_nms_match_naive():
    g = torch.Generator().manual_seed(0)
    lo = torch.rand(40, 2, generator=g) * 50
    boxes = torch.cat([lo, lo + 5 + torch.rand(40, 2, generator=g) * 20], dim=1)
    scores = torch.rand(40, generator=g)
    iou = box_iou(boxes, boxes)
    for i in range(5):
        for j in range(40):
            assert math.isclose(float(iou[i, j]), _naive_iou(boxes[i].tolist(), boxes[j].tolist()), rel_tol=1e-5)
    order = sorted(range(40), key=lambda i: -float(scores[i]))
    kept = []
    for i in order:
        if all(_naive_iou(boxes[i].tolist(), boxes[k].tolist()) <= 0.3 for k in kept):
            kept.append(i)
    assert nms(boxes, scores, 0.3).tolist() == kept
