"""The `filter` parameter of the search API: filter-language text (hrem.store.where, docs/filters.md).

It is parsed here, at the edge, against the images' metadata columns, so a bad filter costs no model call
and answers 400 with the parser's message (which points at the column of the mistake). The text is only
ever tokenized and parsed into a pyarrow expression; nothing in it runs as code.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from hrem.serve.errors import ApiError
from hrem.store import FilterError, parse_where


def check_filter(text: str | None, schema: pa.Schema, max_chars: int) -> pc.Expression | None:
    """The parsed filter, None when absent or blank (an empty form field); ApiError 400 when invalid."""
    if text is None or not text.strip():
        return None
    try:
        return parse_where(text, schema, max_chars)
    except FilterError as exc:
        raise ApiError(400, str(exc)) from None
