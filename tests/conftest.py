"""Shared fixtures. Everything runs on CPU with tiny models and data made here or by the generator."""
import os

import pytest

# No test may reach a model hub; loading code must take local paths.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _few_threads():
    # Two cores on CI; keep torch from oversubscribing when pytest runs alongside other work.
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(min(2, previous))
    yield
    torch.set_num_threads(previous)
