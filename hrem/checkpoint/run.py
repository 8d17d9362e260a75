"""Run (checkpoint) directories: `config.json` (the card) + `model.safetensors`, written atomically.

A model's fingerprint combines the SHA-256 of its canonical card JSON (sorted keys, `card_sha256`) and the
SHA-256 of `model.safetensors` into one hex string (`model_fingerprint`); later stages (embeddings
manifest, index) record it and refuse to mix models.

Frozen pretrained text backbones (e.g. the demo's packaged MiniLM) are not copied into every run: the
card's `text.backbone_sha256` (mcn cards: `language.backbone_sha256`) records the hash of the backbone's
weights file instead, and loading checks it before restoring the backbone from `text.backbone` /
`language.path` (hrem.factory.load_weights).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from hrem.config.base import load_json, to_dict
from hrem.config.grounding import MCNCard
from hrem.config.model import HREMCard
from hrem.factory import card_from_dict, create_model, text_backbone_file, text_backbone_reference
from hrem.utils.files import (atomic_path, sha256_bytes, sha256_file, sha256_json, write_bytes_atomic,
                              write_json_atomic)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TEXT_BACKBONE_PREFIX = "txt_enc.bert."


def model_fingerprint(card_sha256: str, weights_sha256: str) -> str:
    """One hex SHA-256 naming a model: the hash of "<card sha256>:<weights sha256>"."""
    return sha256_bytes(f"{card_sha256}:{weights_sha256}".encode("ascii"))


def card_sha256(card: Any) -> str:
    return sha256_json(to_dict(card))


def run_fingerprint(run_dir: str | Path) -> str:
    """The fingerprint of a run directory, read from its files without building the model."""
    run_dir = Path(run_dir)
    config, weights = run_dir / CONFIG_FILE, run_dir / WEIGHTS_FILE
    for path in (config, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; a run directory holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    card = card_from_dict(load_json(config), str(config))
    check_safetensors(weights)
    return model_fingerprint(card_sha256(card), sha256_file(weights))


def check_safetensors(path: Path) -> None:
    """Refuse a truncated or corrupt safetensors file by name (the safetensors library raises a bare
    "invalid header" / "incomplete metadata" without the path): header length, JSON header, and tensor
    data ending exactly at the end of the file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 2 or 8 + length > size:
            raise ValueError(f"{path}: truncated or not a safetensors file (header of {length} bytes, file of "
                             f"{size} bytes); re-save or re-download the weights")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: corrupt safetensors header ({exc}); re-save or re-download the weights") \
                from None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        raise ValueError(f"{path}: truncated or corrupt safetensors file: expected {expected} bytes from its "
                         f"header, found {size}; re-save or re-download the weights")


def _references_text_backbone(card: Any, store_text_backbone: bool | None) -> bool:
    if isinstance(card, MCNCard) and text_backbone_reference(card) is not None:
        frozen = card.language.freeze
    elif isinstance(card, HREMCard) and card.text.pretrained:
        frozen = card.text.freeze
    else:
        return False
    return not store_text_backbone if store_text_backbone is not None else frozen


def _with_backbone_sha256(card: Any, sha: str | None) -> Any:
    """The card with its text backbone's recorded hash set (or cleared): `text.*` / `language.*`."""
    if isinstance(card, MCNCard) and card.language.kind == "hf":
        return dataclasses.replace(card, language=dataclasses.replace(card.language, backbone_sha256=sha))
    if isinstance(card, HREMCard):
        return dataclasses.replace(card, text=dataclasses.replace(card.text, backbone_sha256=sha))
    return card


def _tensors_to_save(model: nn.Module, skip_prefix: str | None) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in model.state_dict().items():
        if skip_prefix and key.startswith(skip_prefix):
            continue
        state[key] = value.detach().to("cpu").contiguous().clone()
    return state


def save_run(run_dir: str | Path, model: nn.Module, card: Any = None,
             extra_files: Mapping[str, str | bytes | dict | list] | None = None,
             store_text_backbone: bool | None = None) -> str:
    """Write `config.json` + `model.safetensors` (+ extra files) atomically; returns the fingerprint.

    `store_text_backbone=None` stores the text backbone unless the card keeps a pretrained backbone
    frozen; then only its SHA-256 goes into the card (`text.backbone_sha256`).
    """
    from safetensors.torch import save_file

    card = card if card is not None else model.card
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    skip = None
    if _references_text_backbone(card, store_text_backbone):
        card = _with_backbone_sha256(card, sha256_file(text_backbone_file(card)))
        skip = text_backbone_reference(card)[2]
    else:
        card = _with_backbone_sha256(card, None)
    with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
        save_file(_tensors_to_save(model, skip), str(tmp), metadata={"format": "pt", "card": card.name})
    for name, content in (extra_files or {}).items():
        data = content if isinstance(content, bytes) else (
            content.encode("utf-8") if isinstance(content, str) else (json.dumps(content, indent=2) + "\n").encode())
        write_bytes_atomic(run_dir / name, data)
    write_json_atomic(run_dir / CONFIG_FILE, to_dict(card))
    fingerprint = model_fingerprint(card_sha256(card), sha256_file(run_dir / WEIGHTS_FILE))
    log.info("saved %s (card %s, fingerprint %s)", run_dir, card.name, fingerprint[:16])
    return fingerprint


def load_run(run_dir: str | Path, device: torch.device | str = "cpu",
             dtype: torch.dtype | None = None) -> tuple[nn.Module, Any, str]:
    """(model in eval mode, card, fingerprint) from a run directory; errors name the file and the keys."""
    run_dir = Path(run_dir)
    fingerprint = run_fingerprint(run_dir)
    card = card_from_dict(load_json(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))
    model = create_model(card, weights=run_dir / WEIGHTS_FILE, device=device, dtype=dtype)
    return model.eval(), card, fingerprint
