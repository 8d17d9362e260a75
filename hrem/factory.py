"""The only way from a name to a model: cards, models, criteria, tokenizers and image preprocessors.

    card = load_card("hrem-f30k", overrides={"text.backbone": "/models/bert-base-uncased"})
    model = create_model(card, weights="run/model.safetensors", device="cpu")

A card is a JSON file in `hrem/cards/` (or any path) validated into the dataclass of its `kind`; the
`_KINDS` registry maps a kind to (card class, builder). Builders take (card, device, dtype) and return a
module with fresh weights; `create_model` then loads `weights` with strict key and shape checks.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from hrem.config.base import ConfigError, from_dict, load_json, to_dict
from hrem.config.model import HREMCard
from hrem.data.images import ImagePreprocessor
from hrem.data.tokenize import TextTokenizer
from hrem.losses import build_loss
from hrem.model import build_hrem
from hrem.relation.instance import HREMCriterion
from hrem.utils.device import score_dtype
from hrem.utils.files import sha256_file
from hrem.utils.paths import CARDS_DIR, resolve_text_model_path
from hrem.utils.registry import PACKAGED_PREFIX, find_shipped, resolve_model, shipped_models
from hrem.vision.preprocess import LetterboxPreprocessor
from hrem.config.detector import DetectorCard
from hrem.config.grounding import MCNCard
from hrem.detection import build_detector
from hrem.grounding.build import build_mcn, build_mcn_tokenizer

log = logging.getLogger(__name__)

Builder = Callable[[Any, Any, Any], nn.Module]   # (card, device, dtype) -> module

def _build_hrem_with_detector(card: HREMCard, device: Any, dtype: Any) -> nn.Module:
    """HREM models; a detected_regions card gets its region detector loaded first (frozen, its weights
    copied into the model so that a run directory is self-contained)."""
    detector = None
    if card.image.kind == "detected_regions":
        ref = card.image.detector
        detector = load_region_detector(ref.path, device=device, input_size=ref.input_size)
    return build_hrem(card, device, dtype, detector=detector)


# kind -> (card dataclass, builder).
_KINDS: dict[str, tuple[type, Builder]] = {
    "hrem": (HREMCard, _build_hrem_with_detector),
    "mcn": (MCNCard, build_mcn),
    "detector": (DetectorCard, build_detector),
}


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def _card_files() -> dict[str, Path]:
    return {path.stem: path for path in sorted(CARDS_DIR.glob("*.json"))}


def list_models(kind: str | None = None) -> list[str]:
    """Names of the packaged cards, optionally only those of one kind ("hrem", "mcn")."""
    names = []
    for name, path in _card_files().items():
        if kind is None or json.loads(path.read_text(encoding="utf-8")).get("kind") == kind:
            names.append(name)
    return names


def _resolve_card_source(name_or_path: str | Path) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path / "config.json"                      # a run directory
    if path.suffix == ".json" and path.is_file():
        return path
    cards = _card_files()
    if str(name_or_path) in cards:
        return cards[str(name_or_path)]
    shipped = find_shipped(str(name_or_path).removeprefix(PACKAGED_PREFIX))
    if shipped is not None:
        return shipped.path / "config.json"              # a shipped checkpoint's card
    if path.is_dir() or len(path.parts) > 1:              # a path: listing card names would not help
        found = "a directory without config.json" if path.is_dir() else "no such file"
        raise ValueError(f"model card '{name_or_path}': expected a card JSON file or a run directory with "
                         f"config.json, found {found}")
    raise ValueError(f"unknown model card '{name_or_path}': expected a card name (one of {sorted(cards)}), a "
                     f"shipped checkpoint name ({', '.join(m.name for m in shipped_models())}), a card JSON "
                     f"file or a run directory with config.json")


def apply_overrides(data: dict, overrides: Mapping[str, Any], where: str) -> dict:
    """Set dotted keys ("text.backbone") in a copy of the card dictionary; validation happens after."""
    data = json.loads(json.dumps(data))
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: override '{dotted}': '{part}' is not a section, found {child!r}")
            node = child
        node[leaf] = value
    return data


def card_from_dict(data: Any, where: str = "card") -> Any:
    """Validate a card dictionary into the dataclass of its `kind`."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ConfigError(f"{where}: expected a card object with a 'kind' field (one of {known_kinds()})")
    if data["kind"] not in _KINDS:
        raise ConfigError(f"{where}.kind: expected one of {known_kinds()}, found {data['kind']!r}")
    return from_dict(_KINDS[data["kind"]][0], data, where)


def load_card(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Any:
    """A packaged card by name, a card JSON file, a run directory's config.json, or the card of a shipped
    checkpoint ('demo-grounding', 'packaged:NAME'; a card name wins when both exist, e.g. 'demo');
    `overrides` maps dotted field names to values (e.g. {"text.backbone": "/models/bert-base-uncased"})."""
    source = _resolve_card_source(name_or_path)
    data = load_json(source)
    if overrides:
        data = apply_overrides(data, overrides, str(source))
    return card_from_dict(data, str(source))


def card_to_dict(card: Any) -> dict:
    return to_dict(card)


def text_backbone_reference(card: Any) -> tuple[str, str | None, str] | None:
    """(backbone path, recorded SHA-256, state-dict prefix) of a card's pretrained HF text encoder, or None
    when the card has none: `text.*` of hrem cards, `language.*` of mcn cards with an HF encoder."""
    if isinstance(card, HREMCard):
        return card.text.backbone, card.text.backbone_sha256, "txt_enc.bert."
    if isinstance(card, MCNCard) and card.language.kind == "hf" and card.language.pretrained:
        return card.language.path, card.language.backbone_sha256, "language.text.bert."
    return None


def text_backbone_file(card: Any) -> Path:
    """The weights file of the card's text backbone directory (what `backbone_sha256` hashes)."""
    reference = text_backbone_reference(card)
    if reference is None:
        raise ValueError(f"card '{card.name}': expected a pretrained Hugging Face text encoder, found none")
    model_dir = resolve_text_model_path(reference[0])
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise FileNotFoundError(f"{model_dir}: expected model.safetensors or pytorch_model.bin, found neither")


def _read_weights(weights: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(weights, Mapping):
        return dict(weights)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                     optional_prefixes: tuple[str, ...] = ()) -> None:
    """Raise ValueError listing missing / unexpected keys and shape mismatches (first 10 of each)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(optional_prefixes)]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 10} more)" if len(items) > 10 else ""
            problems.append(f"{len(items)} {label}: {items[:10]}{more}")
    if problems:
        raise ValueError(f"{source}: weights do not match the card's architecture; " + "; ".join(problems))


def load_weights(model: nn.Module, card: Any, weights: str | Path | Mapping[str, torch.Tensor]) -> None:
    """Load weights into `model` strictly; a card whose text backbone is referenced by hash
    (`text.backbone_sha256`) may leave `txt_enc.bert.*` out, after the hash is checked."""
    source = str(weights) if not isinstance(weights, Mapping) else "state dict"
    state = _read_weights(weights)
    optional: tuple[str, ...] = ()
    reference = text_backbone_reference(card)
    if reference is not None and reference[1] is not None:
        _, sha, prefix = reference
        path = text_backbone_file(card)
        found = sha256_file(path)
        if found != sha:
            raise ValueError(f"{path}: text backbone SHA-256 is {found}, but the card (backbone_sha256) "
                             f"expects {sha}; the model was trained with other backbone weights")
        optional = (prefix,)
    check_state_dict(model, state, source, optional)
    model.load_state_dict(state, strict=False)


def create_model(card: Any, weights: str | Path | Mapping[str, torch.Tensor] | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """Build the model of `card` (a card object or a name) on `device` / `dtype`, then load `weights`."""
    if isinstance(card, (str, Path)):
        card = load_card(card)
    kind = getattr(card, "kind", None)
    if kind not in _KINDS:
        raise ValueError(f"card kind: expected one of {known_kinds()}, found {kind!r}")
    model = _KINDS[kind][1](card, device, dtype)
    if weights is not None:
        load_weights(model, card, weights)
    log.debug("created %s model '%s' (%d parameters)", kind, card.name, sum(p.numel() for p in model.parameters()))
    return model


def _require_hrem(card: Any, what: str) -> HREMCard:
    if not isinstance(card, HREMCard):
        raise ValueError(f"{what} needs an 'hrem' card, found kind {getattr(card, 'kind', None)!r}")
    return card


def create_criterion(card: Any, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None) -> HREMCriterion:
    """The training criterion (base loss + instance-level relation) of an `hrem` card."""
    card = _require_hrem(card, "create_criterion")
    criterion = HREMCriterion(card.embed_size, card.instance_relation, card.train.warmup_iters,
                              build_loss(card.loss.base, card.loss, generator),
                              build_loss(card.loss.gnn, card.loss, generator),
                              score_dtype(card.instance_relation.score_dtype, device))
    return criterion.to(device)


def create_tokenizer(card: Any) -> TextTokenizer:
    """The card's tokenizer: `text.*` of hrem cards; mcn cards keep `language.max_tokens` word pieces."""
    if isinstance(card, MCNCard):
        return build_mcn_tokenizer(card)
    card = _require_hrem(card, "create_tokenizer")
    return TextTokenizer(resolve_text_model_path(card.text.backbone), card.text.max_length)


def create_image_preprocessor(card: Any, model: nn.Module | None = None) -> Any:
    """image (path / PIL / uint8 array) -> what the card's image side reads: a [3, S, S] float32 tensor
    for grid cards; (letterboxed pixels, content rect) for detected_regions cards (`model` gives the
    detector's input size)."""
    card = _require_hrem(card, "create_image_preprocessor")
    if card.image.kind == "detected_regions":
        if model is None:
            raise ValueError(f"card '{card.name}': the image preprocessor of a detected_regions card needs the "
                             f"model (its detector's input size)")
        return LetterboxPreprocessor(int(model.img_enc.detector.input_size))
    if card.image.kind != "grid":
        raise ValueError(f"card '{card.name}' reads precomputed region features; it has no image preprocessor")
    return ImagePreprocessor(card.image.image_size, card.image.mean, card.image.std)


def load_region_detector(path: str | Path, device: torch.device | str = "cpu",
                         input_size: int | None = None) -> nn.Module:
    """A RegionDetector (hrem.vision.regions) in eval mode: an hrem detector run directory, a shipped
    detector name ('shapes-detector', or 'packaged:NAME'; hrem.utils.registry), or a local transformers
    object-detection directory (config.json with "model_type")."""
    model_dir = resolve_model(path, "detector")
    config = load_json(model_dir / "config.json")
    if isinstance(config, dict) and "kind" in config:
        card = card_from_dict(config, str(model_dir / "config.json"))
        if card.kind != "detector":
            raise ValueError(f"{model_dir}: expected a region detector (card kind 'detector'), found a "
                             f"{card.kind!r} model")
        return create_model(card, weights=model_dir / "model.safetensors", device=device).eval()
    if isinstance(config, dict) and "model_type" in config:
        from hrem.vision.hf_detector import load_hf_detector

        return load_hf_detector(model_dir, device=device, input_size=input_size).eval()
    raise ValueError(f"{model_dir / 'config.json'}: expected an hrem card ('kind') or a transformers config "
                     f"('model_type'), found keys {sorted(config)[:8] if isinstance(config, dict) else type(config)}")
