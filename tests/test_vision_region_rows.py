"""Region rows (hrem.vision.region_rows): geometry columns and the way back to original pixels, against
naive per-box arithmetic on letterboxed images of several shapes."""
import numpy as np
import pytest
import torch
from PIL import Image

from hrem.vision.letterbox import box_from_letterbox, letterbox_meta
from hrem.vision.preprocess import LetterboxPreprocessor
from hrem.vision.region_rows import box_geometry, boxes_to_original, content_rect, square_content


@pytest.mark.parametrize("width,height", [(128, 128), (200, 100), (60, 150)])
def test_geometry_and_original_boxes_match_naive(width, height):
    meta = letterbox_meta(width, height, 128)
    content = content_rect(meta)
    g = torch.Generator().manual_seed(width)
    lo = torch.rand(7, 2, generator=g) * 100
    boxes = torch.cat([lo, lo + torch.rand(7, 2, generator=g) * 40 + 1], dim=1)
    original = boxes_to_original(boxes[None], content[None])[0]
    expected = box_from_letterbox(boxes.numpy(), meta)     # the grounding stage's exact inverse
    np.testing.assert_allclose(original.numpy(), expected, rtol=1e-5, atol=1e-3)
    geometry = box_geometry(boxes[None], content[None])[0]
    for box, row in zip(expected, geometry.numpy()):
        x1, y1, x2, y2 = box
        naive = [x1 / width, y1 / height, x2 / width, y2 / height, (x2 - x1) * (y2 - y1) / (width * height)]
        np.testing.assert_allclose(row, naive, rtol=1e-4, atol=1e-5)


def test_square_content_is_identity_for_full_squares():
    boxes = torch.tensor([[[10.0, 20.0, 50.0, 60.0]]])
    np.testing.assert_allclose(boxes_to_original(boxes, square_content(1, 128)), boxes)
    np.testing.assert_allclose(box_geometry(boxes, square_content(1, 128))[0, 0],
                               [10 / 128, 20 / 128, 50 / 128, 60 / 128, 1600 / 128 ** 2], rtol=1e-6)


def test_letterbox_preprocessor_returns_pixels_and_content(tmp_path):
    Image.fromarray(np.full((50, 100, 3), 200, np.uint8)).save(tmp_path / "a.png")
    pixels, content = LetterboxPreprocessor(64)(tmp_path / "a.png")
    assert pixels.shape == (3, 64, 64) and content.tolist() == [0.0, 16.0, 64.0, 32.0, 100.0, 50.0]
    with pytest.raises(FileNotFoundError, match="no such image file"):
        LetterboxPreprocessor(64)(tmp_path / "missing.png")
