"""Helpers shared by the readers: picking a split, reading JSON and reporting missing files."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SHOWN_MISSING = 5


def load_json_file(path: Path) -> Any:
    """json.load with errors that name the file (and the position of a syntax error)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: expected valid JSON, found a syntax error ({exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: expected UTF-8 text, found an invalid byte at offset {exc.start}") from None


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {what})")


def check_files_exist(paths: Iterable[Path], source: Path, what: str) -> None:
    """Raise one FileNotFoundError naming how many of `paths` are missing and the first few."""
    paths = list(paths)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:SHOWN_MISSING])
        more = "" if len(missing) <= SHOWN_MISSING else f" and {len(missing) - SHOWN_MISSING} more"
        raise FileNotFoundError(f"{source}: expected all {len(paths)} {what} to exist, found {len(missing)} "
                                f"missing: {shown}{more}")


def pick_split(split: str, available: Iterable[str], source: Path, names: tuple[str, ...]) -> str:
    """The first of `names` (the on-disk spellings of `split`, hrem.data.splits) found in `available`."""
    available = sorted(set(available))
    for name in names:
        if name in available:
            return name
    raise ValueError(f"{source}: unknown split {split!r}; expected one of the splits found there: {available}")
