"""The training jobs as frozen dataclasses of plain values: what `hrem train`, `hrem train-grounding` and
`hrem train-detector` run, and what a `--config` JSON (or RUN/job.json) holds.

Field names are the commands' option names (`--batch-size` -> batch_size, `--set` -> overrides,
`--no-progress` -> progress), so a recorded job.json is itself a valid `--config`. None means "the
card's / the trainer's default" (epochs, batch_size, lr). Stdlib only: building a job never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hrem.config.base import require

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Resume = Literal["auto", "must", "never"]

# Scores the dev evaluators return that are "higher is better" (medr / meanr are not: never select by them)
RETRIEVAL_METRICS = ("rsum", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")
GROUNDING_SCORE = "acc@0.5+miou"   # Acc@0.5 + mask mIoU, the MCN selection score
# the Prec@X keys of hrem.eval.grounding_accumulator, and hrem.eval.detection.COMBINED_SCORE: spelled out,
# not imported, so that building the CLI parsers stays free of numpy (tests/test_jobs_library.py checks them)
GROUNDING_METRICS = ("auto", GROUNDING_SCORE, "acc@0.5", "box_miou", "miou", "oiou",
                     *(f"prec@{0.5 + 0.05 * i:.2f}" for i in range(10)))
DETECTOR_SCORE = "ap50+attributes"
DETECTOR_METRICS = (DETECTOR_SCORE, "ap50", "map50")


@dataclass(frozen=True, kw_only=True)
class TrainingJob:
    """What every training job has: where, which card, how long, how often, on what."""

    out: str                                    # run directory (created; re-running resumes)
    card: str                                   # card name (`hrem models`) or card JSON path
    overrides: dict[str, Any] = field(default_factory=dict)   # card fields, e.g. {"head.pooling": "mean"}
    data: str | None = None                     # dataset folder (None: the cached demo ShapesRef, if allowed)
    resume: Resume = "auto"                     # auto | must (a state is required) | never (none may exist)
    device: str = "auto"
    precision: Precision = "fp32"               # autocast; auto = fp16 on CUDA, fp32 on CPU
    workers: int = 2                            # DataLoader worker processes (0 = in the main process)
    threads: int = 0                            # torch intra-op threads (0 = torch's default)
    seed: int = 0
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    max_iters: int | None = None                # stop (resumably) after this many iterations in total
    time_budget: float | None = None            # stop (resumably) after this many minutes of training
    decay_fractions: tuple[float, ...] | None = None   # budget fractions where the lr decays
    eval_every: int = 0                         # iterations between dev evaluations (0 = every epoch)
    save_every: int = 0                         # iterations between training states (0 = every epoch)
    log_every: int = 10                         # iterations between metrics.jsonl step lines
    selection_metric: str = "rsum"              # dev score that picks the best model (higher is better)
    progress: bool = True                       # progress bars

    def validate(self) -> None:
        for name in ("workers", "threads", "eval_every", "save_every"):
            value = getattr(self, name)
            require(value >= 0, f"{name}: expected >= 0, found {value}")
        require(self.log_every >= 1, f"log_every: expected >= 1, found {self.log_every}")
        require(bool(self.out.strip()), "out: expected a run directory, found an empty string")
        metrics = self.selection_metrics()
        require(self.selection_metric in metrics,
                f"selection_metric: expected one of {list(metrics)}, found {self.selection_metric!r}")

    @classmethod
    def selection_metrics(cls) -> tuple[str, ...]:
        return RETRIEVAL_METRICS


@dataclass(frozen=True, kw_only=True)
class TrainJob(TrainingJob):
    """`hrem train`: a retrieval card on a Karpathy/ShapesRef folder or a *_precomp folder."""

    data: str = field()                         # required (field(): not the inherited None default)
    image_root: str | None = None               # image folder when not the dataset folder
    group_images: bool = False                  # batches of images with all their captions
    text_cache: str | None = None               # frozen text-backbone states shared across runs (a file)
    eval_batch_size: int = 128                  # dev evaluation batch

    def validate(self) -> None:
        super().validate()
        require(self.eval_batch_size >= 1, f"eval_batch_size: expected >= 1, found {self.eval_batch_size}")


@dataclass(frozen=True, kw_only=True)
class TrainGroundingJob(TrainingJob):
    """`hrem train-grounding`: an MCN card on RefCOCO-style data (default: the cached demo ShapesRef)."""

    card: str = "mcn-demo"
    images: str | None = None                   # image folder (default: DATA/images or beside a refs JSON)
    masks: str | None = None                    # mask folder for a refs JSON
    task: Literal["joint", "rec", "res"] = "joint"
    cem: bool = True                            # consistency energy (ablation: False)
    kmeans: bool = True                         # k-means anchors of the training boxes (False: the card's)
    train_split: str = "train"
    dev_split: str = "val"                      # model selection split
    test_splits: tuple[str, ...] = ("test",)    # evaluated at the end into OUT/report; () = none
    dev_limit: int = 1000                       # dev expressions per evaluation (0 = all)
    decay_epochs: tuple[int, ...] | None = None  # epochs where lr /= 10 (None: 30, 35, 40)
    eval_batch_size: int = 32
    selection_metric: str = "auto"              # auto: acc@0.5+miou (joint), acc@0.5 (rec), miou (res)

    def validate(self) -> None:
        super().validate()
        require(self.dev_limit >= 0, f"dev_limit: expected >= 0, found {self.dev_limit}")
        require(self.eval_batch_size >= 1, f"eval_batch_size: expected >= 1, found {self.eval_batch_size}")

    @classmethod
    def selection_metrics(cls) -> tuple[str, ...]:
        return GROUNDING_METRICS

    def resolved_selection_metric(self) -> str:
        """The metric "auto" stands for: the task's own score (what MCN selects by)."""
        if self.selection_metric != "auto":
            return self.selection_metric
        return {"joint": GROUNDING_SCORE, "rec": "acc@0.5", "res": "miou"}[self.task]


@dataclass(frozen=True, kw_only=True)
class TrainDetectorJob(TrainingJob):
    """`hrem train-detector`: the region detector on a ShapesRef folder (default: the cached demo)."""

    card: str = "shapes-detector"
    workers: int = 0
    save_every: int = 200
    dev_limit: int = 300                        # dev images per evaluation (0 = all)
    eval_batch_size: int = 64
    selection_metric: str = DETECTOR_SCORE

    def validate(self) -> None:
        super().validate()
        require(self.dev_limit >= 0, f"dev_limit: expected >= 0, found {self.dev_limit}")
        require(self.eval_batch_size >= 1, f"eval_batch_size: expected >= 1, found {self.eval_batch_size}")

    @classmethod
    def selection_metrics(cls) -> tuple[str, ...]:
        return DETECTOR_METRICS
