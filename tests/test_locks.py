"""Output-directory locks: a second holder is refused with the first one named; a lock left by a process
killed with -9 is taken over; the file is gone after release."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hrem.utils.locks import LOCK_NAME, OutputLocked, output_lock

HOLD = """
import sys, time
from hrem.utils.locks import output_lock
with output_lock(sys.argv[1], command="holder-job"):
    print("held", flush=True)
    time.sleep(60)
"""


def _start_holder(directory):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_naming_the_first(tmp_path):
    proc = _start_holder(tmp_path)
    try:
        with pytest.raises(OutputLocked, match=rf"holder-job.*pid {proc.pid}"):
            with output_lock(tmp_path):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_job_is_taken_over(tmp_path):
    proc = _start_holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_NAME).exists()       # the killed job could not clean up
    with output_lock(tmp_path, command="second") as path:
        assert "second" in path.read_text()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_released_on_error_and_reusable(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with output_lock(tmp_path):
            raise ZeroDivisionError("inside the lock")
    with output_lock(tmp_path):
        pass
    started = time.time()
    with output_lock(tmp_path):
        with pytest.raises(OutputLocked):
            with output_lock(tmp_path):
                pass
    assert time.time() - started < 30
