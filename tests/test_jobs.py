"""Every jobs/*.py launcher runs its subcommand: `--help` through a real subprocess exits 0 and names it."""
import subprocess
import sys
from pathlib import Path

import pytest

JOBS = sorted((Path(__file__).resolve().parent.parent / "jobs").glob("*.py"))


@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.name)
def test_launcher_help(job):
    out = subprocess.run([sys.executable, str(job), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: hrem" in out.stdout
