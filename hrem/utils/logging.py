"""Logging set-up. Only entry points (hrem.cli, jobs/) call `setup_logging`; the library just logs."""
from __future__ import annotations

import logging
import sys


def setup_logging(level: str | int = "INFO", file: str | None = None) -> None:
    """Configure the root logger once: a terse console format and an optional log file."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
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
