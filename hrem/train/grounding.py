"""Training MCN: the retrieval `Trainer` (resume, dev selection, time budget, metrics.jsonl) with a
grounding step.

`GroundingTrainer` reuses hrem.train.loop.Trainer unchanged except for one optimizer step: letterboxed
images + expressions -> GroundingModel.forward -> hrem.grounding.criterion.GroundingCriterion on the YOLO /
mask targets of the batch. The criterion holds the training-only parts of the optional components
(transfer nets, loss weights); checkpoints are the model's alone, the training state keeps the criterion too.

The dev evaluator passed in returns the dev split's grounding scores; the Trainer keeps the best by
`config.selection_metric` (hrem.jobs.train_grounding: "acc@0.5+miou" for the joint task by default).
"""
from __future__ import annotations

import torch

from hrem.data.grounding_dataset import GroundingBatch
from hrem.grounding import GroundingCriterion, GroundingModel, build_targets
from hrem.train.loop import Trainer
from hrem.utils.device import autocast


class GroundingTrainer(Trainer):
    """Trainer whose losses are the grounding forward + GroundingCriterion (the step, NaN skipping, resume,
    selection and budgets are inherited)."""

    def _losses(self, batch: GroundingBatch) -> dict[str, torch.Tensor]:
        model: GroundingModel = self.model
        criterion: GroundingCriterion = self.criterion
        device, size = self.device, model.card.input_size
        masks = batch.masks_letterbox
        if criterion.task.res and masks is None:
            raise ValueError("training split: the RES loss needs a mask for every referred object, found a "
                             "batch without masks (train with --task rec, or add masks)")
        targets = build_targets(batch.boxes_letterbox.to(device), model.anchors, size,
                                None if masks is None or not criterion.task.res else masks.to(device),
                                fine_mask=model.card.mask_refine.enabled)
        with autocast(device, self.config.precision):
            output = model(batch.pixels.to(device), batch.tokens.to(device))
            return criterion(output, targets)
