"""hrem: HREM image-text retrieval, FAISS search, and MCN-style grounding.

This file stays light on purpose: `import hrem.index` or `import hrem.eval` must not pull in torch, so the
model-side names are re-exported lazily (PEP 562).
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "create_model": "hrem.factory",
    "list_models": "hrem.factory",
    "load_card": "hrem.factory",
    "load": "hrem.pipeline.load",                  # a shipped name or run dir -> the loaded model
    "resolve_model": "hrem.utils.registry",
    "shipped_models": "hrem.utils.registry",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hrem' has no attribute {name!r}")
