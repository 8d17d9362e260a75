"""One flag vocabulary: every shared flag (hrem.cli.options) has the same type, default, choices, help and
action in every subcommand that has it; the commands that should have one do; and the train commands'
flags are exactly their job's fields, so a recorded job.json is a valid --config."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from hrem.cli import build_parser
from hrem.cli.config_file import add_config_argument
from hrem.cli.options import (
    SHARED_FLAGS,
    add_batch_size_argument,
    add_device_argument,
    add_out_argument,
    add_precision_argument,
    add_progress_argument,
    add_split_argument,
    add_splits_argument,
    add_threads_argument,
    add_workers_argument,
)
from hrem.jobs.eval_config import EvaluateDetectorJob, EvaluateGroundingJob, EvaluateJob, GroundJob
from hrem.jobs.train_config import TrainDetectorJob, TrainGroundingJob, TrainJob

ADDERS = {"--out": add_out_argument, "--split": add_split_argument, "--splits": add_splits_argument,
          "--device": add_device_argument, "--precision": add_precision_argument, "--threads": add_threads_argument,
          "--batch-size": add_batch_size_argument, "--workers": add_workers_argument,
          "--no-progress": add_progress_argument, "--config": add_config_argument}

TRAIN = {"--out", "--device", "--precision", "--threads", "--batch-size", "--workers", "--no-progress", "--config"}
EXPECTED = {
    "train": TRAIN, "train-grounding": TRAIN, "train-detector": TRAIN,
    "evaluate": {"--out", "--split", "--device", "--precision", "--threads", "--batch-size", "--workers"},
    "evaluate-grounding": {"--out", "--splits", "--device", "--threads", "--batch-size", "--workers", "--no-progress"},
    "evaluate-detector": {"--out", "--split", "--device", "--precision", "--threads", "--batch-size", "--workers"},
    "ground": {"--out", "--device", "--threads"},
    "embed": {"--out", "--split", "--device", "--precision", "--threads", "--batch-size", "--workers",
              "--no-progress"},
    "regions": {"--out", "--splits", "--device", "--precision", "--threads", "--batch-size", "--workers",
                "--no-progress"},
    "index": {"--out"}, "convert-checkpoint": {"--out"},
    "data shapes": {"--out", "--workers"}, "data contact-sheet": {"--out", "--split"},
    "data ceiling": {"--out", "--split"},
    "search": {"--device", "--threads"}, "serve": {"--device"},
}
# Same spelling, another thing: documented here (and in docs/cli.md) rather than hidden
EXCEPTIONS = {
    ("index", "--device"): "the FAISS device of IVF k-means (cpu | cuda), not a torch device",
    ("serve", "--workers"): "threads answering model calls of HTTP requests, not data-loading processes",
}
JOBS = {"train": TrainJob, "train-grounding": TrainGroundingJob, "train-detector": TrainDetectorJob,
        "evaluate": EvaluateJob, "evaluate-grounding": EvaluateGroundingJob,
        "evaluate-detector": EvaluateDetectorJob, "ground": GroundJob}
PRESENTATION_ONLY = {"json", "config"}   # flags that change what is printed or read, not the job


def _subcommands(parser: argparse.ArgumentParser, prefix: str = ""):
    """(name, parser) of every subcommand, nested ones (`data shapes`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                nested = list(_subcommands(sub, f"{full} "))
                yield from nested or [(full, sub)]


def _flag(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def _signature(action: argparse.Action) -> dict:
    return {"type": action.type, "default": action.default, "choices": action.choices, "help": action.help,
            "nargs": action.nargs, "action": type(action).__name__, "dest": action.dest,
            "metavar": action.metavar}


def _reference(flag: str) -> dict:
    parser = argparse.ArgumentParser()
    ADDERS[flag](parser)
    return _signature(_flag(parser, flag))


COMMANDS = dict(_subcommands(build_parser()))


def test_every_shared_flag_has_one_definition():
    assert set(ADDERS) == set(SHARED_FLAGS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_shared_flags_are_identical_where_present(name):
    parser = COMMANDS[name]
    for flag in SHARED_FLAGS:
        action = _flag(parser, flag)
        if action is None or (name, flag) in EXCEPTIONS:
            continue
        assert _signature(action) == _reference(flag), f"hrem {name} {flag} differs from hrem.cli.options"


def test_commands_have_the_shared_flags_they_should():
    assert set(EXPECTED) <= set(COMMANDS), f"unknown commands in EXPECTED: {set(EXPECTED) - set(COMMANDS)}"
    missing = {name: sorted(flags - {f for f in SHARED_FLAGS if _flag(COMMANDS[name], f)})
               for name, flags in EXPECTED.items()}
    assert not {k: v for k, v in missing.items() if v}, missing


def test_exceptions_are_still_needed():
    for (name, flag) in EXCEPTIONS:
        action = _flag(COMMANDS[name], flag)
        assert action is not None and _signature(action) != _reference(flag), (name, flag)


def test_old_spelling_is_a_deprecated_alias():
    action = _flag(COMMANDS["evaluate-grounding"], "--eval-batch-size")
    assert action is _flag(COMMANDS["evaluate-grounding"], "--batch-size")
    args = build_parser().parse_args(["evaluate-grounding", "--eval-batch-size", "7"])
    assert args.batch_size == 7


@pytest.mark.parametrize("name", sorted(JOBS))
def test_flags_are_the_job_fields(name):
    """Every flag reaches the job under its own name; a train command also has a flag for every job field
    (which is what makes RUN/job.json a valid --config)."""
    dests = {a.dest for a in COMMANDS[name]._actions if a.option_strings and a.dest != "help"}
    fields = {f.name for f in dataclasses.fields(JOBS[name])}
    assert dests - PRESENTATION_ONLY <= fields, sorted(dests - PRESENTATION_ONLY - fields)
    if name.startswith("train"):
        assert fields <= dests, sorted(fields - dests)
    else:   # positional-free commands: required job fields are required flags
        assert all(f.name in dests for f in dataclasses.fields(JOBS[name]) if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING)
