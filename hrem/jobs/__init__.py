"""Library job functions: one frozen job dataclass in, a run directory or a report on disk out.

    from hrem.jobs import TrainGroundingJob, run_train_grounding
    summary = run_train_grounding(TrainGroundingJob(out="runs/mcn", card="mcn-tiny", max_iters=100))
    print("\\n".join(summary.lines()))

Each `hrem <command>` parses its flags into the job and calls the function (the CLI does nothing else),
so a script and the shell run the same code. Jobs are validated when built (hrem.config.base.from_dict,
or the dataclass itself) and their field names are the commands' option names.

This package sits between hrem.pipeline / hrem.train (siblings that must not import each other: a
training job needs the pipeline's dev evaluators) and hrem.cli. The `jobs/*.py` scripts at the top of
the repository are launchers of hrem.cli, not this package. Names are imported lazily: `import hrem.jobs`
does not import torch; calling a run_* function does.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainingJob": "train_config", "TrainJob": "train_config", "TrainGroundingJob": "train_config",
    "TrainDetectorJob": "train_config", "EvaluateJob": "eval_config", "EvaluateGroundingJob": "eval_config",
    "EvaluateDetectorJob": "eval_config", "GroundJob": "eval_config",
    "TrainSummary": "summary", "EvaluationSummary": "summary", "GroundingResult": "grounding",
    "run_train": "retrieval", "run_evaluate": "retrieval",
    "run_train_grounding": "train_grounding", "run_evaluate_grounding": "grounding", "run_ground": "grounding",
    "run_train_detector": "detector", "run_evaluate_detector": "detector",
    # the jobs that already lived in hrem.pipeline, for one front door
    "EmbedConfig": "hrem.pipeline.embed", "run_embed": "hrem.pipeline.embed",
    "RegionsConfig": "hrem.pipeline.regions", "run_regions": "hrem.pipeline.regions",
}

__all__ = [
    "EmbedConfig", "EvaluateDetectorJob", "EvaluateGroundingJob", "EvaluateJob", "EvaluationSummary", "GroundJob",
    "GroundingResult", "RegionsConfig", "TrainDetectorJob", "TrainGroundingJob", "TrainJob", "TrainSummary",
    "TrainingJob", "run_embed", "run_evaluate", "run_evaluate_detector", "run_evaluate_grounding", "run_ground",
    "run_regions", "run_train", "run_train_detector", "run_train_grounding",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hrem.jobs' has no attribute {name!r}; it exports {__all__}")
    path = module if module.startswith("hrem.") else f"hrem.jobs.{module}"
    return getattr(importlib.import_module(path), name)
