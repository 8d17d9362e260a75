"""`fused(fn)`: `torch.compile(fn, dynamic=True)` for elementwise / reduction chains that eager PyTorch runs
as many passes over memory, with the eager function as the fallback.

The compiled kernel is built on first use (seconds, with a C++ compiler; cached on disk by inductor) and
reused for every shape (dynamic=True). If compilation is unavailable or fails, the eager function runs
from then on and one warning says why; `HREM_COMPILE=0` turns compilation off. The result is the same
computation either way (tests compare both).
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)
log = logging.getLogger(__name__)


def compile_enabled() -> bool:
    return os.environ.get("HREM_COMPILE", "1") != "0"


def fused(fn: F) -> F:
    state: dict = {"compiled": None, "failed": False}

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if state["failed"] or not compile_enabled():
            return fn(*args, **kwargs)
        try:
            if state["compiled"] is None:
                import torch

                state["compiled"] = torch.compile(fn, dynamic=True)
            return state["compiled"](*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- any compiler problem: the eager function is the same maths
            state["failed"] = True
            log.warning("torch.compile of %s failed (%s: %s); running it eagerly", fn.__name__,
                        type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            return fn(*args, **kwargs)

    call.eager = fn   # type: ignore[attr-defined]
    return call       # type: ignore[return-value]
