"""Image -> (letterboxed pixels [3, S, S] in [0, 1], content rect [6]): the input of region detectors.

The content rect (hrem.vision.region_rows.content_rect) travels with the pixels so that box geometry is
measured on the original image, not on the padded square; `hrem.data.collate.collate_images` stacks such
pairs into ImageBatch(pixels, content).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hrem.utils.images import load_image_file
from hrem.vision.letterbox import letterbox_image
from hrem.vision.region_rows import content_rect


class LetterboxPreprocessor:
    """Picklable callable for DataLoader workers: path / PIL / uint8 array -> (pixels, content)."""

    def __init__(self, size: int) -> None:
        if size < 16:
            raise ValueError(f"letterbox size: expected >= 16 pixels, found {size}")
        self.size = int(size)

    def __call__(self, image: str | Path | Image.Image | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(image, (str, Path)):
            image = load_image_file(image)  # pixel budget checked from the header before decoding
        pixels, meta = letterbox_image(image, self.size)
        return torch.from_numpy(pixels), content_rect(meta)

    def __repr__(self) -> str:
        return f"LetterboxPreprocessor(size={self.size})"
