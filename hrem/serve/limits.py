"""Safety limits of the server and the bounded pool that every model call goes through.

`ModelPool` runs blocking model calls (text encoder + FAISS, grounding) on a fixed number of threads and
admits at most `workers + queue` calls at once: a request beyond that is refused at once (503) instead of
piling up tensors in memory, and a call that takes longer than `timeout_s` answers 504. The admission slot
is released only when the thread has really finished -- a timed-out call keeps its slot until it returns,
so timeouts cannot be used to push more work into memory than the bound allows.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from hrem.config.base import require
from hrem.store import MAX_FILTER_CHARS

T = TypeVar("T")


@dataclass(frozen=True)
class ServeLimits:
    max_k: int = 100                   # results per search
    default_k: int = 20
    max_query_chars: int = 300         # longer text is refused (422), not truncated silently
    max_filter_chars: int = 500        # `filter` text (hrem.store.where); longer is refused (400)
    timeout_s: float = 10.0            # per model call (search or ground) -> 504
    workers: int = 1                   # threads running model calls; HF fast tokenizers are not re-entrant
    queue: int = 32                    # admitted calls waiting for a worker; beyond -> 503
    max_caption_rows: int = 2_000_000  # captions shown in the grid are preloaded up to this many rows
    read_timeout_s: float = 5.0        # to send a whole request (head + body) once a connection waits for one
    max_connections: int = 256         # open connections (longest-idle closed first) and requests in progress
    max_upload_bytes: int = 8 * 2**20  # query image body (POST /api/search); beyond -> 413
    max_upload_pixels: int = 16_000_000   # query image width x height, checked from the header; beyond -> 413

    def validate(self) -> None:
        require(self.max_k >= 1, f"max_k: expected >= 1, found {self.max_k}")
        require(1 <= self.default_k <= self.max_k, f"default_k: expected 1..{self.max_k}, found {self.default_k}")
        require(self.max_query_chars >= 1, f"max_query_chars: expected >= 1, found {self.max_query_chars}")
        require(1 <= self.max_filter_chars <= MAX_FILTER_CHARS,
                f"max_filter_chars: expected 1..{MAX_FILTER_CHARS}, found {self.max_filter_chars}")
        require(self.timeout_s > 0, f"timeout_s: expected > 0, found {self.timeout_s}")
        require(self.workers >= 1, f"workers: expected >= 1, found {self.workers}")
        require(self.queue >= 0, f"queue: expected >= 0, found {self.queue}")
        require(self.read_timeout_s > 0, f"read_timeout_s: expected > 0, found {self.read_timeout_s}")
        require(self.max_connections >= 1, f"max_connections: expected >= 1, found {self.max_connections}")
        require(self.max_upload_bytes >= 1, f"max_upload_bytes: expected >= 1, found {self.max_upload_bytes}")
        require(self.max_upload_pixels >= 1, f"max_upload_pixels: expected >= 1, found {self.max_upload_pixels}")

    def __post_init__(self) -> None:
        self.validate()


class PoolSaturated(RuntimeError):
    """Every worker is busy and the waiting queue is full."""


class PoolTimeout(RuntimeError):
    """A model call did not finish within the limit."""


class ModelPool:
    def __init__(self, workers: int, queue: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.capacity = workers + queue
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hrem-model")
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _admit(self) -> None:
        if not self._slots.acquire(blocking=False):
            raise PoolSaturated(f"server busy: {self.capacity} model calls in flight (workers + queue)")
        with self._lock:
            self._in_flight += 1

    def _release(self, _: Future) -> None:
        with self._lock:
            self._in_flight -= 1
        self._slots.release()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on a worker thread; PoolSaturated when full, PoolTimeout after `timeout_s`."""
        self._admit()
        try:
            future = self._executor.submit(fn, *args)
        except RuntimeError:  # executor shut down
            self._release(Future())
            raise
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except asyncio.TimeoutError:
            raise PoolTimeout(f"model call exceeded {self.timeout_s:g} s") from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
