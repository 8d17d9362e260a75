"""Training MCN: the retrieval `Trainer` (resume, dev selection, time budget, metrics.jsonl) with a
grounding step.

`GroundingTrainer` reuses hrem.train.loop.Trainer unchanged except for one optimizer step: letterboxed
images + expressions -> GroundingModel.forward -> `GroundingCriterion` on the YOLO / mask targets of the
batch. The criterion recombines the model's loss terms with the ablation switches (REC-only, RES-only,
without CEM); it has no parameters, so checkpoints are the model's alone.

The dev evaluator passed in returns a dict whose "rsum" entry is the selection score (the Trainer keeps
the best by that key); for grounding it is Acc@0.5 + mIoU on the dev split.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrem.config.base import require
from hrem.data.grounding_dataset import GroundingBatch
from hrem.grounding import GroundingModel, GroundingOutput, GroundingTargets, build_targets
from hrem.train.loop import Trainer
from hrem.utils.device import autocast


TASKS = ("joint", "rec", "res")


@dataclass(frozen=True)
class GroundingTask:
    """What is trained: "joint" (REC + RES, MCN), "rec" (box only) or "res" (mask only); `cem` adds the
    consistency energy (only meaningful for "joint")."""

    task: str = "joint"
    cem: bool = True

    def validate(self) -> None:
        require(self.task in TASKS, f"task: expected one of {TASKS}, found {self.task!r}")

    def __post_init__(self) -> None:
        self.validate()

    @property
    def rec(self) -> bool:
        return self.task in ("joint", "rec")

    @property
    def res(self) -> bool:
        return self.task in ("joint", "res")

    @property
    def uses_cem(self) -> bool:
        return self.cem and self.task == "joint"


class GroundingCriterion(nn.Module):
    """The card's loss weights with the ablation switches applied; no parameters of its own."""

    def __init__(self, model: GroundingModel, task: GroundingTask) -> None:
        super().__init__()
        self._model = [model]  # a list, so the model is not registered twice (optimizer, state dict)
        self.task = task

    def forward(self, output: GroundingOutput, targets: GroundingTargets) -> dict[str, torch.Tensor]:
        model, task = self._model[0], self.task
        cfg = model.card.losses
        terms = model.compute_losses(output, targets)
        zero = output.raw.new_zeros(())
        box = terms["xy"] + terms["wh"] + terms["conf"] if task.rec else zero
        mask = cfg.mask_weight * terms["mask"] if task.res else zero
        cem = cfg.cem_weight * terms["cem"] if task.uses_cem else zero
        terms["loss"] = box + mask + cem
        return terms


class GroundingTrainer(Trainer):
    """Trainer whose losses are the grounding forward + GroundingCriterion (the step, NaN skipping, resume,
    selection and budgets are inherited)."""

    def _losses(self, batch: GroundingBatch) -> dict[str, torch.Tensor]:
        model: GroundingModel = self.model
        device, size = self.device, model.card.input_size
        masks = batch.masks_letterbox
        if self.criterion.task.res and masks is None:
            raise ValueError("training split: the RES loss needs a mask for every referred object, found a "
                             "batch without masks (train with --task rec, or add masks)")
        targets = build_targets(batch.boxes_letterbox.to(device), model.anchors, size,
                                None if masks is None or not self.criterion.task.res else masks.to(device))
        with autocast(device, self.config.precision):
            output = model(batch.pixels.to(device), batch.tokens.to(device))
            return self.criterion(output, targets)
