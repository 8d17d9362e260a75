"""One writer per output directory: a lock file that names its holder and is recognised as stale when the
holder is gone.

Why a file and not only `fcntl.flock`: the lock must say *who* holds it (command, pid, host, start time) so
that the second job's error tells the user what to wait for, and it must survive for inspection while the
job runs. `flock` on the same file is what makes taking it race-free between two processes on one host,
and what recognises a lock left behind by a job killed with -9: the kernel drops the flock with the
process, so a stale file is simply taken over (no pid guessing)."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".hrem.lock"
log = logging.getLogger(__name__)


class OutputLocked(RuntimeError):
    """Another live job holds the output directory."""


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "an unknown job"
    return (f"{info.get('command', 'a job')!r} (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"since {info.get('started', '?')})")


@contextmanager
def output_lock(directory: str | Path, command: str | None = None) -> Iterator[Path]:
    """Hold `directory/.hrem.lock` for the duration of the block; raises `OutputLocked` naming the holder
    when a live process already holds it. The directory is created if needed; the lock file is removed on
    exit (also on errors)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    handle = _take(path)
    if handle is None:
        raise OutputLocked(f"{directory}: another job is writing here: {_holder_text(path)}; wait for it to "
                           f"finish (or stop it), then run again")
    if path.stat().st_size:
        log.info("%s: taking over a stale lock left by %s", directory, _holder_text(path))
    _write_holder(handle, command)
    try:
        yield path
    finally:
        _release(handle, path)


def live_holder(directory: str | Path) -> str | None:
    """Who holds `directory`'s lock now ("'hrem train ...' (pid 12, on host, since ...)"), or None when no live
    process does (no lock file, or one left by a killed job). For status listings; taking the lock is still
    `output_lock`'s job."""
    path = Path(directory) / LOCK_NAME
    try:
        handle = open(path)
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_text(path)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None


def _take(path: Path):
    """The flocked handle of `path`, or None when a live process holds it. Retries when the file was
    removed by a releasing holder between our open and our flock (we would hold a deleted inode)."""
    for _ in range(10):
        handle = open(path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()
    raise OSError(f"{path}: could not take the lock file (it keeps being replaced)")


def _write_holder(handle, command: str | None) -> None:
    info = {"command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "pid": os.getpid(),
            "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(info) + "\n")
    handle.flush()


def _release(handle, path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()
