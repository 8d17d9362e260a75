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
