"""Image preprocessing for grid cards: PIL load -> RGB -> bilinear resize -> [0, 1] -> mean/std -> [3, H, W].

No torchvision: the steps are few and fixed by the card, so the same function serves training, the embed
job and the search page, and a card fully determines what a model sees.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from hrem.utils.images import load_image_file

ImageLike = Union[str, Path, Image.Image, np.ndarray]


def load_rgb(image: ImageLike) -> Image.Image:
    """A PIL RGB image from a path, a PIL image or an HxW / HxWx3 / HxWx4 uint8 array."""
    if isinstance(image, (str, Path)):
        return load_image_file(image)  # header-checked against the pixel budget before decoding
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"image array: expected uint8 HxW or HxWxC, found {image.dtype} {image.shape}")
        return Image.fromarray(image).convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    raise TypeError(f"image: expected a path, PIL image or uint8 array, found {type(image).__name__}")


class ImagePreprocessor:
    """Callable: image -> float32 tensor [3, size, size] normalised with the card's mean and std."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean/std: expected 3 values each, found {len(mean)} and {len(std)}")
        self.size = int(size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: ImageLike) -> torch.Tensor:
        img = load_rgb(image)
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BILINEAR)
        array = np.asarray(img, dtype=np.float32) / 255.0           # [H, W, 3]
        pixels = torch.from_numpy(array.copy()).permute(2, 0, 1)     # [3, H, W]
        return (pixels - self.mean) / self.std

    def __repr__(self) -> str:
        mean, std = self.mean.flatten().tolist(), self.std.flatten().tolist()
        return f"ImagePreprocessor(size={self.size}, mean={mean}, std={std})"
