"""AdamW with HREM's parameter groups and the per-epoch step decay.

Groups (REFERENCE_HREM.md §3): the pretrained text backbone at lr * backbone_lr_mult, every other
trainable model parameter at lr (a model's `lr_multipliers()` {name prefix: multiplier} moves parts to
their own groups at lr * multiplier), the training criterion (instance relation) at lr * graph_lr_factor, or
the criterion's own groups when it defines `optimizer_groups(config)` (the grounding loss weights).
Frozen parameters (requires_grad False, e.g. a frozen MiniLM) are left out. The schedule is a pure
function of the epoch and of the fraction of the run's budget used (`decay_fractions`; the trained seconds
are part of the saved position), so resuming needs no pickled scheduler object.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from hrem.train.config import TrainConfig


def _is_backbone(name: str, prefixes: Iterable[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def param_groups(model: nn.Module, criterion: nn.Module, config: TrainConfig) -> list[dict]:
    """The three groups, each with its base lr kept in 'base_lr' for the decay schedule."""
    backbone, rest = [], []
    multipliers = model.lr_multipliers() if hasattr(model, "lr_multipliers") else {}
    own: dict[str, list] = {prefix: [] for prefix in multipliers}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        prefix = next((p for p in multipliers if name.startswith(p)), None)
        if prefix is not None:
            own[prefix].append(param)
        else:
            (backbone if _is_backbone(name, config.backbone_prefixes) else rest).append(param)
    groups = [("backbone", backbone, config.lr * config.backbone_lr_mult), ("model", rest, config.lr)]
    groups += [(f"model:{prefix}", own[prefix], config.lr * mult) for prefix, mult in multipliers.items()]
    model_groups = [{"name": name, "params": params, "lr": lr, "base_lr": lr} for name, params, lr in groups if params]
    if hasattr(criterion, "optimizer_groups"):  # a criterion with its own lr / decay per parameter kind
        return model_groups + criterion.optimizer_groups(config)
    graph = [p for p in criterion.parameters() if p.requires_grad]
    lr = config.lr * config.graph_lr_factor
    return model_groups + ([{"name": "criterion", "params": graph, "lr": lr, "base_lr": lr}] if graph else [])


def run_lr(optimizer: torch.optim.Optimizer) -> float:
    """The lr the metrics log: the main "model" group's (groups with their own multiplier, such as the
    CA2M fusion's, or a criterion's would misreport the schedule), else the last group's."""
    groups = optimizer.param_groups
    return float(next((g["lr"] for g in groups if g.get("name") == "model"), groups[-1]["lr"]))


def build_optimizer(model: nn.Module, criterion: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    groups = param_groups(model, criterion, config)
    if not groups:
        raise ValueError("nothing to train: every model and criterion parameter has requires_grad=False")
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def budget_fraction(iteration: int, train_seconds: float, config: TrainConfig) -> float:
    """How far the run is through its budget: the larger of iteration / max_iters and the trained minutes /
    time_budget_min (0 without a budget)."""
    parts = [0.0]
    if config.max_iters is not None:
        parts.append(iteration / config.max_iters)
    if config.time_budget_min is not None:
        parts.append(train_seconds / (60.0 * config.time_budget_min))
    return max(parts)


def lr_scale(epoch: int, config: TrainConfig, fraction: float = 0.0) -> float:
    """decay_rate ** (decay epochs reached + budget fractions reached); epochs count from 0."""
    steps = sum(1 for e in config.decay_epochs if epoch >= e) + sum(1 for f in config.decay_fractions if fraction >= f)
    return config.decay_rate ** steps


def set_epoch_lr(optimizer: torch.optim.Optimizer, epoch: int, config: TrainConfig, fraction: float = 0.0) -> None:
    scale = lr_scale(epoch, config, fraction)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * scale


def trainable_params(model: nn.Module, criterion: nn.Module) -> list[torch.nn.Parameter]:
    """What gradient clipping covers: model + criterion (as the reference)."""
    return [p for m in (model, criterion) for p in m.parameters() if p.requires_grad]
