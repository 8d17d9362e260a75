"""Shared fixtures. Everything runs on CPU with tiny models and data made here or by the generator."""
import os
import tempfile

import pytest

# No test may reach a model hub; loading code must take local paths.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Checksum stamps (hrem.utils.hash_stamps) go to a per-run folder, not the user's ~/.cache/hrem.
os.environ.setdefault("HREM_CACHE_DIR", tempfile.mkdtemp(prefix="hrem-test-cache-"))


@pytest.fixture(autouse=True)
def _few_threads():
    # Two cores on CI and tiny models: one intra-op thread is fastest and avoids oversubscription.
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from a second thread
    yield
    torch.set_num_threads(previous)


_HOLD_LOCK = """
import sys, time
from hrem.utils.locks import output_lock
with output_lock(sys.argv[1], command=sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def lock_holder():
    """lock_holder(directory, command) -> a live process holding directory's output lock (killed at teardown):
    a real second process, because the lock is about processes."""
    import subprocess
    import sys

    started = []

    def start(directory, command="holder-job"):
        proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(directory), command],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        if proc.stdout.readline().strip() != "held":
            raise RuntimeError(f"the lock holder for {directory} did not start")
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def benchmark_script():
    """benchmark_script("name") -> benchmarks/name.py imported as a module (the scripts are not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    def load(name):
        if name not in sys.modules:
            path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module   # dataclasses look their module up while being built
            spec.loader.exec_module(module)
        return sys.modules[name]

    return load
