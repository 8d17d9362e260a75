"""Start a grounding model's visual backbone from a trained detector's (issue 14, item 1).

MCN starts its DarkNet-53 from COCO-pretrained weights; here the shipped ShapesRef region detector
(`shapes-detector`, trained on ShapesRef boxes) plays that role: its backbone has the same ResNet card as the
`mcn-demo*` cards, so its `backbone.body.*` tensors are copied into the grounding model before the first
step. Only a fresh run is initialised this way; a resumed run loads its own checkpoint over it. The copy is
strict: every backbone tensor of the grounding model must exist in the detector with the same shape, or
the error names the first mismatches (a different ResNet card cannot be half-initialised silently).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from hrem.checkpoint.run import WEIGHTS_FILE, check_safetensors
from hrem.utils.registry import resolve_model

log = logging.getLogger(__name__)

PREFIX = "backbone.body."


def detector_backbone_state(source: str | Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """(weights file, {key under PREFIX: tensor}) of a detector run or shipped detector name."""
    run_dir = resolve_model(source, "detector")
    weights = run_dir / WEIGHTS_FILE
    check_safetensors(weights)
    state = {k: v for k, v in load_file(str(weights)).items() if k.startswith(PREFIX)}
    if not state:
        raise ValueError(f"{weights}: no '{PREFIX}*' tensors: not a detector with a ResNet backbone")
    return weights, state


def init_backbone_from_detector(model: torch.nn.Module, source: str | Path) -> int:
    """Copy the detector's backbone into `model` (keys `backbone.body.*`); returns the number of tensors."""
    weights, state = detector_backbone_state(source)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(PREFIX)}
    missing = sorted(set(own) - set(state))
    shapes = [f"{k}: model {tuple(own[k].shape)}, detector {tuple(state[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or shapes:
        problems = ([f"missing in the detector: {', '.join(missing[:3])}"] if missing else []) + shapes[:3]
        detail = "; ".join(problems)
        raise ValueError(f"backbone.init '{source}' ({weights}): the detector's backbone does not match the card's "
                         f"({detail}); use a detector trained with the same backbone.resnet card")
    with torch.no_grad():
        for key, tensor in own.items():
            tensor.copy_(state[key].to(tensor.dtype))
    log.info("visual backbone initialised from %s (%d tensors)", weights, len(own))
    return len(own)


__all__ = ["detector_backbone_state", "init_backbone_from_detector"]
