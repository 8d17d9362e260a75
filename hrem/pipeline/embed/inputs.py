"""Per-item loading and validation for the embed job: every bad input becomes a reason, never a crash.

Image files are decoded (and truncated / corrupt / missing files caught) inside DataLoader worker
processes; feature rows and feature files are checked for shape and NaN/inf; captions for missing,
non-UTF-8 and empty text. The reasons end up in `failures.parquet`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hrem.data.batch import ImageBatch
from hrem.data.collate import collate_images


def check_features(array: np.ndarray, feature_dim: int | None, where: str) -> str | None:
    """None when `array` is a valid [R, F] region-feature matrix, else the reason."""
    if array.ndim != 2 or array.shape[0] == 0 or (feature_dim is not None and array.shape[1] != feature_dim):
        return f"wrong feature shape: expected [R, {feature_dim}] with R >= 1, found {list(array.shape)} ({where})"
    if not np.isfinite(array).all():
        return f"non-finite features: {int((~np.isfinite(array)).sum())} NaN/inf value(s) ({where})"
    return None


class LoadImage:
    """Picklable `path -> tensor` for DataLoader workers: pixels via the card's preprocessor, or a .npy
    region-feature file checked against the card's feature dim."""

    def __init__(self, preprocess: Callable | None, feature_dim: int | None) -> None:
        self.preprocess = preprocess
        self.feature_dim = feature_dim

    def __call__(self, path: str) -> torch.Tensor:
        if self.preprocess is not None:
            return self.preprocess(path)
        array = np.load(path, allow_pickle=False)
        reason = check_features(np.asarray(array), self.feature_dim, Path(path).name)
        if reason:
            raise ValueError(reason)
        return torch.from_numpy(np.asarray(array, dtype=np.float32))


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"missing file: {exc}"
    if isinstance(exc, ValueError) and str(exc).startswith(("wrong feature shape", "non-finite")):
        return str(exc)
    return f"unreadable image: {type(exc).__name__}: {exc}"


class DecodeDataset(Dataset):
    """Position i -> (i, tensor | None, reason | None); a missing or refused path (`problems`, from the
    source) is a failure, not an exception."""

    def __init__(self, paths: Sequence[str | None], load: Callable[[str], torch.Tensor],
                 problems: dict[int, str] | None = None) -> None:
        self.paths = list(paths)
        self.load = load
        self.problems = problems or {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.paths[i]
        if i in self.problems or not path:
            return i, None, self.problems.get(i, "missing image path (empty value in the listing)")
        try:
            return i, self.load(path), None
        except Exception as exc:  # noqa: BLE001 -- any decode error of one file must not stop the shard
            return i, None, describe_error(exc)


@dataclass(frozen=True)
class DecodedBatch:
    positions: list[int]              # positions (within the shard) of the decoded items, in order
    images: ImageBatch | None
    failures: list[tuple[int, str]]   # (position, reason)


def collate_decoded(items: Sequence[tuple[int, torch.Tensor | None, str | None]]) -> DecodedBatch:
    good = [(i, t) for i, t, _ in items if t is not None]
    failures = [(i, r) for i, t, r in items if t is None]
    images = collate_images([t for _, t in good]) if good else None
    return DecodedBatch([i for i, _ in good], images, failures)


def check_caption(text: Any) -> tuple[str | None, str | None]:
    """(caption, None) when usable, else (None, reason)."""
    if text is None:
        return None, "missing caption (empty value in the listing)"
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"caption is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if not str(text).strip():
        return None, "empty caption"
    return str(text), None
