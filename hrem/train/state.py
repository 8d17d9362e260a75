"""`training_state.pt`: everything a killed run needs to continue, loadable with weights_only=True.

Only tensors and primitives are stored (no pickled objects): model and criterion state dicts, the
optimizer state dict, the grad-scaler state, the loop position (epoch, batch within the epoch,
iteration), the best dev score and the metric it measures, and the torch / numpy / python RNG states.
Written atomically.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hrem.utils.files import atomic_path

STATE_FILE = "training_state.pt"
STATE_FORMAT = "hrem-training-state/1"


@dataclass
class LoopPosition:
    """Where the loop is; mutated as it runs."""
    epoch: int = 0                 # current epoch (0-based)
    step_in_epoch: int = 0         # batches of `epoch` already done
    iteration: int = 0             # optimizer steps so far (drives the instance-relation warm-up)
    best_score: float = -1.0       # best dev value of `selection_metric` so far
    best_iteration: int = -1
    skipped_steps: int = 0         # non-finite losses skipped
    train_seconds: float = 0.0     # wall time spent training, over all resumed sessions
    last_eval_iteration: int = -1
    selection_metric: str | None = None   # what best_score measures; None in states written before it was kept

    @property
    def best_rsum(self) -> float:
        """The name best_score had when every trainer selected by a key called "rsum"."""
        return self.best_score

    @classmethod
    def from_state(cls, position: dict[str, Any]) -> LoopPosition:
        """The position stored in a training state, including states written before `best_rsum` became
        `best_score` (their selection metric is unknown: None)."""
        values = dict(position)
        if "best_rsum" in values:
            values.setdefault("best_score", values.pop("best_rsum"))
        return cls(**values)


def rng_state() -> dict[str, Any]:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss), "numpy_cached": float(cached),
            "python_version": int(version), "python_internal": list(internal), "python_gauss": gauss_next}


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_cached"]))
    random.setstate((state["python_version"], tuple(state["python_internal"]), state["python_gauss"]))


def save_training_state(run_dir: str | Path, position: LoopPosition, model: nn.Module, criterion: nn.Module,
                        optimizer: torch.optim.Optimizer, scaler_state: dict | None = None) -> Path:
    path = Path(run_dir) / STATE_FILE
    payload = {"format": STATE_FORMAT, "position": asdict(position), "model": model.state_dict(),
               "criterion": criterion.state_dict(), "optimizer": optimizer.state_dict(),
               "scaler": scaler_state or {}, "rng": rng_state()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_training_state(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training state to resume from")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: expected format {STATE_FORMAT!r}, found {found!r}")
    return payload


def apply_training_state(payload: dict[str, Any], model: nn.Module, criterion: nn.Module,
                         optimizer: torch.optim.Optimizer) -> LoopPosition:
    """Load weights, optimizer and RNG from `payload`; return the loop position to continue from."""
    model.load_state_dict(payload["model"])
    criterion.load_state_dict(payload["criterion"])
    optimizer.load_state_dict(payload["optimizer"])
    restore_rng(payload["rng"])
    return LoopPosition.from_state(payload["position"])
