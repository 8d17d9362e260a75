"""A retrieval run directory (or a shipped name such as 'demo') -> model, tokenizer, preprocessor and the
identity (fingerprint) that the embeddings manifest and index.json record: the one way the embed job,
`hrem evaluate`, the Searcher and the web server load a retrieval model."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hrem.checkpoint.run import card_sha256, load_run, run_fingerprint
from hrem.factory import create_image_preprocessor, create_tokenizer, load_card
from hrem.utils.files import sha256_file
from hrem.utils.registry import resolve_model

WEIGHTS_FILE = "model.safetensors"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    card: Any
    fingerprint: str
    card_sha256: str
    weights_sha256: str
    run_dir: Path
    tokenizer: Any
    preprocess: Callable | None          # grid and detected_regions cards (image files)

    @property
    def dim(self) -> int:
        return int(self.card.embed_size)

    @property
    def normalized(self) -> bool:
        return bool(getattr(self.card.head, "normalize", True))

    @property
    def image_kind(self) -> str:
        return str(self.card.image.kind)          # "grid" | "regions" | "detected_regions"

    @property
    def feature_dim(self) -> int | None:
        return getattr(self.card.image, "feature_dim", None)


def load_model(run_dir: str | Path, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None) -> LoadedModel:
    """Load a retrieval model in eval mode via hrem.checkpoint.load_run: a run directory (config.json +
    model.safetensors) or a shipped name ('demo', 'packaged:NAME'; hrem.utils.registry)."""
    run_dir = resolve_model(run_dir, "retrieval")
    device = torch.device(device)
    model, card, fingerprint = load_run(run_dir, device=device, dtype=dtype)
    model.eval()
    preprocess = create_image_preprocessor(card, model) if card.image.kind != "regions" else None
    return LoadedModel(model, card, fingerprint, card_sha256(card), sha256_file(run_dir / WEIGHTS_FILE),
                       run_dir, create_tokenizer(card), preprocess)


@dataclass(frozen=True)
class ModelIdentity:
    """A run directory's identity, read from its files without building the model."""
    fingerprint: str
    card_sha256: str
    weights_sha256: str
    card: Any


def model_identity(run_dir: str | Path) -> ModelIdentity:
    run_dir = resolve_model(run_dir, "retrieval")
    card = load_card(run_dir)
    return ModelIdentity(run_fingerprint(run_dir), card_sha256(card), sha256_file(run_dir / WEIGHTS_FILE), card)
