"""Recognising the old `--filter "pc.field('split') == 'test'"` text, which was once run as Python.

It is never evaluated now. When a filter fails to parse and looks like a pyarrow expression, the error
says so and, where a few textual rewrites produce a valid filter, shows the equivalent in the filter
language (`split = 'test'`). The rewrite is only a suggestion in a message: it is parsed, not run.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hrem.store.where_tokens import KEYWORDS, FilterError

_LEGACY = re.compile(r"\b(?:pc|ds)\s*\.\s*field\s*\(|\bfield\s*\(|\.isin\s*\(|\.is_(?:null|valid)\s*\(")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FIELD = re.compile(r"(?:\b(?:pc|ds)\s*\.\s*)?\bfield\s*\(\s*'((?:[^']|'')*)'\s*\)")
_ISIN = re.compile(r"\.isin\s*\(\s*[\[(](.*?)[\])]\s*\)")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_REWRITES = ((re.compile(r"\.is_null\s*\(\s*\)"), " is null"), (re.compile(r"\.is_valid\s*\(\s*\)"), " is not null"),
             (re.compile(r"=="), "="), (re.compile(r"&"), " and "), (re.compile(r"\|"), " or "),
             (re.compile(r"~"), " not "), (re.compile(r"\bTrue\b"), "true"), (re.compile(r"\bFalse\b"), "false"))


def legacy_error(text: Any, parse: Callable[[str], Any]) -> FilterError | None:
    """A FilterError explaining the new syntax if `text` looks like the old pyarrow text, else None."""
    if not isinstance(text, str):
        return None
    match = _LEGACY.search(text)
    if match is None:
        return None
    problem = "pyarrow expressions are no longer accepted (the text was once run as Python; see docs/filters.md)"
    suggestion = translate(text)
    try:
        parse(suggestion)
    except FilterError:
        return FilterError(f"{problem}; write e.g. \"split = 'test' and width >= 100\"", text, match.start())
    return FilterError(f"{problem}; write \"{suggestion}\" instead", text, match.start())


def translate(text: str) -> str:
    """Best-effort filter-language spelling of a pyarrow expression text (regular expressions only)."""
    out = _DOUBLE_QUOTED.sub(lambda m: "'" + m.group(1).replace("'", "''") + "'", text)
    out = _FIELD.sub(lambda m: _column(m.group(1).replace("''", "'")), out)
    out = _ISIN.sub(lambda m: f" in ({m.group(1)})", out)
    for pattern, replacement in _REWRITES:
        out = pattern.sub(replacement, out)
    return " ".join(out.split())


def _column(name: str) -> str:
    if _PLAIN_NAME.fullmatch(name) and name.lower() not in KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'
