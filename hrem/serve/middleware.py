"""ASGI middleware of the app: security headers on every response, and the busy limit."""
from __future__ import annotations

from typing import Any

from hrem.serve.errors import error_response
from hrem.serve.security import SECURITY_HEADERS

_ENCODED = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]

Scope = dict[str, Any]


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in _ENCODED if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)
        await self.app(scope, receive, send_with_headers)


class BusyLimit:
    """At most `limit` requests in the app at once; beyond, 503 at once -- except the exempt paths (health
    checks are cheap and must tell a load balancer that the server is alive while it is busy)."""

    def __init__(self, app: Any, limit: int, exempt: frozenset[str] = frozenset({"/healthz"})) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            return await self.app(scope, receive, send)
        if self.in_progress >= self.limit:
            response = error_response(503, f"server busy: {self.limit} requests in progress; retry shortly")
            return await response(scope, receive, send)
        self.in_progress += 1   # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1
