"""Shipped checkpoints by name, and the one resolver every model loader uses.

    resolve_model("demo", "retrieval")                 # -> hrem/assets/demo-retrieval
    resolve_model("packaged:shapes-detector", "detector")
    resolve_model("runs/my-run", "retrieval")          # a run directory, its card kind checked

The index is hrem/assets/models.json (name, folder, kind, description). It lives at the bottom layer
(utils) on purpose: hrem.factory resolves the detector a card names, and the checkpoint loaders sit
above the factory, so a resolver any higher could not serve both. It reads JSON only (no torch).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from hrem.utils.paths import ASSETS_DIR, CARDS_DIR

log = logging.getLogger(__name__)

INDEX_FILE = ASSETS_DIR / "models.json"
PACKAGED_PREFIX = "packaged:"
MODEL_KINDS = ("retrieval", "grounding", "detector")
# A checkpoint's config.json is a card; its card kind says what the model does.
CARD_KIND_TO_MODEL_KIND = {"hrem": "retrieval", "mcn": "grounding", "detector": "detector"}


@dataclass(frozen=True)
class ShippedModel:
    name: str          # what --model / hrem.load accept
    kind: str          # retrieval | grounding | detector
    description: str
    path: Path         # the checkpoint folder (config.json + model.safetensors)

    @property
    def names(self) -> tuple[str, ...]:
        """The name, and the folder name that 'packaged:FOLDER' always accepted."""
        return (self.name,) if self.path.name == self.name else (self.name, self.path.name)


def _entry(raw: object, position: int) -> ShippedModel:
    where = f"{INDEX_FILE}: models[{position}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object, found {type(raw).__name__}")
    missing = [k for k in ("name", "dir", "kind", "description") if not isinstance(raw.get(k), str)]
    if missing:
        raise ValueError(f"{where}: missing or non-string field(s) {missing}")
    if raw["kind"] not in MODEL_KINDS:
        raise ValueError(f"{where}.kind: expected one of {list(MODEL_KINDS)}, found {raw['kind']!r}")
    return ShippedModel(raw["name"], raw["kind"], raw["description"], ASSETS_DIR / raw["dir"])


def shipped_models(kind: str | None = None) -> list[ShippedModel]:
    """The shipped checkpoints (hrem/assets/models.json), optionally only those of one kind."""
    _check_kind(kind)
    try:
        doc = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{INDEX_FILE}: cannot read the shipped-model index ({exc})") from None
    models = [_entry(raw, i) for i, raw in enumerate(doc.get("models", []))]
    return [m for m in models if kind is None or m.kind == kind]


def find_shipped(name: str) -> ShippedModel | None:
    """The shipped checkpoint called `name` (its name or its folder name), or None."""
    return next((m for m in shipped_models() if name in m.names), None)


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in MODEL_KINDS:
        raise ValueError(f"model kind: expected one of {list(MODEL_KINDS)} or None, found {kind!r}")


def _listing(kind: str | None) -> str:
    """'shipped retrieval models: demo' -- only names of the wanted kind, so a refused name never appears."""
    names = [m.name for m in shipped_models(kind)]
    label = f"shipped {kind} models" if kind else "shipped models"
    return f"{label}: {', '.join(names)}" if names else f"{label}: none"


def dir_model_kind(path: Path) -> str | None:
    """What the checkpoint folder holds, from its config.json: retrieval / grounding / detector (an hrem
    card's kind), 'transformers' (a Hugging Face folder, 'model_type'), or None when neither is there."""
    config = path / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config}: cannot read the model's config ({exc})") from None
    if not isinstance(data, dict):
        return None
    if "kind" in data:
        return CARD_KIND_TO_MODEL_KIND.get(data["kind"], str(data["kind"]))
    return "transformers" if "model_type" in data else None


def _check_dir_kind(path: Path, ref: str, kind: str | None) -> None:
    found = dir_model_kind(path)
    # transformers object-detection folders are region detectors (hrem.vision.hf_detector)
    if kind is None or found is None or found == kind or (kind == "detector" and found == "transformers"):
        return
    what = "a transformers model folder" if found == "transformers" else f"a {found} model"
    raise ValueError(f"expected a {kind} model, found '{ref}' ({path / 'config.json'}): {what}; "
                     f"{_listing(kind)} (or a {kind} run directory)")


def check_model_kind(ref: str | Path, kind: str) -> None:
    """Refuse `ref` only when it is known to be a model of another kind (a shipped name, or a directory whose
    config.json says so); anything else -- a folder not written yet, a typo -- is left to resolve_model, so
    the CLI can check this while parsing and name the flag without touching the disk further."""
    _check_kind(kind)
    text = str(ref)
    path = Path(text).expanduser()
    if (path / "config.json").is_file():
        _check_dir_kind(path, text, kind)
        return
    shipped = find_shipped(text.removeprefix(PACKAGED_PREFIX))
    if shipped is not None and (len(path.parts) == 1 or text.startswith(PACKAGED_PREFIX)):
        _from_registry(text, shipped.name, kind)


def _from_registry(ref: str, name: str, kind: str | None) -> Path:
    shipped = find_shipped(name)
    if shipped is None:
        raise FileNotFoundError(_unknown_message(ref, name, kind))
    if kind is not None and shipped.kind != kind:
        raise ValueError(f"'{ref}' is a {shipped.kind} model, but a {kind} model is needed here; "
                         f"{_listing(kind)} (or give a {kind} run directory)")
    return shipped.path


# card kind -> the command that turns such a card into a checkpoint
_TRAIN_COMMANDS = {"hrem": "hrem train", "mcn": "hrem train-grounding", "detector": "hrem train-detector"}


def _card_hint(name: str) -> str:
    """When `name` is a card (an architecture, no weights), say how to get a checkpoint from it."""
    path = CARDS_DIR / f"{name}.json"
    if not path.is_file():
        return ""
    try:
        card_kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
    except (OSError, json.JSONDecodeError, AttributeError):
        card_kind = None
    command = _TRAIN_COMMANDS.get(card_kind, "hrem train")
    return (f". '{name}' is a card (an architecture without trained weights): train it first "
            f"(`{command} --card {name} ... --out RUN`) and pass RUN")


def _unknown_message(ref: str, name: str, kind: str | None) -> str:
    wanted = f"a shipped {kind} model" if kind else "a shipped model"
    if ref.startswith(PACKAGED_PREFIX):
        return (f"unknown model '{ref}': {PACKAGED_PREFIX}NAME names {wanted}, and none is called {name!r}; "
                f"{_listing(kind)} (`hrem models` lists them)")
    return (f"unknown model '{ref}': expected {wanted} name or a run directory holding config.json "
            f"(+ model.safetensors), found neither; {_listing(kind)} (`hrem models` lists them); "
            f"hrem does not download models" + _card_hint(name))


def resolve_model(ref: str | Path, kind: str | None = None) -> Path:
    """A checkpoint folder for `ref`: a run directory holding config.json (its card kind checked against
    `kind`), a shipped name ('demo', see `hrem models`) or 'packaged:NAME'. A directory wins over a
    shipped name of the same spelling, since the user pointed at it; 'packaged:NAME' always means the
    shipped one."""
    _check_kind(kind)
    text = str(ref)
    if text.startswith(PACKAGED_PREFIX):
        return _from_registry(text, text.removeprefix(PACKAGED_PREFIX), kind)
    path = Path(text).expanduser()
    if (path / "config.json").is_file():
        _check_dir_kind(path, text, kind)
        if find_shipped(text) is not None:
            log.info("'%s' is a directory here; using it, not the shipped model (packaged:%s names that)",
                     text, text)
        return path
    # a bare word is a name unless it is a folder here that is not shipped; anything with a slash is a path
    if (path.is_dir() and find_shipped(text) is None) or len(path.parts) > 1:
        raise _not_a_checkpoint(path, text, kind)
    return _from_registry(text, text, kind)


def _not_a_checkpoint(path: Path, text: str, kind: str | None) -> FileNotFoundError:
    detail = (f"{path} is a directory without config.json" if path.is_dir() else
              f"{path} is a file, not a checkpoint directory" if path.exists() else f"no such directory {path}")
    return FileNotFoundError(f"model '{text}': {detail}; expected a run directory (config.json + "
                             f"model.safetensors) or a shipped name; {_listing(kind)}")
