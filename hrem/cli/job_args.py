"""Parsed flags -> a job dataclass of hrem.jobs: the one step every command's `run(args)` takes."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _plain(value: Any) -> Any:
    """Paths as strings (jobs hold JSON-ready values)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def job_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """The job `cls` from the flags whose dest is one of its fields (plus `values`, which win). A flag left
    at None is left out, so the job's own default applies (e.g. --workers, --batch-size)."""
    from hrem.config.base import from_dict

    fields = {f.name for f in dataclasses.fields(cls)}
    given = {k: _plain(v) for k, v in vars(args).items() if k in fields and v is not None}
    given.update({k: _plain(v) for k, v in values.items()})
    return from_dict(cls, given, where=cls.__name__)
