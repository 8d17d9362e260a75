"""Region detectors as jobs see them: the module (hrem.factory.load_region_detector) plus a fingerprint
that `hrem regions` records in regions.json and that training / embedding compare, so precomputed
region rows and on-the-fly detection can never silently come from different detectors."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hrem.checkpoint.run import run_fingerprint
from hrem.config.base import load_json
from hrem.factory import load_region_detector
from hrem.utils.files import sha256_file, sha256_json
from hrem.utils.registry import resolve_model

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class LoadedDetector:
    module: nn.Module
    fingerprint: str
    model_dir: Path


def detector_fingerprint(path: str | Path) -> str:
    """hrem detector runs: their run fingerprint (card + weights); transformers folders: SHA-256 over
    config.json and the weights file."""
    model_dir = resolve_model(path, "detector")
    if "kind" in load_json(model_dir / "config.json"):
        return run_fingerprint(model_dir)
    files = [model_dir / "config.json"] + [model_dir / n for n in HF_WEIGHT_FILES if (model_dir / n).is_file()]
    return sha256_json({f.name: sha256_file(f) for f in files})


def load_detector(path: str | Path, device: torch.device | str = "cpu",
                  input_size: int | None = None) -> LoadedDetector:
    """A detector run directory, a shipped name ('shapes-detector') or a transformers detector folder."""
    model_dir = resolve_model(path, "detector")
    return LoadedDetector(load_region_detector(model_dir, device, input_size), detector_fingerprint(model_dir),
                          model_dir)
