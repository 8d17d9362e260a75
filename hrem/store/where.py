"""A safe, SQL-WHERE-like filter language over the metadata columns, parsed into a pyarrow expression.

    parse_where("split = 'test' and width >= 100")                  -> pc.Expression
    parse_where("color in ('red', 'blue') or not (note is null)", schema)   # schema: check columns + types

Grammar (docs/filters.md; keywords are case-insensitive, `not` binds tighter than `and`, `and` than `or`):

    filter     := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | predicate
    predicate  := column ( ("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") literal
                         | ["not"] "in" "(" literal ("," literal)* ")"
                         | "is" ["not"] "null" )
    column     := name | "double-quoted name"            ("" inside stands for ")
    literal    := 'single-quoted string' | integer | float | true | false   ('' inside stands for ')

The text is tokenized (hrem.store.where_tokens) and parsed by recursive descent; nothing in it is evaluated
as Python. Nesting (parentheses and `not`) is capped at MAX_DEPTH and the length at MAX_FILTER_CHARS, so a
hostile filter is refused instead of recursing or allocating without bound. Null handling is SQL's: a
comparison or an `in` with a null operand is unknown, `not` of unknown is unknown, and rows whose filter is
unknown are not selected.
"""
from __future__ import annotations

import difflib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hrem.store.where_legacy import legacy_error
from hrem.store.where_tokens import MAX_FILTER_CHARS, FilterError, Token, tokenize

MAX_DEPTH = 32
_COMPARE = {"=": pc.equal, "!=": pc.not_equal, "<>": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
            ">": pc.greater, ">=": pc.greater_equal}
_UNKNOWN = pa.scalar(None, pa.bool_())

__all__ = ["MAX_DEPTH", "MAX_FILTER_CHARS", "FilterError", "parse_where"]


def parse_where(text: str, schema: pa.Schema | None = None, max_chars: int = MAX_FILTER_CHARS) -> pc.Expression:
    """The pyarrow expression of a filter; FilterError (a ValueError) pointing at the first mistake.

    With a schema, column names must be in it and literals must suit the column's type."""
    try:
        return _parse(text, schema, max_chars)
    except FilterError as exc:
        if exc.position is None:   # too long or not text: refused before any scanning, legacy check included
            raise
        # Old `--filter "pc.field('split') == 'test'"` text: say how to write it now, never run it.
        raise (legacy_error(text, _parse) or exc) from None


def _parse(text: str, schema: pa.Schema | None = None, max_chars: int = MAX_FILTER_CHARS) -> pc.Expression:
    return _Parser(text, tokenize(text, max_chars), schema).parse()


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the filter"
    if token.kind == "quoted":
        return f"the column name {token.text}"
    return f"{token.text!r}"


class _Parser:
    def __init__(self, text: str, tokens: list[Token], schema: pa.Schema | None) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.schema = schema

    # -- token stream -------------------------------------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += min(1, len(self.tokens) - 1 - self.index)   # the end token is never consumed
        return token

    def at_keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "keyword" and token.value == word

    def error(self, problem: str, token: Token) -> FilterError:
        return FilterError(problem, self.text, token.position)

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nesting deeper than {MAX_DEPTH} levels of parentheses and 'not'", token)

    # -- grammar ------------------------------------------------------------------------------------
    def parse(self) -> pc.Expression:
        if self.peek().kind == "end":
            raise self.error("expected a condition, found nothing", self.peek())
        expression = self.or_expr()
        if self.peek().kind != "end":
            raise self.error(f"expected 'and', 'or' or the end, found {_describe(self.peek())}", self.peek())
        return expression

    def or_expr(self) -> pc.Expression:
        expression = self.and_expr()
        while self.at_keyword("or"):
            self.take()
            expression = expression | self.and_expr()     # pyarrow's | and & are Kleene (SQL) logic
        return expression

    def and_expr(self) -> pc.Expression:
        expression = self.not_expr()
        while self.at_keyword("and"):
            self.take()
            expression = expression & self.not_expr()
        return expression

    def not_expr(self) -> pc.Expression:
        token = self.peek()
        if self.at_keyword("not"):
            self.take()
            self.enter(token)
            expression = ~self.not_expr()
        elif token.kind == "(":
            self.take()
            self.enter(token)
            expression = self.or_expr()
            if self.peek().kind != ")":
                raise self.error(f"expected ')' to close the '(' at column {token.position + 1}, found "
                                 f"{_describe(self.peek())}", self.peek())
            self.take()
        else:
            return self.predicate()
        self.depth -= 1
        return expression

    def predicate(self) -> pc.Expression:
        name, column_type = self.column()
        token = self.take()
        if token.kind == "op":
            value = self.literal(f"after {token.text!r}", name, column_type)
            return _COMPARE[token.value](pc.field(name), pc.scalar(value))
        if token.kind == "keyword" and token.value == "is":
            negate = self.at_keyword("not")
            if negate:
                self.take()
            if not self.at_keyword("null"):
                raise self.error(f"expected 'null' after 'is{' not' if negate else ''}', found "
                                 f"{_describe(self.peek())}", self.peek())
            self.take()
            return pc.field(name).is_valid() if negate else pc.field(name).is_null()
        if token.kind == "keyword" and token.value in ("in", "not"):
            if token.value == "not":
                if not self.at_keyword("in"):
                    raise self.error(f"expected 'in' after 'not', found {_describe(self.peek())}", self.peek())
                self.take()
            expression = self.in_list(name, column_type)
            return ~expression if token.value == "not" else expression
        raise self.error(f"expected a comparison (= != <> < <= > >=), 'in', 'not in' or 'is' after column "
                         f"{name!r}, found {_describe(token)}", token)

    def column(self) -> tuple[str, pa.DataType | None]:
        token = self.take()
        if token.kind not in ("ident", "quoted"):
            hint = "; a condition starts with a column name" if token.kind in ("string", "number") else ""
            raise self.error(f"expected a column name, found {_describe(token)}{hint}", token)
        if self.schema is None:
            return token.value, None
        names = list(self.schema.names)
        if token.value not in names:
            close = _closest(token.value, names)
            guess = f" (did you mean {close!r}?)" if close else ""
            raise self.error(f"unknown column {token.value!r}{guess}; available: {', '.join(names)}", token)
        return token.value, self.schema.field(token.value).type

    def in_list(self, name: str, column_type: pa.DataType | None) -> pc.Expression:
        if self.peek().kind != "(":
            raise self.error(f"expected '(' to start the list after 'in', found {_describe(self.peek())}",
                             self.peek())
        self.take()
        items = [(self.peek(), self.literal("in the list", name, column_type))]
        while self.peek().kind == ",":
            self.take()
            items.append((self.peek(), self.literal("after ','", name, column_type)))
        if self.peek().kind != ")":
            raise self.error(f"expected ',' or ')' in the list, found {_describe(self.peek())}", self.peek())
        self.take()
        field = pc.field(name)
        # is_in answers false for a null row; SQL (and `not in`) needs unknown there, as for comparisons.
        return pc.if_else(field.is_null(), _UNKNOWN, pc.is_in(field, value_set=self.value_set(items, column_type)))

    def literal(self, where: str, name: str, column_type: pa.DataType | None) -> Any:
        token = self.take()
        if token.kind in ("string", "number"):
            value = token.value
        elif token.kind == "keyword" and token.value in ("true", "false"):
            value = token.value == "true"
        else:
            raise self.error(f"expected a value {where}, found {_describe(token)}{_literal_hint(token)}", token)
        return _fit(value, column_type, name, lambda problem: self.error(problem, token))

    def value_set(self, items: list[tuple[Token, Any]], column_type: pa.DataType | None) -> pa.Array:
        values = [value for _, value in items]
        if any(isinstance(v, pa.Scalar) for v in values):     # already cast to the column's type by _fit
            return pa.array([v.as_py() for v in values], column_type)
        first = _kind_of_value(values[0])
        for token, value in items[1:]:
            if _kind_of_value(value) != first:
                raise self.error(f"expected list values of one kind ({first}), found the "
                                 f"{_kind_of_value(value)} {token.text}", token)
        return pa.array(values)


def _closest(name: str, names: list[str]) -> str | None:
    """The column probably meant: the same name in other case (names are exact), else a near spelling."""
    same = [n for n in names if n.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, names, n=1)
    return close[0] if close else None


def _literal_hint(token: Token) -> str:
    if token.kind in ("quoted", "ident"):
        quoted = token.value.replace("'", "''")
        return f"; string values take single quotes: '{quoted}'"
    if token.kind == "keyword" and token.value == "null":
        return "; test for null with 'column is null' or 'column is not null'"
    return ""


def _kind_of_value(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def _kind_of_type(column_type: pa.DataType) -> str:
    if pa.types.is_dictionary(column_type):
        column_type = column_type.value_type
    if pa.types.is_string(column_type) or pa.types.is_large_string(column_type):
        return "string"
    if pa.types.is_boolean(column_type):
        return "boolean"
    if pa.types.is_integer(column_type) or pa.types.is_floating(column_type) or pa.types.is_decimal(column_type):
        return "number"
    return "other"


def _fit(value: Any, column_type: pa.DataType | None, name: str, error: Any) -> Any:
    """The literal as compared with the column: checked for the column's kind, cast for other types
    (dates, timestamps: '2024-01-31' becomes a date), unchanged without a schema."""
    if column_type is None:
        return value
    kind = _kind_of_type(column_type)
    if kind == "other":
        try:
            return pa.scalar(value).cast(column_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise error(f"column {name!r} holds {column_type}; {value!r} cannot be read as one") from None
    if kind != _kind_of_value(value):
        raise error(f"column {name!r} holds {kind} values ({column_type}), found the {_kind_of_value(value)} "
                    f"{value!r}")
    return value
