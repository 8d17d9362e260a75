"""What the job functions return: the numbers, where they were written, and the lines the CLI prints."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvaluationSummary:
    results: dict[str, dict]            # protocol or split -> its metrics
    out: Path | None                    # report folder or file (None: nothing written)
    lines: tuple[str, ...] = ()         # the human-readable summary


@dataclass(frozen=True)
class TrainSummary:
    out: Path                           # the run directory
    iterations: int                     # optimizer steps in total (all sessions)
    epochs: int                         # full epochs done
    selection_metric: str
    best_score: float                   # best dev value of selection_metric
    best_iteration: int
    tests: EvaluationSummary | None = None   # the best model on the test split(s), when the job evaluates it

    def lines(self) -> list[str]:
        head = (f"trained {self.iterations} iterations ({self.epochs} full epochs); best dev "
                f"{self.selection_metric} {self.best_score:.2f} at iteration {self.best_iteration}; "
                f"model in {self.out}")
        return [head, *(self.tests.lines if self.tests else ())]
