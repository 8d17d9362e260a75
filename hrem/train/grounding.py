"""Training MCN: the retrieval `Trainer` (resume, dev selection, time budget, metrics.jsonl) with a
grounding step.

`GroundingTrainer` reuses hrem.train.loop.Trainer unchanged except for one optimizer step: letterboxed
images + expressions -> GroundingModel.forward -> `GroundingCriterion` on the YOLO / mask targets of the
batch. The criterion recombines the model's loss terms with the ablation switches (REC-only, RES-only,
without CEM) and holds the training-only parts of the optional components (transfer nets, loss weights);
checkpoints are the model's alone, the training state keeps the criterion too.

The dev evaluator passed in returns the dev split's grounding scores; the Trainer keeps the best by
`config.selection_metric` (hrem.jobs.train_grounding: "acc@0.5+miou" for the joint task by default).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrem.config.base import require
from hrem.data.grounding_dataset import GroundingBatch
from hrem.grounding import GroundingModel, GroundingOutput, GroundingTargets, build_targets
from hrem.grounding.balance import GradNorm, UncertaintyWeights
from hrem.grounding.self_paced import SelfPacedWeighting
from hrem.grounding.targets import MASK_STRIDE
from hrem.grounding.xtask import CrossTaskConsistency
from hrem.grounding.yolo import select_top_box, xywh_to_xyxy
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
    """Composes the model's per-sample loss terms into the training loss.

    MCN baseline: box (xy + wh + conf) + mask_weight x mask + cem_weight x CEM, with the ablation switches
    (REC-only, RES-only, without CEM); hrem's `mask_refine` adds mask_refine.weight x its stride-4 mask BCE
    (with the RES task). The card's optional parts (REFERENCE_EXTRA.md) add training-only
    modules that live here, not in the saved model:
    - `xtask.enabled`: transfer nets; RES side (1 - l1) L_res + l1 L_{s->c}, REC side (1 - l2) L_rec + l2 L_{c->s};
    - `xtask.balance`: the two sides balanced by uncertainty weights or GradNorm instead of summed;
    - `loss_weighting: self_paced`: per-sample REC losses weighted by the Gaussian self-paced scheme.
    CEM is never re-weighted (REFERENCE_EXTRA.md §3.4 b).
    """

    def __init__(self, model: GroundingModel, task: GroundingTask) -> None:
        super().__init__()
        self._model = [model]  # a list, so the model is not registered twice (optimizer, state dict)
        self.task = task
        card, joint = model.card, task.task == "joint"
        self.xtask = CrossTaskConsistency(card.xtask, MASK_STRIDE) if card.xtask.enabled and joint else None
        # balancing needs two tasks; single-task ablations keep the plain sum
        balance = card.xtask.balance if joint else "none"
        self.uncertainty = UncertaintyWeights(2) if balance == "uncertainty" else None
        self.gradnorm = GradNorm(2, card.xtask.gradnorm_alpha, card.xtask.gradnorm_lr) if balance == "gradnorm" \
            else None
        self.self_paced = None
        if card.loss_weighting == "self_paced" and task.rec:
            self.self_paced = SelfPacedWeighting(_self_paced_names(card.self_paced.apply_to), card.self_paced)

    def optimizer_groups(self, config) -> list[dict]:
        """Transfer nets and uncertainty weights at the model lr; self-paced sigmas at their own lr without
        weight decay; GradNorm's task weights are left out (they take their own step)."""
        main = [] if self.xtask is None else list(self.xtask.parameters())
        no_decay = [] if self.uncertainty is None else list(self.uncertainty.parameters())
        groups = [("criterion", main, config.lr, config.weight_decay),
                  ("loss_weights", no_decay, config.lr, 0.0)]
        if self.self_paced is not None:
            sigma_lr = self._model[0].card.self_paced.sigma_lr
            groups.append(("self_paced", list(self.self_paced.parameters()), sigma_lr, 0.0))
        return [{"name": name, "params": params, "lr": lr, "base_lr": lr, "weight_decay": decay}
                for name, params, lr, decay in groups if params]

    def forward(self, output: GroundingOutput, targets: GroundingTargets) -> dict[str, torch.Tensor]:
        model, task = self._model[0], self.task
        cfg = model.card.losses
        per_sample = model.per_sample_losses(output, targets)
        terms = {name: values.mean() for name, values in per_sample.items()}
        zero = output.raw.new_zeros(())
        rec = self._rec_side(per_sample, terms) if task.rec else zero
        res = cfg.mask_weight * terms["mask"] if task.res else zero
        refine = model.card.mask_refine.weight * terms["mask_fine"] if task.res and "mask_fine" in terms else zero
        if self.xtask is not None:
            rec, res = self._add_transfer(output, targets, rec, res, terms)
        terms["cem"], terms["energy"] = model.cem_term(output)
        cem = cfg.cem_weight * terms["cem"] if task.uses_cem else zero
        terms["loss"] = self._balance(rec, res, terms) + cem + refine  # refine: its own head, never balanced
        return terms

    def _rec_side(self, per_sample: dict[str, torch.Tensor], terms: dict[str, torch.Tensor]) -> torch.Tensor:
        yolo = per_sample["xy"] + per_sample["wh"] + per_sample["conf"]
        parts = {"yolo": yolo}
        if "box_l1" in per_sample:
            parts.update(l1=per_sample["box_l1"], giou=per_sample["box_giou"])
        if self.self_paced is None:
            return sum(values.mean() for values in parts.values())
        weighted = {name: parts[name] for name in self.self_paced.names}
        total, info = self.self_paced(weighted)
        terms.update(info)
        return total + sum(values.mean() for name, values in parts.items() if name not in weighted)

    def _add_transfer(self, output, targets, rec, res, terms) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self._model[0].card.xtask
        gt_box = xywh_to_xyxy(targets.yolo.boxes_xywh.to(output.boxes_xywh.dtype))
        top_box, _ = select_top_box(output.boxes_xywh, output.objectness)
        losses = self.xtask(output.mask_logits, top_box, gt_box, targets.mask)
        terms["xtask_mask_to_box"], terms["xtask_box_to_mask"] = losses.mask_to_box, losses.box_to_mask
        rec = (1 - cfg.lambda2) * rec + cfg.lambda2 * losses.box_to_mask
        res = (1 - cfg.lambda1) * res + cfg.lambda1 * losses.mask_to_box
        return rec, res

    def _balance(self, rec: torch.Tensor, res: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.uncertainty is not None:
            terms["log_var_rec"], terms["log_var_res"] = self.uncertainty.log_vars.detach()
            return self.uncertainty([rec, res])
        if self.gradnorm is not None:
            if self.training and torch.is_grad_enabled():
                terms["gradnorm_loss"] = self.gradnorm.update([rec, res], self._model[0].shared_layer())
            terms["weight_rec"], terms["weight_res"] = self.gradnorm.weights.detach().clone()
            return self.gradnorm([rec, res])
        return rec + res


def _self_paced_names(apply_to: str) -> tuple[str, ...]:
    return {"direct": ("l1", "giou"), "yolo": ("yolo",), "both": ("yolo", "l1", "giou")}[apply_to]


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
                                None if masks is None or not self.criterion.task.res else masks.to(device),
                                fine_mask=model.card.mask_refine.enabled)
        with autocast(device, self.config.precision):
            output = model(batch.pixels.to(device), batch.tokens.to(device))
            return self.criterion(output, targets)
