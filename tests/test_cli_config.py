"""`--config JOB.json` of the train commands: values under explicit flags, required options from the file,
unknown keys and bad values named, and the merged job recorded in RUN/job.json (itself a valid --config)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_e2e import write_precomp

from hrem.cli import build_parser, main
from hrem.cli.config_file import apply_config_file
from hrem.cli.job_args import job_from_args
from hrem.jobs.common import record_job
from hrem.jobs.train_config import TrainDetectorJob, TrainGroundingJob, TrainJob


def _write(path: Path, values) -> Path:
    path.write_text(json.dumps(values))
    return path


def _parse(argv: list[str]):
    parser = build_parser()
    apply_config_file(parser, argv)
    return parser.parse_args(argv)


def test_config_values_sit_under_explicit_flags(tmp_path):
    config = _write(tmp_path / "job.json", {
        "card": "tiny", "data": "shapes", "out": "runs/a", "epochs": 3, "seed": 5, "batch_size": 8,
        "decay_fractions": [0.5], "max_iters": 10, "overrides": {"embed_size": 64}, "progress": False,
        "precision": "bf16"})
    args = _parse(["train", "--config", str(config)])   # --card, --data, --out come from the file
    assert (args.card, args.data, args.out) == ("tiny", Path("shapes"), Path("runs/a"))
    assert (args.epochs, args.seed, args.batch_size, args.decay_fractions) == (3, 5, 8, (0.5,))
    assert args.overrides == {"embed_size": 64} and args.progress is False and args.precision == "bf16"
    args = _parse(["train", "--config", str(config), "--epochs", "2", "--seed", "0", "--out", "runs/b",
                   "--set", "head.pooling=mean"])
    # an explicit flag wins even when it repeats the parser's own default (--seed 0)
    assert (args.epochs, args.seed, args.out) == (2, 0, Path("runs/b"))
    assert args.overrides == {"embed_size": 64, "head.pooling": "mean"}   # --set adds to the file's
    job = job_from_args(TrainJob, args)
    assert job.overrides == {"embed_size": 64, "head.pooling": "mean"} and job.max_iters == 10


def test_unknown_key_is_named_with_the_valid_ones(tmp_path, capsys):
    config = _write(tmp_path / "job.json", {"batchsize": 8})
    assert main(["train-grounding", "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "'batchsize'" in err and "hrem train-grounding" in err and "'batch_size'" in err and "valid keys" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("values,fragment", [
    ({"epochs": "three"}, "epochs: expected an integer"),
    ({"lr": True}, "lr: expected a number"),
    ({"precision": "fp8"}, "precision: expected one of"),
    ({"cem": "no"}, "cem: expected true or false"),
    ({"overrides": ["mask_weight"]}, "expected KEY=VALUE"),
    ({"device": None}, "device: expected a value"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_values_are_named(tmp_path, capsys, values, fragment):
    config = _write(tmp_path / "job.json", values)
    assert main(["train-grounding", "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    assert fragment in capsys.readouterr().err


def test_config_only_for_the_train_commands(tmp_path, capsys):
    config = _write(tmp_path / "job.json", {})
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", "demo", "--data", str(tmp_path), "--config", str(config)])
    assert "unrecognized arguments: --config" in capsys.readouterr().err
    assert main(["train-detector", "--out", str(tmp_path / "run"), "--config", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("command,job_cls,argv", [
    ("train", TrainJob, ["--card", "tiny", "--data", "d", "--out", "o", "--set", "head.pooling=mean",
                         "--decay-fractions", "0.5", "--max-iters", "4", "--no-progress", "--precision", "auto"]),
    ("train-grounding", TrainGroundingJob, ["--out", "o", "--no-cem", "--test-splits", "", "--decay-epochs", "3,4",
                                            "--task", "rec", "--selection-metric", "miou", "--workers", "0"]),
    ("train-detector", TrainDetectorJob, ["--out", "o", "--workers", "1", "--selection-metric", "ap50"]),
])
def test_recorded_job_is_a_valid_config(tmp_path, command, job_cls, argv):
    job = job_from_args(job_cls, _parse([command, *argv]))
    again = job_from_args(job_cls, _parse([command, "--config", str(record_job(tmp_path, job))]))
    assert again == job


def test_train_records_the_merged_job_and_resumes_from_it(tmp_path, capsys):
    data = write_precomp(tmp_path / "synth_precomp", counts=(("train", 40), ("dev", 10)))
    run = tmp_path / "run"
    config = _write(tmp_path / "job.json", {
        "card": "tiny-regions", "data": str(data), "out": str(run), "workers": 0, "batch_size": 16, "epochs": 1,
        "max_iters": 2, "progress": False, "selection_metric": "t2i_r1"})
    assert main(["--log-level", "WARNING", "train", "--config", str(config), "--max-iters", "3"]) == 0
    job = json.loads((run / "job.json").read_text())
    assert (job["max_iters"], job["batch_size"], job["workers"], job["selection_metric"]) == (3, 16, 0, "t2i_r1")
    recorded = json.loads((run / "train_args.json").read_text())
    assert recorded["job"] == job and recorded["config"]["selection_metric"] == "t2i_r1"
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert evals and all(e["selection_metric"] == "t2i_r1" for e in evals)
    # the recorded job is itself a --config: the same run resumes under a larger budget
    assert main(["--log-level", "WARNING", "train", "--config", str(run / "job.json"), "--max-iters", "5"]) == 0
    position = torch.load(run / "training_state.pt", weights_only=True)["position"]
    assert position["iteration"] == 5 and position["selection_metric"] == "t2i_r1"
    assert json.loads((run / "job.json").read_text())["max_iters"] == 5
    # the saved best model was chosen by t2i_r1: continuing by rsum is refused
    capsys.readouterr()
    assert main(["--log-level", "WARNING", "train", "--config", str(run / "job.json"), "--max-iters", "6",
                 "--selection-metric", "rsum"]) == 1
    assert "selects its best model by 't2i_r1'" in capsys.readouterr().err
    assert json.loads((run / "job.json").read_text())["selection_metric"] == "t2i_r1"   # record left alone
