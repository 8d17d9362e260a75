"""/docs: the API described in one self-contained HTML page, generated from the app's OpenAPI schema.

FastAPI's Swagger UI loads its script and stylesheet from a CDN: a third party sees who reads the docs, the
page breaks offline, and the CSP would have to allow it. This page has no script and no external reference.
"""
from __future__ import annotations

from html import escape
from typing import Any

_HEAD = ('<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><title>hrem API</title>'
         '<link rel="stylesheet" href="/static/style.css"></head>\n<body class="docs">\n<h1>hrem API</h1>\n'
         '<p>Errors are JSON <code>{"error", "status"}</code>. The machine-readable schema is '
         '<a href="/openapi.json">/openapi.json</a>.</p>\n')


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    return str(schema.get("type", "any"))


def _parameters(operation: dict[str, Any]) -> str:
    rows = [f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p.get('in', ''))}</td>"
            f"<td>{escape(_type(p.get('schema', {})))}</td><td>{'yes' if p.get('required') else 'no'}</td></tr>"
            for p in operation.get("parameters", [])]
    if not rows:
        return "<p>No parameters.</p>\n"
    return ("<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th></tr>"
            + "".join(rows) + "</table>\n")


def render_docs(schema: dict[str, Any]) -> str:
    parts = [_HEAD]
    for path, methods in sorted(schema.get("paths", {}).items()):
        for method, operation in methods.items():
            parts.append(f"<h2><code>{escape(method.upper())} {escape(path)}</code></h2>\n")
            text = operation.get("description") or operation.get("summary") or ""
            parts.append(f"<p>{escape(text)}</p>\n" + _parameters(operation))
    parts.append("</body>\n</html>\n")
    return "".join(parts)
