"""`GroundingCriterion`: the one place where the grounding losses combine into the training loss.

    criterion = GroundingCriterion.for_model(model, GroundingTask("joint"))
    terms = criterion(model(images, tokens), targets)  # {"loss": the total, "xy", "wh", ..., "cem", "energy"}

MCN baseline: box (xy + wh + conf) + mask_weight x mask + cem_weight x CEM, with the ablation switches of
`GroundingTask` (REC-only, RES-only, without CEM); hrem's `mask_refine` adds mask_refine.weight x its
stride-4 mask BCE (with the RES task), and CA2M's direct box head adds its L1 + GIoU to the REC side. The
card's optional parts (REFERENCE_EXTRA.md) add training-only modules that live here, not in the saved model:
- `xtask.enabled`: transfer nets; RES side (1 - l1) L_res + l1 L_{s->c}, REC side (1 - l2) L_rec + l2 L_{c->s};
- `xtask.balance`: the two sides balanced by uncertainty weights or GradNorm instead of summed;
- `loss_weighting: self_paced`: per-sample REC losses weighted by the Gaussian self-paced scheme.
CEM is never re-weighted (REFERENCE_EXTRA.md §3.4 b). Every term is averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hrem.config.grounding import MCNCard
from hrem.grounding.cem import ConsistencyEnergy, cem_loss
from hrem.grounding.model import GroundingModel, GroundingOutput
from hrem.grounding.options.self_paced import SelfPacedWeighting
from hrem.grounding.options.xtask import CrossTaskConsistency
from hrem.grounding.training.balance import GradNorm, UncertaintyWeights
from hrem.grounding.training.task import GroundingTask
from hrem.grounding.training.targets import MASK_STRIDE, GroundingTargets
from hrem.grounding.training.terms import per_sample_terms
from hrem.grounding.yolo import select_top_box, xywh_to_xyxy

__all__ = ["GroundingCriterion", "GroundingTask"]


class GroundingCriterion(nn.Module):
    """The training loss of `card` for `task`.

    `cem` is the model's CEM (its projections are saved with the model, as in K) and `shared_layer` gives
    the model's last weight both tasks share (GradNorm needs it); both stay out of this module's parameters
    and state dict, so the optimizer and the checkpoints see them once, as the model's.
    """

    def __init__(self, card: MCNCard, task: GroundingTask, cem: ConsistencyEnergy,
                 shared_layer: Callable[[], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.card, self.task = card, task
        self._cem = (cem,)  # a tuple, so nn.Module does not register the model's CEM here
        self._shared_layer = shared_layer
        joint = task.task == "joint"
        self.xtask = CrossTaskConsistency(card.xtask, MASK_STRIDE) if card.xtask.enabled and joint else None
        # balancing needs two tasks; single-task ablations keep the plain sum
        balance = card.xtask.balance if joint else "none"
        self.uncertainty = UncertaintyWeights(2) if balance == "uncertainty" else None
        self.gradnorm = GradNorm(2, card.xtask.gradnorm_alpha, card.xtask.gradnorm_lr) if balance == "gradnorm" \
            else None
        if self.gradnorm is not None and shared_layer is None:
            raise ValueError("xtask.balance 'gradnorm': expected the model's shared_layer, found None "
                             "(build the criterion with GroundingCriterion.for_model)")
        self.self_paced = None
        if card.loss_weighting == "self_paced" and task.rec:
            self.self_paced = SelfPacedWeighting(_self_paced_names(card.self_paced.apply_to), card.self_paced)

    @classmethod
    def for_model(cls, model: GroundingModel, task: GroundingTask) -> GroundingCriterion:
        return cls(model.card, task, model.cem, model.shared_layer)

    def optimizer_groups(self, config) -> list[dict]:
        """Transfer nets and uncertainty weights at the model lr; self-paced sigmas at their own lr without
        weight decay; GradNorm's task weights are left out (they take their own step)."""
        main = [] if self.xtask is None else list(self.xtask.parameters())
        no_decay = [] if self.uncertainty is None else list(self.uncertainty.parameters())
        groups = [("criterion", main, config.lr, config.weight_decay),
                  ("loss_weights", no_decay, config.lr, 0.0)]
        if self.self_paced is not None:
            sigma_lr = self.card.self_paced.sigma_lr
            groups.append(("self_paced", list(self.self_paced.parameters()), sigma_lr, 0.0))
        return [{"name": name, "params": params, "lr": lr, "base_lr": lr, "weight_decay": decay}
                for name, params, lr, decay in groups if params]

    def forward(self, output: GroundingOutput, targets: GroundingTargets) -> dict[str, torch.Tensor]:
        task, cfg = self.task, self.card.losses
        per_sample = per_sample_terms(self.card, output, targets)
        terms = {name: values.mean() for name, values in per_sample.items()}
        zero = output.raw.new_zeros(())
        rec = self._rec_side(per_sample, terms) if task.rec else zero
        res = cfg.mask_weight * terms["mask"] if task.res else zero
        refine = self.card.mask_refine.weight * terms["mask_fine"] if task.res and "mask_fine" in terms else zero
        if self.xtask is not None:
            rec, res = self._add_transfer(output, targets, rec, res, terms)
        terms["cem"], terms["energy"] = self._cem_term(output)
        cem = cfg.cem_weight * terms["cem"] if task.uses_cem else zero
        terms["loss"] = self._balance(rec, res, terms) + cem + refine  # refine: its own head, never balanced
        return terms

    def _cem_term(self, output: GroundingOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_cem, mean energy detached) between the RES and REC attended maps."""
        energy = self._cem[0](output.res_attended, output.rec_attended)
        return cem_loss(energy), energy.detach().mean()

    def _rec_side(self, per_sample: dict[str, torch.Tensor], terms: dict[str, torch.Tensor]) -> torch.Tensor:
        yolo = per_sample["xy"] + per_sample["wh"] + per_sample["conf"]
        parts = {"yolo": yolo}
        if "box_l1" in per_sample:
            cfg = self.card.losses
            parts.update(l1=cfg.box_l1_weight * per_sample["box_l1"], giou=cfg.box_giou_weight * per_sample["box_giou"])
        if self.self_paced is None:
            return sum(values.mean() for values in parts.values())
        weighted = {name: parts[name] for name in self.self_paced.names}
        total, info = self.self_paced(weighted)
        terms.update(info)
        return total + sum(values.mean() for name, values in parts.items() if name not in weighted)

    def _add_transfer(self, output, targets, rec, res, terms) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.card.xtask
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
                terms["gradnorm_loss"] = self.gradnorm.update([rec, res], self._shared_layer())
            terms["weight_rec"], terms["weight_res"] = self.gradnorm.weights.detach().clone()
            return self.gradnorm([rec, res])
        return rec + res


def _self_paced_names(apply_to: str) -> tuple[str, ...]:
    return {"direct": ("l1", "giou"), "yolo": ("yolo",), "both": ("yolo", "l1", "giou")}[apply_to]
