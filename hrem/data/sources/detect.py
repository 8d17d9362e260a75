"""Which input format a path holds: the one place that recognises inputs."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

InputFormat = Literal["listing", "precomp", "karpathy"]


def detect_input(data: str | Path) -> InputFormat:
    """'listing' for a .parquet/.csv file, 'precomp' for a folder with {split}_ims.npy, 'karpathy' for a
    folder with dataset_*.json (+ images); FileNotFoundError naming what was found otherwise."""
    data = Path(data)
    if data.is_file():
        return "listing"
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: expected a dataset folder or a .parquet/.csv listing, found nothing")
    if any(data.glob("*_ims.npy")):
        return "precomp"
    if any(data.glob("dataset_*.json")):
        return "karpathy"
    found = sorted(p.name for p in data.iterdir())[:8]
    raise FileNotFoundError(f"{data}: expected a *_precomp folder ({{split}}_ims.npy + {{split}}_caps.txt), a "
                            f"Karpathy folder (dataset_*.json + images) or a .parquet/.csv listing; found {found}")
