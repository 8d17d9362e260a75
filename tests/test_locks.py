"""Output-directory locks: a second holder is refused with the first one named; a lock left by a process
killed with -9 is taken over; the file is gone after release."""
from __future__ import annotations

import os
import signal
import time

import pytest

from hrem.utils.locks import LOCK_NAME, OutputLocked, live_holder, output_lock

def test_second_holder_is_refused_naming_the_first(tmp_path, lock_holder):
    proc = lock_holder(tmp_path)
    with pytest.raises(OutputLocked, match=rf"holder-job.*pid {proc.pid}"):
        with output_lock(tmp_path):
            pass


def test_lock_of_a_killed_job_is_taken_over(tmp_path, lock_holder):
    proc = lock_holder(tmp_path)
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


@pytest.mark.parametrize("command", [
    ["train", "--card", "tiny", "--data", "no-such-data"],
    ["train-detector", "--card", "tiny-detector", "--data", "no-such-data"],
    ["train-grounding", "--card", "mcn-tiny", "--data", "no-such-data"],
])
def test_a_training_into_a_run_folder_in_use_fails_naming_the_first_session(tmp_path, capsys, lock_holder,
                                                                            command):
    """Two sessions on one --out would both write training_state.pt and model.safetensors; the second must
    stop before it reads data or writes anything."""
    from hrem.cli import main

    out = tmp_path / "run"
    holder = lock_holder(out, "hrem train (first session)")
    assert main([*command, "--out", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "another job is writing here" in err and f"pid {holder.pid}" in err and "first session" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_live_holder_names_a_running_holder_and_not_a_killed_one(tmp_path, lock_holder):
    assert live_holder(tmp_path) is None                          # no lock file
    proc = lock_holder(tmp_path)
    assert f"pid {proc.pid}" in live_holder(tmp_path) and "holder-job" in live_holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_NAME).exists() and live_holder(tmp_path) is None   # stale file, nobody live
    with output_lock(tmp_path, command="second"):                 # asking did not get in the way
        pass
