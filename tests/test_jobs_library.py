"""hrem.jobs from Python: jobs are validated with errors naming the field, the package imports without
torch, the metric names spelled out in hrem.jobs match the evaluators', and a grounding model trained and
evaluated through run_train_grounding / run_evaluate_grounding gives the numbers the CLI writes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import hrem.jobs
from hrem.config.base import ConfigError, from_dict
from hrem.eval.detection import COMBINED_SCORE
from hrem.eval.grounding import PREC_THRESHOLDS
from hrem.jobs.train_config import DETECTOR_SCORE, GROUNDING_METRICS, TrainGroundingJob, TrainJob


def test_metric_names_match_the_evaluators():
    assert DETECTOR_SCORE == COMBINED_SCORE
    assert {f"prec@{t:.2f}" for t in PREC_THRESHOLDS} <= set(GROUNDING_METRICS)


@pytest.mark.parametrize("values,fragment", [
    ({"card": "tiny", "data": "d", "out": "o", "selection_metric": "medr"}, "selection_metric: expected one of"),
    ({"card": "tiny", "data": "d", "out": "o", "workers": -1}, "workers: expected >= 0"),
    ({"card": "tiny", "out": "o"}, "missing required field 'data'"),
    ({"card": "tiny", "data": "d", "out": "o", "resume": "sometimes"}, "resume"),
])
def test_jobs_are_validated(values, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_dict(TrainJob, values)


def test_auto_selection_metric_follows_the_task():
    metrics = {task: TrainGroundingJob(out="o", task=task).resolved_selection_metric() for task in ("joint", "rec", "res")}
    assert metrics == {"joint": "acc@0.5+miou", "rec": "acc@0.5", "res": "miou"}
    assert TrainGroundingJob(out="o", task="rec", selection_metric="oiou").resolved_selection_metric() == "oiou"


def test_package_is_light_and_names_what_it_exports():
    code = "import sys, hrem.jobs, hrem.jobs.train_config, hrem.jobs.eval_config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    with pytest.raises(AttributeError, match="run_train_grounding"):
        hrem.jobs.run_everything  # noqa: B018


def test_train_then_evaluate_grounding_from_python(tmp_path):
    from hrem.data.cache import ensure_shapesref
    from hrem.jobs import EvaluateGroundingJob, run_evaluate_grounding, run_train_grounding

    data = ensure_shapesref(tmp_path / "shapes", train=12, dev=3, test=3, size=64, workers=1)
    job = TrainGroundingJob(out=str(tmp_path / "run"), card="mcn-tiny", data=str(data), batch_size=4, workers=0,
                            device="cpu", max_iters=2, progress=False)
    summary = run_train_grounding(job)
    assert summary.iterations == 2 and summary.selection_metric == "acc@0.5+miou"
    assert summary.tests.out == tmp_path / "run" / "report" and summary.lines()[0].startswith("trained 2 iterations")
    assert json.loads((tmp_path / "run" / "job.json").read_text())["max_iters"] == 2
    evaluated = run_evaluate_grounding(EvaluateGroundingJob(model=job.out, data=str(data), splits=("test",),
                                                            workers=0, device="cpu", progress=False))
    assert evaluated.out is None   # no report folder asked for: nothing written
    for key in ("n_samples", "acc@0.5", "miou"):
        assert evaluated.results["refs-test"][key] == pytest.approx(summary.tests.results["refs-test"][key])
