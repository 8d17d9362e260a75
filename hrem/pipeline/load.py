"""`hrem.load(NAME)`: a shipped checkpoint or a run directory, loaded as the object that uses it.

    model = hrem.load("demo")                  # LoadedModel: .model, .tokenizer, .preprocess, .fingerprint
    grounder = hrem.load("demo-grounding")     # Grounder: .ground(images, texts) -> box, score, mask
    detector = hrem.load("shapes-detector")    # LoadedDetector: .module (a RegionDetector), .fingerprint

What comes back depends on the checkpoint's kind (its config.json card), so one call covers every name
`hrem models` lists. This sits in the pipeline layer because the Grounder does.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from hrem.checkpoint.detector import load_detector
from hrem.checkpoint.loaded import load_model
from hrem.pipeline.ground import Grounder
from hrem.utils.registry import MODEL_KINDS, dir_model_kind, resolve_model

log = logging.getLogger(__name__)


def load(name_or_dir: str | Path, device: torch.device | str = "cpu", kind: str | None = None) -> Any:
    """A retrieval model (hrem.checkpoint.loaded.LoadedModel), a Grounder (hrem.pipeline.ground) or a
    LoadedDetector (hrem.checkpoint.detector), in eval mode on `device`. `kind` (retrieval / grounding /
    detector) makes a name of another kind an error instead of a different object."""
    model_dir = resolve_model(name_or_dir, kind)
    found = dir_model_kind(model_dir)
    found = "detector" if found == "transformers" else found   # transformers folders load as detectors
    if found not in MODEL_KINDS:
        raise ValueError(f"{model_dir / 'config.json'}: expected a card of kind hrem, mcn or detector (or a "
                         f"transformers detector), found {found!r}")
    log.info("loading %s model %s", found, model_dir)
    if found == "retrieval":
        return load_model(model_dir, device)
    if found == "grounding":
        return Grounder.load(model_dir, device=device)
    return load_detector(model_dir, device)
