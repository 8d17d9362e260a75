"""What is trained: the joint task (MCN) or one branch alone, with or without CEM (the ablation switches)."""

from __future__ import annotations

from dataclasses import dataclass

from hrem.config.base import require

TASKS = ("joint", "rec", "res")


@dataclass(frozen=True)
class GroundingTask:
    """"joint" (REC + RES, MCN), "rec" (box only) or "res" (mask only); `cem` adds the consistency energy
    (only meaningful for "joint")."""

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
