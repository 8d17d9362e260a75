"""Every error leaves the server as JSON `{"error": message, "status": code}` -- never a stack trace.

Validation problems name the parameter (`"k: expected an integer in 1..100, found 1000000000"`); anything
unexpected is logged with its traceback on the server and answered with a generic 500 and an error id
the operator can find in the log.
"""
from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hrem.serve.security import SECURITY_HEADERS

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def describe_validation(exc: RequestValidationError) -> str:
    """'k: Input should be a valid integer, found "abc"' for the first problem (FastAPI's loc + msg)."""
    parts = []
    for problem in exc.errors():
        location = [str(p) for p in problem.get("loc", ()) if p not in ("query", "path", "body")]
        name = ".".join(location) or "request"
        found = problem.get("input")
        suffix = f", found {found!r}" if found is not None and not isinstance(found, dict) else ""
        parts.append(f"{name}: {problem.get('msg', 'invalid')}{suffix}")
    return "; ".join(parts) or "invalid request"


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, describe_validation(exc))


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error("error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    # Starlette answers this one outside the app's middleware, so it brings its own security headers.
    return error_response(500, f"internal error (id {error_id}; details are in the server log)", SECURITY_HEADERS)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
