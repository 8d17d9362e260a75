"""README's quick start, as a new user runs it: `python jobs/embed.py` in an empty folder, with the shipped
demo model and the real ShapesRef generator. It generates the test split and embeds it (~1.5 min on 2 cores),
then checks that a second run reuses every shard. test_demo.py covers the same pipeline with a tiny model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_start_runs_in_an_empty_folder(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "jobs" / "embed.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| exact |" in out and "rsum" in out
    assert out.count("satisfy the query") == 3
    assert "grounded: " in out and "box [" in out
    assert (tmp_path / "hrem-out" / "demo" / "emb" / "manifest.json").is_file()
    rerun = subprocess.run([sys.executable, str(ROOT / "jobs" / "embed.py")], cwd=tmp_path, capture_output=True,
                           text=True, timeout=3600)
    assert rerun.returncode == 0 and "0 written" in rerun.stdout   # restart reuses every shard
