"""`--config JOB.json` for the train commands: option values from a JSON object, under the flags given.

The keys are the options' names as Python identifiers, i.e. their argparse dests (`--batch-size` ->
batch_size, `--set` -> overrides, `--no-progress` -> progress), which are also the fields of the command's
job (hrem.jobs), so RUN/job.json of an earlier run is a valid --config. The values become the command
parser's defaults before the command line is parsed: an explicit flag always wins, and a required option
that the file gives is no longer required.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hrem.cli.options import MergeOverrides, parse_fractions, parse_ints, parse_names, parse_override
from hrem.config.base import ConfigError, load_json

LIST_TYPES = (parse_fractions, parse_ints, parse_names)   # flags that take "a,b,c": a JSON list works too
NOT_KEYS = ("help", "config")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="JSON",
                        help="a JSON object of option values (keys: option names with _ for -, e.g. "
                             "batch_size; RUN/job.json of a run works); flags given on the command line win")


def apply_config_file(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """When argv has --config FILE for a command that takes it, load FILE into that command's defaults."""
    path = _config_path(argv)
    commands = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command = next((token for token in argv if commands and token in commands.choices), None)
    if path is None or command is None:
        return
    sub = commands.choices[command]
    if not any(action.dest == "config" for action in sub._actions):
        return  # the real parse reports --config as an unrecognized argument
    values = read_config(path, sub, command)
    for action in sub._actions:
        if action.dest in values:
            action.required = False
    sub.set_defaults(**values)


def _config_path(argv: list[str]) -> Path | None:
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--config", type=Path, default=None)
    try:
        return pre.parse_known_args(argv)[0].config
    except argparse.ArgumentError:
        return None  # e.g. --config without a value: the real parse says so


def option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options a config file may set, by key (dest)."""
    return {a.dest: a for a in parser._actions
            if a.option_strings and a.dest not in NOT_KEYS and a.default is not argparse.SUPPRESS}


def read_config(path: Path, parser: argparse.ArgumentParser, command: str) -> dict[str, Any]:
    """{dest: value} from the JSON object in `path`, each value checked as its flag would check it."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of option values, found {type(data).__name__}")
    actions = option_actions(parser)
    unknown = sorted(set(data) - set(actions))
    if unknown:
        raise ConfigError(f"--config {path}: unknown key(s) {unknown} for hrem {command}; valid keys: "
                          f"{sorted(actions)}")
    return {key: option_value(actions[key], value, f"--config {path}: {key}") for key, value in data.items()}


def option_value(action: argparse.Action, value: Any, where: str) -> Any:
    """`value` (from JSON) as the parsed value of `action`; ConfigError naming `where` otherwise."""
    if value is None:
        if action.default is None:
            return None
        raise ConfigError(f"{where}: expected a value, found null")
    if action.nargs == 0:   # on/off flags: the key holds the dest's value (e.g. "progress": false)
        return _checked(value, isinstance(value, bool), "true or false", where)
    if isinstance(action, MergeOverrides):
        return _overrides(value, where)
    return _choice(action, _typed(action, value, where), where)


def _typed(action: argparse.Action, value: Any, where: str) -> Any:
    kind = action.type
    if kind in LIST_TYPES and isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if kind is int:
        return _checked(value, isinstance(value, int) and not isinstance(value, bool), "an integer", where)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(_checked(value, ok, "a number", where))
    _checked(value, isinstance(value, str), "a string", where)
    if kind is None or kind is str:
        return value
    try:
        return kind(value)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _choice(action: argparse.Action, value: Any, where: str) -> Any:
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where}: expected one of {list(action.choices)}, found {value!r}")
    return value


def _overrides(value: Any, where: str) -> dict[str, Any]:
    """--set values: {"key": value} or ["key=json", ...]."""
    if isinstance(value, dict):
        return dict(value)
    _checked(value, isinstance(value, list) and all(isinstance(v, str) for v in value),
             'an object {"card.field": value} or a list of "KEY=JSON" strings', where)
    try:
        return dict(parse_override(item) for item in value)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _checked(value: Any, ok: bool, expected: str, where: str) -> Any:
    if not ok:
        raise ConfigError(f"{where}: expected {expected}, found {json.dumps(value)}")
    return value
