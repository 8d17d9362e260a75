"""`TrainConfig`: every knob of the training loop as one frozen dataclass (never an argparse Namespace).

Defaults are the paper's (REFERENCE_HREM.md §3); `hrem train` fills them from the card's `train` section
and the command line. Stopping rules: the loop ends at `epochs`, or earlier at `max_iters` total
iterations or after `time_budget_min` minutes of training, always with a saved, resumable state.
"""
from __future__ import annotations

from dataclasses import dataclass

from hrem.config.base import require


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 5e-4
    backbone_lr_mult: float = 0.1            # pretrained text backbone lr = lr * this
    graph_lr_factor: float = 1.0             # criterion (instance relation) lr = lr * this
    weight_decay: float = 1e-4
    epochs: int = 30
    decay_epochs: tuple[int, ...] = (15, 25)  # lr *= decay_rate at the start of each of these epochs
    decay_rate: float = 0.1
    # lr *= decay_rate once each of these fractions of the run's budget (time_budget_min and / or max_iters,
    # whichever is further along) is reached: a step schedule that fits a budgeted run (hrem, not the papers)
    decay_fractions: tuple[float, ...] = ()
    batch_size: int = 128
    grad_clip: float = 2.0                   # max grad norm over model + criterion params; 0 = off
    precision: str = "fp32"                  # fp32 | bf16 | fp16 (autocast; fp16 adds a grad scaler)
    text_aug_p: float = 0.2
    region_drop_p: float = 0.2
    workers: int = 2
    seed: int = 0
    log_every: int = 10                      # iterations between metrics.jsonl step lines
    eval_every: int = 0                      # iterations between dev evaluations; 0 = once per epoch
    save_every: int = 0                      # iterations between resumable states; 0 = once per epoch
    max_iters: int | None = None
    time_budget_min: float | None = None
    backbone_prefixes: tuple[str, ...] = ("txt_enc.bert.",)
    text_cache_size: int = 100_000           # captions whose frozen-backbone states are reused; 0 = off
    group_images: bool = False               # batches of images with all their captions (each image encoded
                                             # once per step; hrem option, the reference samples captions)
    text_cache_file: str | None = None       # share those states across runs: loaded when present, written
                                             # at the end of a run when absent (hrem.encoders.feature_cache)
    selection_metric: str = "rsum"           # key of the dev evaluator's scores that picks the best model
                                             # (higher is better); recorded in the training state

    def validate(self) -> None:
        require(self.lr > 0, f"lr: expected > 0, found {self.lr}")
        require(self.epochs >= 1, f"epochs: expected >= 1, found {self.epochs}")
        require(self.batch_size >= 2, f"batch_size: expected >= 2 (the loss needs negatives), found {self.batch_size}")
        require(self.precision in ("fp32", "bf16", "fp16"),
                f"precision: expected fp32, bf16 or fp16, found {self.precision!r}")
        require(0 <= self.text_aug_p <= 1, f"text_aug_p: expected in [0, 1], found {self.text_aug_p}")
        require(0 <= self.region_drop_p < 1, f"region_drop_p: expected in [0, 1), found {self.region_drop_p}")
        require(self.max_iters is None or self.max_iters >= 1, f"max_iters: expected >= 1, found {self.max_iters}")
        require(self.time_budget_min is None or self.time_budget_min > 0,
                f"time_budget_min: expected > 0, found {self.time_budget_min}")
        require(self.text_cache_size >= 0,
                f"text_cache_size: expected >= 0, found {self.text_cache_size}")
        require(self.workers >= 0, f"workers: expected >= 0, found {self.workers}")
        require(all(0 < f < 1 for f in self.decay_fractions),
                f"decay_fractions: expected fractions in (0, 1), found {self.decay_fractions}")
        require(bool(self.selection_metric.strip()),
                f"selection_metric: expected the name of a dev score such as 'rsum', found {self.selection_metric!r}")
        require(not self.decay_fractions or self.max_iters is not None or self.time_budget_min is not None,
                "decay_fractions: expected a budget to take fractions of (max_iters or time_budget_min), "
                "found neither")

    def __post_init__(self) -> None:
        self.validate()
