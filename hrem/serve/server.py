"""The HTTP server `hrem serve` runs (uvicorn), built in one place so the CLI, tests and benchmarks run the same.

uvicorn's own concurrency limit is off: it counts idle sockets as load and then refuses everyone, /healthz
included. Connections are bounded by `hrem.serve.connections` (read deadline, idle-first eviction) and
requests in progress by `hrem.serve.middleware.BusyLimit` (inside the app, /healthz exempt).
"""
from __future__ import annotations

from typing import Any

from hrem.serve.connections import ConnectionGuard, guarded_protocol
from hrem.serve.limits import ServeLimits

HEALTH_RESERVE = 32            # connections let in beyond the cap when all are busy (their requests meet BusyLimit)
MAX_REQUEST_HEAD = 16 * 1024   # bytes of request line + headers; beyond, h11 answers 400


def build_server(app: Any, host: str, port: int, limits: ServeLimits) -> Any:
    """A `uvicorn.Server` for `app` (call `.run()`); `.config.http` carries the shared ConnectionGuard."""
    import uvicorn

    guard = ConnectionGuard(limits.max_connections, HEALTH_RESERVE, limits.read_timeout_s)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", http=guarded_protocol(guard),
                            timeout_keep_alive=limits.read_timeout_s, limit_concurrency=None,
                            h11_max_incomplete_event_size=MAX_REQUEST_HEAD, lifespan="on")
    return uvicorn.Server(config)
