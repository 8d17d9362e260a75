"""The training loop: AdamW groups, step decay, clipping, autocast, NaN skip, dev selection, resume.

The loop knows nothing about datasets on disk or about how the dev split is scored: it is given a
caption dataset + collate, an `evaluate(model) -> {name: score, ...}` callable (the jobs in hrem.jobs wire
the dev-split evaluators of hrem.pipeline) and a `save_best(model)` callable (hrem.checkpoint.save_run).
The best model is the one with the highest `config.selection_metric` entry of those scores ("rsum" for
retrieval; the grounding and detector jobs name their own); the metric is kept in the training state, and
resuming with another one is refused, since the saved best was chosen by the old one.
Every `save_every` iterations and at each epoch end it writes `training_state.pt`; a new Trainer on the
same run directory resumes from it with `resume()`.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hrem.train.config import TrainConfig
from hrem.train.metrics_log import MetricsLog
from hrem.train.optim import budget_fraction, build_optimizer, run_lr, set_epoch_lr, trainable_params
from hrem.train.sampler import EpochBatchSampler, steps_per_epoch
from hrem.train.state import (
    STATE_FILE,
    LoopPosition,
    apply_training_state,
    load_training_state,
    save_training_state,
)
from hrem.utils.device import autocast

log = logging.getLogger(__name__)

Evaluator = Callable[[nn.Module], dict]
SaveBest = Callable[[nn.Module], None]


class Trainer:
    def __init__(self, model: nn.Module, criterion: nn.Module, dataset: Dataset, collate: Callable,
                 config: TrainConfig, device: torch.device | str, run_dir: str | Path,
                 evaluate: Evaluator, save_best: SaveBest, show_progress: bool = True) -> None:
        self.model, self.criterion, self.dataset, self.collate = model, criterion, dataset, collate
        self.show_progress = show_progress
        self.config, self.device, self.run_dir = config, torch.device(device), Path(run_dir)
        self.evaluate, self.save_best = evaluate, save_best
        self.optimizer = build_optimizer(model, criterion, config)
        self.clip_params = trainable_params(model, criterion)
        use_scaler = config.precision == "fp16" and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.position = LoopPosition(selection_metric=config.selection_metric)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        # a dataset of image groups (hrem.data.datasets.ImageGroupDataset) batches fewer items of 5 captions
        self.sampler_batch = int(getattr(dataset, "items_per_batch", config.batch_size))
        self.steps_per_epoch = steps_per_epoch(len(dataset), self.sampler_batch)
        self._session_start = time.perf_counter()
        self._seconds_before = 0.0

    # -- resume -----------------------------------------------------------------------------------
    def resume(self) -> bool:
        """Continue from RUN/training_state.pt when it exists; True when something was restored."""
        if not (self.run_dir / STATE_FILE).is_file():
            return False
        payload = load_training_state(self.run_dir)
        position = apply_training_state(payload, self.model, self.criterion, self.optimizer)
        self.position = self._check_selection_metric(position)
        if self.scaler is not None and payload["scaler"]:
            self.scaler.load_state_dict(payload["scaler"])
        self._seconds_before = self.position.train_seconds
        log.info("resuming %s at epoch %d, batch %d/%d, iteration %d (best dev %s %.2f)", self.run_dir,
                 self.position.epoch, self.position.step_in_epoch, self.steps_per_epoch,
                 self.position.iteration, self.position.selection_metric, self.position.best_score)
        return True

    def _check_selection_metric(self, position: LoopPosition) -> LoopPosition:
        """The saved best model was chosen by the state's metric: continuing by another would compare
        numbers of different kinds, so that is refused."""
        wanted = self.config.selection_metric
        if position.selection_metric is None:
            # written before the metric was recorded: its best is what the command selected by then, which
            # is what the same command (its default metric) selects by now
            log.info("%s/%s records no selection metric (an older state); its best score %.2f is taken as "
                     "dev %s", self.run_dir, STATE_FILE, position.best_score, wanted)
            position.selection_metric = wanted
        if position.selection_metric != wanted:
            raise ValueError(f"{self.run_dir}/{STATE_FILE}: this run selects its best model by "
                             f"{position.selection_metric!r}, this command by {wanted!r}; resume with selection "
                             f"metric {position.selection_metric!r} or use a new run directory")
        return position

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> LoopPosition:
        self._session_start = time.perf_counter()
        reason = None
        while self.position.epoch < self.config.epochs and reason is None:
            reason = self._run_epoch()
            if reason is None:
                self.position.epoch += 1
                self.position.step_in_epoch = 0
                if self.config.eval_every == 0:
                    self._evaluate()
                self._save_state()
        if self.position.last_eval_iteration != self.position.iteration:
            self._evaluate()
        self._save_state()
        log.info("training stopped (%s) at epoch %d, iteration %d; best dev %s %.2f at iteration %d",
                 reason or "all epochs done", self.position.epoch, self.position.iteration,
                 self.config.selection_metric, self.position.best_score, self.position.best_iteration)
        return self.position

    def _stop_reason(self) -> str | None:
        cfg = self.config
        if cfg.max_iters is not None and self.position.iteration >= cfg.max_iters:
            return f"max_iters {cfg.max_iters} reached"
        if cfg.time_budget_min is not None and self._elapsed() >= cfg.time_budget_min * 60:
            return f"time budget of {cfg.time_budget_min:g} min reached"
        return None

    def _elapsed(self) -> float:
        return self._seconds_before + time.perf_counter() - self._session_start

    def _set_lr(self) -> None:
        fraction = budget_fraction(self.position.iteration, self._elapsed(), self.config)
        set_epoch_lr(self.optimizer, self.position.epoch, self.config, fraction)

    def _epoch_loader(self) -> DataLoader:
        sampler = EpochBatchSampler(len(self.dataset), self.sampler_batch, self.config.seed,
                                    self.position.epoch, skip=self.position.step_in_epoch)
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate,
                          num_workers=self.config.workers, persistent_workers=False)

    def _run_epoch(self) -> str | None:
        """Train the rest of the current epoch; the reason for stopping early, or None at its end."""
        self._set_lr()
        self.model.train()
        self.criterion.train()
        loader = self._epoch_loader()
        bar = tqdm(loader, total=len(loader), initial=0, desc=f"epoch {self.position.epoch}",
                   dynamic_ncols=True, mininterval=2.0, disable=not self.show_progress)
        for batch in bar:
            reason = self._stop_reason()
            if reason:
                bar.close()
                return reason
            if self.config.decay_fractions:
                self._set_lr()
            started = time.perf_counter()
            losses = self._step(batch)
            self._after_step(batch, losses, time.perf_counter() - started, bar)
        return self._stop_reason() if self.position.step_in_epoch < self.steps_per_epoch else None

    def _after_step(self, batch, losses: dict[str, float] | None, seconds: float, bar: tqdm) -> None:
        pos, cfg = self.position, self.config
        pos.iteration += 1
        pos.step_in_epoch += 1
        pos.train_seconds = self._elapsed()
        rate = len(batch) / max(seconds, 1e-9)
        if losses is not None:
            bar.set_postfix(loss=f"{losses['loss']:.4f}", items_s=f"{rate:.0f}", refresh=False)
        if losses is not None and (pos.iteration % cfg.log_every == 0 or pos.iteration == 1):
            lr = run_lr(self.optimizer)
            self.metrics.write("step", epoch=pos.epoch, iteration=pos.iteration, lr=lr,
                               items_per_s=round(rate, 2), **losses)
            log.debug("it %d loss %.4f %.0f items/s", pos.iteration, losses["loss"], rate)
        if cfg.eval_every and pos.iteration % cfg.eval_every == 0:
            self._evaluate()
            self.model.train()
            self.criterion.train()
        if cfg.save_every and pos.iteration % cfg.save_every == 0:
            self._save_state()

    def _losses(self, batch) -> dict[str, torch.Tensor]:
        """The forward pass and the criterion's loss terms ("loss" = the total); subclasses override this."""
        batch = batch.to(self.device)
        with autocast(self.device, self.config.precision):
            out = self.model.forward_train(batch.images, batch.texts, batch.image_index)
            return self.criterion(out, batch.image_rows, self.position.iteration)

    def _step(self, batch) -> dict[str, float] | None:
        """One optimizer step; None (and no update) when the loss is not finite."""
        losses = self._losses(batch)
        loss = losses["loss"].float()
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.position.skipped_steps += 1
            log.warning("iteration %d: non-finite loss %s, step skipped (%d so far)", self.position.iteration,
                        loss.item(), self.position.skipped_steps)
            return None
        self._backward_and_update(loss)
        return {k: float(v.detach().float()) for k, v in losses.items()}

    def _backward_and_update(self, loss: torch.Tensor) -> None:
        clip = self.config.grad_clip
        if self.scaler is None:
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(self.clip_params, clip)
            self.optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.clip_params, clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    # -- evaluation and checkpoints ---------------------------------------------------------------
    def _evaluate(self) -> None:
        pos = self.position
        self.model.eval()
        started = time.perf_counter()
        scores = self.evaluate(self.model)
        metric = self.config.selection_metric
        score = self._selection_score(scores)
        pos.last_eval_iteration = pos.iteration
        improved = math.isfinite(score) and score > pos.best_score
        if improved:
            pos.best_score, pos.best_iteration = score, pos.iteration
            self.save_best(self.model)
        self.metrics.write("eval", split="dev", epoch=pos.epoch, iteration=pos.iteration, best=improved,
                           selection_metric=metric, seconds=round(time.perf_counter() - started, 2), **scores)
        log.info("dev at iteration %d: %s %.2f%s", pos.iteration, metric, score,
                 " (best so far, saved)" if improved else "")

    def _selection_score(self, scores: dict) -> float:
        metric = self.config.selection_metric
        value = scores.get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            numeric = sorted(k for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            # ValueError, not TypeError: a misnamed metric is the user's to fix (the CLI reports ValueErrors)
            raise ValueError(f"selection metric {metric!r}: expected a number among the dev scores, found "  # noqa: TRY004
                             f"{value!r}; the scores are {numeric}")
        return float(value)

    def _save_state(self) -> None:
        self.position.train_seconds = self._elapsed()
        scaler_state = self.scaler.state_dict() if self.scaler is not None else None
        save_training_state(self.run_dir, self.position, self.model, self.criterion, self.optimizer, scaler_state)
