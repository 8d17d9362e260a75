"""Assembling a training run from a card: model, criterion, caption dataset, collate, checkpoints.

`train_config_from_card` merges the card's `train` section with explicit overrides into a TrainConfig;
`build_trainer` creates everything through hrem.factory and returns a ready Trainer. `train_args.json`
records the card, the config, the data and the command; resuming with a different card is refused.
"""
from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any, Callable

import torch

from hrem.checkpoint import save_run
from hrem.config.base import to_dict
from hrem.data.augment import CaptionAugmenter
from hrem.data.collate import GroupedTrainCollate, TrainCollate
from hrem.data.datasets import CaptionDataset, ImageGroupDataset, ImageLoader, RetrievalSplit
from hrem.data.tokenize import TextTokenizer
from hrem.factory import create_criterion, create_model
from hrem.train.config import TrainConfig
from hrem.train.loop import Evaluator, Trainer
from hrem.utils.files import write_json_atomic

log = logging.getLogger(__name__)

ARGS_FILE = "train_args.json"
_CARD_TO_CONFIG = {"lr": "lr", "lr_backbone_mult": "backbone_lr_mult", "graph_lr_factor": "graph_lr_factor",
                   "weight_decay": "weight_decay", "epochs": "epochs", "decay_epochs": "decay_epochs",
                   "decay_rate": "decay_rate", "batch_size": "batch_size", "grad_clip": "grad_clip",
                   "text_aug_p": "text_aug_p", "region_drop_p": "region_drop_p"}


def train_config_from_card(card: Any, **overrides: Any) -> TrainConfig:
    """The card's `train` section, then every override that is not None."""
    values = {cfg: getattr(card.train, field) for field, cfg in _CARD_TO_CONFIG.items()}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


def check_data_matches_card(card: Any, split: RetrievalSplit) -> None:
    wanted = ("images",) if card.image.kind == "grid" else ("precomp", "feature_files")
    if split.format not in wanted:
        hint = (f"; run `hrem regions --detector {card.image.detector.path}` on the images first (BUTD's "
                f"pipeline: region features are computed once, not in every step)"
                if card.image.kind == "detected_regions" else "")
        raise ValueError(f"{split.source}: card '{card.name}' takes {card.image.kind} features, which need "
                         f"{' or '.join(wanted)} input, found {split.format} input{hint}")
    if card.image.kind == "detected_regions" and split.format == "precomp":
        check_region_provenance(card, Path(split.source))


def check_region_provenance(card: Any, folder: Path) -> None:
    """Precomp rows must come from the card's own detector and settings (regions.json of `hrem regions`),
    else embedding raw images later would put them elsewhere in the space."""
    from hrem.checkpoint.detector import detector_fingerprint
    from hrem.config.base import load_json

    ref, state = card.image.detector, folder / "regions.json"
    if not state.is_file():
        log.warning("%s: no regions.json; cannot check that these region features come from the card's "
                    "detector %s (raw images embedded later run that detector)", folder, ref.path)
        return
    found = load_json(state).get("identity", {})
    wanted = {"detector_fingerprint": detector_fingerprint(ref.path), "regions": ref.regions,
              "geometry": ref.geometry}
    problems = [f"{k}: features made with {found.get(k)!r}, the card has {v!r}" for k, v in wanted.items()
                if found.get(k) != v]
    if problems:
        raise ValueError(f"{state}: these region features were not made by the card's image.detector "
                         f"({'; '.join(problems)}); re-run `hrem regions` with the card's detector or fix the card")


class BestSaver:
    """save_best callable: the run directory's config.json + model.safetensors (hrem.checkpoint)."""

    def __init__(self, run_dir: Path, card: Any) -> None:
        self.run_dir, self.card = run_dir, card

    def __call__(self, model: torch.nn.Module) -> None:
        save_run(self.run_dir, model, self.card)


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def record_or_check_args(run_dir: Path, card: Any, config: TrainConfig, extra: dict[str, Any]) -> None:
    """Write train_args.json for a new run; for a resumed run, refuse a different card."""
    from hrem.config.base import load_json

    path = run_dir / ARGS_FILE
    card_dict = to_dict(card)
    if path.is_file():
        previous = load_json(path).get("card")
        if previous != card_dict:
            changed = sorted(k for k in set(previous or {}) | set(card_dict)
                             if (previous or {}).get(k) != card_dict.get(k))
            raise ValueError(f"{path}: this run was trained with another card (fields differ: {changed}); "
                             f"use a new --out directory")
        return
    write_json_atomic(path, {"card": card_dict, "config": to_dict(config), "git_revision": _git_revision(), **extra})


def text_cache_identity(card: Any) -> str:
    """What a shared text-state cache must have been made by: the text backbone's weights."""
    from hrem.factory import text_backbone_file
    from hrem.utils.files import sha256_file

    return sha256_file(text_backbone_file(card))


def save_text_cache(model: torch.nn.Module, card: Any, config: TrainConfig) -> None:
    """Write the run's text-state cache to `config.text_cache_file` when that file does not exist yet."""
    cache = getattr(model.txt_enc, "feature_cache", None)
    if config.text_cache_file and cache is not None and not Path(config.text_cache_file).is_file():
        cache.save(config.text_cache_file, text_cache_identity(card))
        log.info("text-state cache: %d captions written to %s", len(cache), config.text_cache_file)


def build_trainer(card: Any, split: RetrievalSplit, preprocess: Callable | None, tokenizer: TextTokenizer,
                  run_dir: str | Path, config: TrainConfig, device: torch.device,
                  evaluate: Evaluator, show_progress: bool = True) -> Trainer:
    check_data_matches_card(card, split)
    torch.manual_seed(config.seed)  # model initialisation depends on the seed only
    model = create_model(card, device=device)
    criterion = create_criterion(card, device=device)
    if card.text.freeze and config.text_cache_size > 0:
        # a frozen backbone maps a caption to fixed states: compute them once per caption (train + dev)
        cache = model.txt_enc.enable_feature_cache(config.text_cache_size)
        if config.text_cache_file and Path(config.text_cache_file).is_file():
            loaded = cache.load(config.text_cache_file, text_cache_identity(card))
            log.info("text-state cache: %d captions from %s", loaded, config.text_cache_file)
    texts = CaptionAugmenter(tokenizer, config.text_aug_p) if config.text_aug_p > 0 else tokenizer
    if config.group_images:
        dataset = ImageGroupDataset(split, ImageLoader(split, preprocess), config.batch_size, config.region_drop_p)
        collate = GroupedTrainCollate(texts)
    else:
        dataset = CaptionDataset(split, ImageLoader(split, preprocess), config.region_drop_p)
        collate = TrainCollate(texts)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training card '%s' on %s (%s format): %d captions of %d images; %d trainable parameters (+%d in "
             "the criterion)", card.name, split.source, split.format, len(split.captions), split.num_images,
             n_train, sum(p.numel() for p in criterion.parameters()))
    return Trainer(model, criterion, dataset, collate, config, device, run_dir, evaluate,
                   BestSaver(Path(run_dir), card), show_progress)
