"""Tokens of the filter language (hrem.store.where) and the error every filter problem raises.

The tokenizer is a plain left-to-right scanner over fixed regular expressions: nothing in the text is ever
run as code. Each token keeps its character offset so that errors can point at the exact column. Common
habits from Python or C (`==`, `&&`, `!`, double-quoted values) are answered with the SQL spelling instead
of a bare "unexpected character".
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_FILTER_CHARS = 1000
KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})
COMPARISONS = ("<=", ">=", "!=", "<>", "=", "<", ">")
WHITESPACE = " \t\r\n"
CONTEXT_CHARS = 40     # characters of the filter shown on either side of the caret in an error

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# A sign belongs to the number: the language has no arithmetic, so "-3" can only be a literal.
_NUMBER = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_HINTS = {"==": "write '=' (SQL equality)", "&&": "write 'and'", "||": "write 'or'", "&": "write 'and'",
          "|": "write 'or'", "~": "write 'not'", "!": "write 'not' (or '!=' for inequality)",
          "[": "lists are written in (...), e.g. color in ('red', 'blue')"}
_INT64 = (-(2**63), 2**63 - 1)


class FilterError(ValueError):
    """A filter that cannot be parsed or does not fit the columns; the message points at the column."""

    def __init__(self, problem: str, text: str, position: int | None = None) -> None:
        self.problem = problem
        self.text = text
        self.position = position        # 0-based character offset of the mistake (None: the whole text)
        super().__init__(format_error(problem, text, position))

    @property
    def column(self) -> int | None:
        """1-based column of the mistake, as in the message."""
        return None if self.position is None else self.position + 1


def format_error(problem: str, text: str, position: int | None) -> str:
    """'filter: <problem> at column N: <text before>^<text after>' -- one line, fit for logs and JSON."""
    if position is None:
        return f"filter: {problem}"
    start, end = max(0, position - CONTEXT_CHARS), min(len(text), position + CONTEXT_CHARS)
    before = ("..." if start else "") + _printable(text[start:position])
    after = _printable(text[position:end]) + ("..." if end < len(text) else "")
    return f"filter: {problem} at column {position + 1}: {before}^{after}"


def _printable(text: str) -> str:
    # Echoing a NUL or an escape sequence into a terminal or a log line is its own small attack.
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass(frozen=True)
class Token:
    kind: str          # ident, quoted, string, number, keyword, op, "(", ")", ",", end
    text: str          # the source text of the token
    position: int      # 0-based offset of its first character
    value: Any = None  # ident/quoted: the column name; string/number: the Python value; keyword: lower-case


def tokenize(text: str, max_chars: int = MAX_FILTER_CHARS) -> list[Token]:
    """The tokens of `text`, ending with an `end` token; FilterError at the first character that fits none."""
    if not isinstance(text, str):
        raise FilterError(f"expected the filter as text, found {type(text).__name__}", "")
    if len(text) > max_chars:
        raise FilterError(f"expected at most {max_chars} characters, found {len(text)}", text)
    tokens, position = [], 0
    while True:
        while position < len(text) and text[position] in WHITESPACE:
            position += 1
        if position == len(text):
            tokens.append(Token("end", "", position))
            return tokens
        token = _next_token(text, position)
        tokens.append(token)
        position += len(token.text)


def _next_token(text: str, position: int) -> Token:
    char = text[position]
    if char == "'":
        return _quoted(text, position, "string")
    if char == '"':
        return _quoted(text, position, "quoted")
    for op in COMPARISONS:
        if text.startswith(op, position) and not text.startswith("==", position):
            return Token("op", op, position, op)
    if char in "(),":
        return Token(char, char, position)
    number = _NUMBER.match(text, position)
    if number:
        return _number(text, number.group(), position)
    ident = _IDENT.match(text, position)
    if ident:
        word = ident.group()
        if word.lower() in KEYWORDS:
            return Token("keyword", word, position, word.lower())
        return Token("ident", word, position, word)
    raise FilterError(_unexpected(text, position), text, position)


def _unexpected(text: str, position: int) -> str:
    char = text[position]
    for habit, hint in _HINTS.items():
        if text.startswith(habit, position):
            return f"unexpected {habit!r}; {hint}"
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return f"unexpected control character U+{ord(char):04X}"
    return f"unexpected character {char!r}; column names with other characters go in double quotes"


def _quoted(text: str, position: int, kind: str) -> Token:
    """'it''s' (a string value) or "odd name" (a column name): the quote doubled stands for itself."""
    quote, chars, index = text[position], [], position + 1
    while index < len(text):
        char = text[index]
        if char == quote:
            if text.startswith(quote * 2, index):
                chars.append(quote)
                index += 2
                continue
            value = "".join(chars)
            if kind == "quoted" and not value:
                raise FilterError("expected a column name inside the double quotes, found none", text, position)
            return Token(kind, text[position:index + 1], position, value)
        if not char.isprintable() and char not in "\t":
            raise FilterError(f"unexpected control character U+{ord(char):04X} inside a quoted text", text, index)
        chars.append(char)
        index += 1
    what = "string" if kind == "string" else "quoted column name"
    raise FilterError(f"unterminated {what}: expected a closing {quote} before the end", text, position)


def _number(text: str, source: str, position: int) -> Token:
    end = position + len(source)
    if end < len(text) and (text[end].isalnum() or text[end] in "_.'\""):
        raise FilterError(f"expected a number, found {text[position:end + 1]!r}", text, position)
    if re.fullmatch(r"[+-]?\d+", source, re.ASCII):
        value = int(source)
        if not _INT64[0] <= value <= _INT64[1]:
            raise FilterError("integer out of the 64-bit range", text, position)
        return Token("number", source, position, value)
    value = float(source)
    if value in (float("inf"), float("-inf")):
        raise FilterError("number too large for a 64-bit float", text, position)
    return Token("number", source, position, value)
