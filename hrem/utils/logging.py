"""Logging set-up. Only entry points (hrem.cli, jobs/) call `setup_logging`; the library just logs."""
from __future__ import annotations

import logging
import sys


class CurrentStderrHandler(logging.StreamHandler):
    """A console handler that writes to whatever `sys.stderr` is when a record is emitted.

    `main()` is callable from tests and notebooks, which swap `sys.stderr` (pytest's capture, Jupyter). A
    plain `StreamHandler(sys.stderr)` keeps the stream of the first call; once that stream is closed, every
    later log line becomes a "--- Logging error ---" traceback on the new stderr.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # logging reads (and StreamHandler assigns) this attribute
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # StreamHandler.__init__ / setStream assign it; the property always follows sys.stderr


def setup_logging(level: str | int = "INFO", file: str | None = None) -> None:
    """Configure the root logger once: a terse console format and an optional log file."""
    handlers: list[logging.Handler] = [CurrentStderrHandler()]
    if file:
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    logging.basicConfig(
        level=level if isinstance(level, int) else level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=handlers,
        force=True,
    )
    # faiss logs which SIMD build it tried to load at INFO; that is noise for users.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
