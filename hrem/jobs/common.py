"""What the job functions share: the resume rule, the demo-dataset default, the recorded job and the
training-loop settings every training job takes from its job."""
from __future__ import annotations

import functools
import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

from hrem.config.base import to_dict
from hrem.jobs.train_config import TrainingJob
from hrem.utils.files import write_json_atomic
from hrem.utils.locks import output_lock

log = logging.getLogger(__name__)
Result = TypeVar("Result")

JOB_FILE = "job.json"
STATE_FILE = "training_state.pt"   # = hrem.train.state.STATE_FILE (not imported: that module needs torch)


def one_writer(run: Callable[[Any], Result]) -> Callable[[Any], Result]:
    """A training job holds its run folder's lock (hrem.utils.locks) while it runs: a second session started
    on the same --out fails at once, naming the first, instead of both writing checkpoints into one folder."""
    @functools.wraps(run)
    def locked(job: Any) -> Result:
        with output_lock(job.out):
            return run(job)
    return locked


def check_resume(run_dir: Path, mode: str) -> None:
    """resume "must": a training state has to exist; "never": none may exist; "auto": either."""
    has_state = (run_dir / STATE_FILE).is_file()
    if mode == "must" and not has_state:
        raise FileNotFoundError(f"{run_dir}/{STATE_FILE}: resume 'must' (--resume must), but there is no state "
                                f"to resume")
    if mode == "never" and has_state:
        raise ValueError(f"{run_dir}/{STATE_FILE} exists and resume is 'never' (--resume never); use a new "
                         f"run directory (--out)")


def dataset_or_demo(data: str | None) -> Path:
    """The given dataset, or the cached demo ShapesRef (generated on first use)."""
    if data is not None:
        return Path(data)
    from hrem.data.cache import ensure_shapesref

    return ensure_shapesref()


def record_job(run_dir: Path, job: Any) -> Path:
    """RUN/job.json: the job this session ran (flags merged over --config), itself a valid --config."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / JOB_FILE
    write_json_atomic(path, to_dict(job))
    return path


def command_line() -> str:
    """The command line that started this process (`hrem ...` for the console script and `python -m hrem`)."""
    if sys.argv and Path(sys.argv[0]).name in ("hrem", "__main__.py"):
        return "hrem " + shlex.join(sys.argv[1:])
    return "python " + shlex.join(sys.argv)


def loop_settings(job: TrainingJob, precision: str, selection_metric: str) -> dict[str, Any]:
    """The TrainConfig values a training job sets (None: the card's or the trainer's default)."""
    return {"epochs": job.epochs, "batch_size": job.batch_size, "lr": job.lr, "precision": precision,
            "workers": job.workers, "seed": job.seed, "log_every": job.log_every, "eval_every": job.eval_every,
            "save_every": job.save_every, "max_iters": job.max_iters, "time_budget_min": job.time_budget,
            "decay_fractions": job.decay_fractions, "selection_metric": selection_metric}
