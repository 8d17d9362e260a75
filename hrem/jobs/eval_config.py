"""The evaluation and grounding jobs as frozen dataclasses of plain values (`hrem evaluate`,
`hrem evaluate-grounding`, `hrem evaluate-detector`, `hrem ground`). Field names are the commands' option
names; stdlib only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hrem.config.base import require

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def _require_counts(job: object, *names: str) -> None:
    for name in names:
        value = getattr(job, name)
        require(value >= 0, f"{name}: expected >= 0, found {value}")


@dataclass(frozen=True, kw_only=True)
class EvaluateJob:
    """`hrem evaluate`: R@K of a retrieval run on one dataset split."""

    model: str                                  # run directory or shipped name ("demo")
    data: str                                   # Karpathy/ShapesRef folder or *_precomp folder
    split: str = "test"
    protocols: tuple[str, ...] = ("auto",)      # auto, all, f30k, coco1k, coco5k
    out: str | None = None                      # report folder (None: RUN/eval-<split>)
    save_sims: bool = False                     # also write the [images, captions] score matrix
    image_root: str | None = None
    index: str | None = None                    # also R@K through this FAISS index
    device: str = "auto"
    precision: Precision = "fp32"
    batch_size: int = 128
    workers: int = 2
    threads: int = 0

    def validate(self) -> None:
        require(self.batch_size >= 1, f"batch_size: expected >= 1, found {self.batch_size}")
        require(bool(self.protocols), "protocols: expected at least one protocol, found none")
        _require_counts(self, "workers", "threads")


@dataclass(frozen=True, kw_only=True)
class EvaluateGroundingJob:
    """`hrem evaluate-grounding`: Acc@0.5, mIoU, oIoU, Prec@X, IE of a grounding run per split."""

    model: str | None = None                    # run directory or shipped name (None: demo-grounding)
    data: str | None = None                     # ShapesRef folder or refs JSON (None: the cached demo)
    images: str | None = None
    masks: str | None = None
    splits: tuple[str, ...] | None = None       # None: every split the data has but train
    limit: int | None = None                    # first N expressions per split
    asnls: bool | None = None                   # None: the card's inference.asnls; False: the ablation
    out: str | None = None                      # report folder (None: nothing written)
    device: str = "auto"
    batch_size: int = 32
    workers: int = 2
    threads: int = 0
    progress: bool = True

    def validate(self) -> None:
        require(self.batch_size >= 1, f"batch_size: expected >= 1, found {self.batch_size}")
        require(self.limit is None or self.limit >= 1, f"limit: expected >= 1, found {self.limit}")
        require(self.splits is None or bool(self.splits), "splits: expected at least one split, found none")
        _require_counts(self, "workers", "threads")


@dataclass(frozen=True, kw_only=True)
class EvaluateDetectorJob:
    """`hrem evaluate-detector`: box AP50 and attribute accuracy of a detector on a ShapesRef split."""

    model: str = "packaged:shapes-detector"
    data: str | None = None                     # ShapesRef folder (None: the cached demo)
    split: str = "test"
    out: str | None = None                      # folder of report.json (None: nothing written)
    device: str = "auto"
    precision: Precision = "fp32"
    batch_size: int = 64
    workers: int = 0
    threads: int = 0

    def validate(self) -> None:
        require(self.batch_size >= 1, f"batch_size: expected >= 1, found {self.batch_size}")
        _require_counts(self, "workers", "threads")


@dataclass(frozen=True, kw_only=True)
class GroundJob:
    """`hrem ground`: box + mask of what each text refers to in one image."""

    image: str
    texts: tuple[str, ...]
    out: str | None = None                      # overlay PNG (several texts: OUT-1.png, OUT-2.png, ...)
    model: str | None = None                    # run directory or shipped name (None: demo-grounding)
    asnls: bool | None = None
    device: str = "auto"
    threads: int = 0

    def validate(self) -> None:
        require(bool(self.texts), "texts: expected at least one referring expression, found none")
        _require_counts(self, "threads")
