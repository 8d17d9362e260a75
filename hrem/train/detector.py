"""Training the region detector: the retrieval `Trainer` (resume, dev selection, budgets, metrics.jsonl)
with a detection step (ShapesDetector.losses) and CPU-sensible defaults.

The region head's training boxes (jittered objects, random background boxes) are drawn from a generator
seeded by (seed, iteration), so a resumed run draws what an uninterrupted one would.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from hrem.checkpoint import save_run
from hrem.config.detector import DetectorCard
from hrem.data.detection_dataset import DetectionBatch, DetectionRecord, DetectionSet, collate_detection
from hrem.factory import create_model
from hrem.train.config import TrainConfig
from hrem.train.loop import Evaluator, Trainer
from hrem.train.run import record_or_check_args
from hrem.utils.device import autocast
from hrem.vision.letterbox import box_to_letterbox, letterbox_image

log = logging.getLogger(__name__)


def detector_train_config(**overrides: Any) -> TrainConfig:
    """AdamW lr 2e-3, batch 32, weight decay 1e-4, grad clip 10, 30 epochs (budgets usually stop it
    first; --decay-fractions gives the step decay); nothing pretrained, so no backbone lr group."""
    values: dict[str, Any] = {"lr": 2e-3, "backbone_lr_mult": 1.0, "weight_decay": 1e-4, "epochs": 30,
                              "decay_epochs": (), "decay_rate": 0.1, "batch_size": 32, "grad_clip": 10.0,
                              "text_aug_p": 0.0, "region_drop_p": 0.0, "backbone_prefixes": (), "workers": 0}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


class DetectorTrainer(Trainer):
    def _losses(self, batch: DetectionBatch) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.position.iteration)
        with autocast(self.device, self.config.precision):
            return self.model.losses(batch.pixels.to(self.device), batch.boxes, batch.labels, generator)


class DetectorBestSaver:
    def __init__(self, run_dir: Path, card: DetectorCard) -> None:
        self.run_dir, self.card = run_dir, card

    def __call__(self, model: nn.Module) -> None:
        save_run(self.run_dir, model, self.card)


def build_detector_trainer(card: DetectorCard, records: Sequence[DetectionRecord], run_dir: str | Path,
                           config: TrainConfig, device: torch.device, evaluate: Evaluator,
                           extra_args: dict | None = None, show_progress: bool = True) -> DetectorTrainer:
    run_dir = Path(run_dir)
    record_or_check_args(run_dir, card, config, extra_args or {})
    torch.manual_seed(config.seed)   # model initialisation depends on the seed only
    model = create_model(card, device=device)
    dataset = DetectionSet(records, card.input_size, letterbox_image, box_to_letterbox, train=True)
    log.info("training detector card '%s' on %d images (%d objects); %d parameters", card.name, len(records),
             sum(len(r.boxes) for r in records), sum(p.numel() for p in model.parameters()))
    return DetectorTrainer(model, nn.Module(), dataset, collate_detection, config, device, run_dir, evaluate,
                           DetectorBestSaver(run_dir, card), show_progress)
