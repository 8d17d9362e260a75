"""Adaptive Soft Non-Located Suppression (K `callbacks/eval.py: nls`), inference only.

Given the REC top box b (letterbox pixels, rounded and clamped, inclusive corners) and its confidence
s = sigma(obj), the RES probability map m is rescaled:
  inside b  (rows y1..y2, cols x1..x2):  m * (lamb_au * s + lamb_bu)   = m * (2 - s)   (enhance)
  outside:                               m * (lamb_ad * s + lamb_bd)   = m * s         (decay)
with K's defaults lambdas = (-1, 2, 1, 0). A fully confident box (s = 1) leaves m unchanged. Hard NLS
(no score) zeroes the outside and keeps the inside.
"""

from __future__ import annotations

import math

import torch

DEFAULT_LAMBDAS = (-1.0, 2.0, 1.0, 0.0)


def round_box(
    box_xyxy: tuple[float, float, float, float] | torch.Tensor, size: int
) -> tuple[int, int, int, int]:
    """K `box_value_fix`: round half up, clamp to [0, size]; the result is used with inclusive corners."""
    x1, y1, x2, y2 = (min(max(0, math.floor(float(v) + 0.5)), size) for v in box_xyxy)
    return x1, y1, x2, y2


def inside_box(
    shape: tuple[int, int], box: tuple[int, int, int, int], device: torch.device | None = None
) -> torch.Tensor:
    """[H, W] bool, True on rows y1..y2 and cols x1..x2 inclusive."""
    x1, y1, x2, y2 = box
    inside = torch.zeros(shape, dtype=torch.bool, device=device)
    inside[y1 : y2 + 1, x1 : x2 + 1] = True
    return inside


def asnls(
    prob: torch.Tensor,
    box: tuple[int, int, int, int],
    score: float,
    lambdas: tuple[float, float, float, float] = DEFAULT_LAMBDAS,
) -> torch.Tensor:
    """Rescale a probability map [..., H, W] around an integer box with confidence `score`."""
    lamb_au, lamb_bu, lamb_ad, lamb_bd = lambdas
    inside = inside_box(tuple(prob.shape[-2:]), box, prob.device)
    factor = torch.where(inside, lamb_au * score + lamb_bu, lamb_ad * score + lamb_bd).to(prob.dtype)
    return prob * factor


def hard_nls(prob: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Keep the map inside the box, zero elsewhere."""
    return prob * inside_box(tuple(prob.shape[-2:]), box, prob.device).to(prob.dtype)
