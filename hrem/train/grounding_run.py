"""Assembling an MCN training run: refs -> letterboxed dataset, k-means anchors into the card, model,
criterion and a GroundingTrainer that saves the best dev model as a run directory.

The run's card is the given card with `anchors` replaced by k-means anchors of the training boxes (in
letterbox pixels); it is recorded in train_args.json, and a resumed run must bring the same card (the
anchors are recomputed from the same data with the same seed, so a plain re-run of the command resumes).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrem.checkpoint import save_run
from hrem.config.grounding import MCNCard
from hrem.data.grounding_dataset import GroundingCollate, GroundingTrainSet
from hrem.data.readers.refs import RefObject
from hrem.factory import create_model
from hrem.grounding import GroundingCriterion, GroundingTask, build_mcn_tokenizer, kmeans_anchors, mean_best_iou
from hrem.train.backbone_init import init_backbone_from_detector
from hrem.train.config import TrainConfig
from hrem.train.grounding import GroundingTrainer
from hrem.train.loop import Evaluator
from hrem.train.run import record_or_check_args
from hrem.vision.letterbox import SampleLetterbox

log = logging.getLogger(__name__)

# The HF text encoder inside an MCN (lower lr when it is trained, as the retrieval trainer's backbone group)
MCN_TEXT_PREFIXES = ("language.text.",)


def grounding_train_config(**overrides: Any) -> TrainConfig:
    """CPU-sensible MCN defaults (K: Adam lr 1e-3, batch 35, no clipping, step decay at 30/35/40 of 45
    epochs); explicit overrides that are not None win. Retrieval-only knobs (text_aug_p, region_drop_p) off."""
    values: dict[str, Any] = {"lr": 1e-3, "backbone_lr_mult": 0.1, "weight_decay": 0.0, "epochs": 45,
                              "decay_epochs": (30, 35, 40), "decay_rate": 0.1, "batch_size": 32, "grad_clip": 0.0,
                              "text_aug_p": 0.0, "region_drop_p": 0.0, "backbone_prefixes": MCN_TEXT_PREFIXES}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


def with_kmeans_anchors(card: MCNCard, boxes_wh: np.ndarray, seed: int) -> MCNCard:
    """The card with 3 IoU-k-means anchors of the training boxes (letterbox pixels, rounded to 0.1 px)."""
    anchors = kmeans_anchors(boxes_wh, k=len(card.anchors), seed=seed)
    rounded = tuple((round(float(w), 1), round(float(h), 1)) for w, h in anchors)
    log.info("k-means anchors %s: mean best IoU %.3f (card's %s: %.3f)", rounded,
             mean_best_iou(boxes_wh, np.asarray(rounded)), card.anchors,
             mean_best_iou(boxes_wh, np.asarray(card.anchors, dtype=np.float64)))
    return dataclasses.replace(card, anchors=rounded)


class GroundingBestSaver:
    """save_best: config.json + model.safetensors (a frozen pretrained text encoder by reference)."""

    def __init__(self, run_dir: Path, card: MCNCard, extra_files: dict | None = None) -> None:
        self.run_dir, self.card, self.extra_files = run_dir, card, extra_files or {}

    def __call__(self, model: torch.nn.Module) -> None:
        save_run(self.run_dir, model, self.card, extra_files=self.extra_files)


def build_grounding_trainer(card: MCNCard, train_refs: Sequence[RefObject], run_dir: str | Path,
                            config: TrainConfig, task: GroundingTask, device: torch.device,
                            evaluate: Evaluator, kmeans: bool = True,
                            extra_args: dict | None = None, show_progress: bool = True) -> GroundingTrainer:
    """Everything wired for `trainer.resume(); trainer.run()`; the best dev model lands in run_dir."""
    run_dir = Path(run_dir)
    dataset = GroundingTrainSet(train_refs, SampleLetterbox(card.input_size), card.input_size)
    if kmeans:
        card = with_kmeans_anchors(card, dataset.letterbox_boxes_wh(), config.seed)
    record_or_check_args(run_dir, card, config, {"task": dataclasses.asdict(task), **(extra_args or {})})
    torch.manual_seed(config.seed)  # model initialisation depends on the seed only
    model = create_model(card, device=device)
    if card.backbone.init:
        init_backbone_from_detector(model, card.backbone.init)   # a resumed run then loads its own weights
    if card.language.kind == "hf" and card.language.freeze and config.text_cache_size > 0:
        # a frozen encoder maps an expression to fixed states: ShapesRef train has 21.5k distinct
        # expressions among 55.9k, so most steps reuse them (CA2M's hidden-state path bypasses the cache)
        model.language.text.enable_feature_cache(config.text_cache_size)
    criterion = GroundingCriterion.for_model(model, task)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training MCN card '%s' (task %s, CEM %s) on %d referred objects; %d trainable parameters",
             card.name, task.task, "on" if task.uses_cem else "off", len(dataset), n_train)
    return GroundingTrainer(model, criterion, dataset, GroundingCollate(build_mcn_tokenizer(card)), config,
                            device, run_dir, evaluate, GroundingBestSaver(run_dir, card), show_progress)
