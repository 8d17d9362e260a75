"""Letterboxing to the S x S model input and the exact way back, for images, boxes and masks.

Forward (K): scale = min(S / W, S / H); the image is resized to nw = floor(W * scale), nh = floor(H * scale)
with PIL bicubic, pasted on a grey (128, 128, 128) canvas at dx = (S - nw) // 2, dy = (S - nh) // 2, and
divided by 255 (no mean / std). nw and nh are computed in integer arithmetic so that the long side is
exactly S (K's float `int(iw * scale)` can drop a pixel).
Boxes are mapped with the scales the pixels actually underwent, sx = nw / W and sy = nh / H (K uses
`scale` for both axes, which differs by under one pixel), so box -> letterbox -> box is exact.
Masks use nearest sampling at pixel centres (src = floor((dst + 0.5) * in / out)); the way back crops the
padding and resizes to H x W. Probability maps go back bilinearly (K: cv2.resize of the crop), then the
caller thresholds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

PAD_VALUE = 128


@dataclass(frozen=True)
class LetterboxMeta:
    width: int  # original image width W
    height: int  # original image height H
    size: int  # model input side S
    new_width: int  # nw, the resized image inside the canvas
    new_height: int  # nh
    dx: int  # left padding
    dy: int  # top padding

    @property
    def scale_x(self) -> float:
        return self.new_width / self.width

    @property
    def scale_y(self) -> float:
        return self.new_height / self.height

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def letterbox_meta(width: int, height: int, size: int) -> LetterboxMeta:
    """The geometry of letterboxing a W x H image into S x S."""
    if width <= 0 or height <= 0 or size <= 0:
        raise ValueError(
            f"letterbox: expected positive sizes, found width={width} height={height} size={size}"
        )
    longest = max(width, height)
    nw = max(1, width * size // longest)  # == floor(W * min(S / W, S / H)) without float error
    nh = max(1, height * size // longest)
    return LetterboxMeta(width, height, size, nw, nh, (size - nw) // 2, (size - nh) // 2)


def letterbox_image(image: Image.Image | np.ndarray, size: int) -> tuple[np.ndarray, LetterboxMeta]:
    """RGB image -> (float32 [3, S, S] in [0, 1], meta)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    meta = letterbox_meta(image.width, image.height, size)
    canvas = Image.new("RGB", (size, size), (PAD_VALUE,) * 3)
    canvas.paste(image.resize((meta.new_width, meta.new_height), Image.BICUBIC), (meta.dx, meta.dy))
    return (np.asarray(canvas, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy(), meta


def _to_xyxy(box: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "xyxy":
        return box.copy()
    if fmt == "xywh":
        return np.concatenate([box[..., :2], box[..., :2] + box[..., 2:]], axis=-1)
    raise ValueError(f"box format: expected 'xyxy' or 'xywh', found {fmt!r}")


def _from_xyxy(box: np.ndarray, fmt: str) -> np.ndarray:
    return box if fmt == "xyxy" else np.concatenate([box[..., :2], box[..., 2:] - box[..., :2]], axis=-1)


def box_to_letterbox(box, meta: LetterboxMeta, fmt: str = "xyxy") -> np.ndarray:
    """Original-pixel box(es) [..., 4] -> letterbox pixels, same format."""
    xyxy = _to_xyxy(np.asarray(box, dtype=np.float64), fmt)
    xyxy[..., 0::2] = xyxy[..., 0::2] * meta.scale_x + meta.dx
    xyxy[..., 1::2] = xyxy[..., 1::2] * meta.scale_y + meta.dy
    return _from_xyxy(xyxy, fmt)


def box_from_letterbox(box, meta: LetterboxMeta, fmt: str = "xyxy", clip: bool = True) -> np.ndarray:
    """Letterbox-pixel box(es) [..., 4] -> original pixels; `clip` keeps them inside the image."""
    xyxy = _to_xyxy(np.asarray(box, dtype=np.float64), fmt)
    xyxy[..., 0::2] = (xyxy[..., 0::2] - meta.dx) / meta.scale_x
    xyxy[..., 1::2] = (xyxy[..., 1::2] - meta.dy) / meta.scale_y
    if clip:
        xyxy[..., 0::2] = xyxy[..., 0::2].clip(0, meta.width)
        xyxy[..., 1::2] = xyxy[..., 1::2].clip(0, meta.height)
    return _from_xyxy(xyxy, fmt)


def _nearest_index(out_len: int, in_len: int) -> np.ndarray:
    """Source index of each destination pixel for nearest resizing, sampled at pixel centres."""
    return np.minimum(((np.arange(out_len) + 0.5) * in_len / out_len).astype(np.int64), in_len - 1)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    rows, cols = _nearest_index(height, mask.shape[0]), _nearest_index(width, mask.shape[1])
    return mask[rows[:, None], cols[None, :]]


def mask_to_letterbox(mask: np.ndarray, meta: LetterboxMeta) -> np.ndarray:
    """Original mask [H, W] (any values, > 0 is foreground) -> bool [S, S] with empty padding."""
    _check_shape(mask, (meta.height, meta.width), "mask")
    out = np.zeros((meta.size, meta.size), dtype=bool)
    out[meta.dy : meta.dy + meta.new_height, meta.dx : meta.dx + meta.new_width] = resize_nearest(
        np.asarray(mask) > 0, meta.new_height, meta.new_width
    )
    return out


def mask_from_letterbox(mask: np.ndarray, meta: LetterboxMeta) -> np.ndarray:
    """Letterboxed bool mask [S, S] -> bool [H, W]: crop the padding, nearest-resize."""
    _check_shape(mask, (meta.size, meta.size), "letterboxed mask")
    crop = np.asarray(mask)[meta.dy : meta.dy + meta.new_height, meta.dx : meta.dx + meta.new_width]
    return resize_nearest(crop > 0, meta.height, meta.width)


def probs_from_letterbox(probs: torch.Tensor, meta: LetterboxMeta) -> torch.Tensor:
    """Letterboxed probability map [S, S] -> [H, W]: crop the padding, bilinear resize (K's eval path)."""
    _check_shape(probs, (meta.size, meta.size), "letterboxed probability map")
    crop = probs[meta.dy : meta.dy + meta.new_height, meta.dx : meta.dx + meta.new_width]
    return F.interpolate(
        crop[None, None], size=(meta.height, meta.width), mode="bilinear", align_corners=False
    )[0, 0]


def _check_shape(array, expected: tuple[int, int], what: str) -> None:
    if tuple(array.shape) != expected:
        raise ValueError(f"{what}: expected shape {expected}, found {tuple(array.shape)}")


class SampleLetterbox:
    """(image, box xyxy, mask | None) -> (pixels [3, S, S], letterboxed box [4], bool mask [S, S] | None,
    meta): what the grounding datasets of hrem.data apply to each sample (picklable for DataLoader workers)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image | np.ndarray, box_xyxy: np.ndarray, mask: np.ndarray | None):
        pixels, meta = letterbox_image(image, self.size)
        box = box_to_letterbox(box_xyxy, meta)
        return pixels, box, None if mask is None else mask_to_letterbox(mask, meta), meta
