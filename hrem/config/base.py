"""Turning JSON dictionaries into frozen dataclasses, with errors that name the field.

Every card and job config in hrem is a frozen dataclass. `from_dict` is the one way to build them from
JSON: it rejects unknown keys, reports missing ones, checks types (including nested dataclasses, tuples
and Optional/Literal fields) and then runs the class's own `validate()` if it has one. Errors name the
source (file or card) and the dotted field path, with the expected and the found value. Stdlib only.
"""
from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from hrem.config.ranges import range_errors

T = TypeVar("T")


class ConfigError(ValueError):
    """A card or config does not match its schema; the message names the source and field."""


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; convert lists to tuples and dicts to dataclasses."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(o) for o in options)}, found {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: expected one of {_type_name(tp)}, found {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, found {type(value).__name__} {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, found {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, found {type(value).__name__}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, found {type(value).__name__} {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build the dataclass `cls` from `data`, raising ConfigError that names `where` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object for {cls.__name__}, found {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    hints = get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required field '{name}' for {cls.__name__}")
            continue
        kwargs[name] = _coerce(data[name], hints[name], f"{where}.{name}")
    obj = cls(**kwargs)
    out_of_range = range_errors(obj)
    if out_of_range:
        raise ConfigError(f"{where}.{out_of_range[0]}" + (f" (and {len(out_of_range) - 1} more)"
                                                           if len(out_of_range) > 1 else ""))
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return obj


def to_dict(obj: Any) -> dict:
    """The JSON-ready dictionary of a (nested) dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def load_json(path: str | Path) -> Any:
    """Read a JSON file, with an error naming the file and the position when it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_dataclass(cls: type[T], path: str | Path) -> T:
    """Read a JSON file into the dataclass `cls`; errors name the file."""
    return from_dict(cls, load_json(path), where=str(path))


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition`; for use in dataclass `validate()` methods."""
    if not condition:
        raise ConfigError(message)


__all__ = ["ConfigError", "from_dict", "to_dict", "load_json", "load_dataclass", "require", "require_format"]


def require_format(found: tuple[str, int], expected: tuple[str, int]) -> None:
    """Check a file's (format, format_version) pair against what this code reads and writes."""
    require(found[0] == expected[0], f"format: expected {expected[0]!r}, found {found[0]!r}")
    require(found[1] == expected[1], f"format_version: expected {expected[1]}, found {found[1]}")
