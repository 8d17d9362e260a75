"""`build_mcn(card, device, dtype)`: where an MCN card becomes a GroundingModel (called by hrem.factory)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from hrem.config.grounding import MCNCard
from hrem.data.tokenize import TextTokenizer
from hrem.vision.backbone import VisualBackbone
from hrem.grounding.language import GRULanguageEncoder, HFLanguageEncoder
from hrem.grounding.model import GroundingModel
from hrem.grounding.parts import build_parts
from hrem.utils.paths import resolve_text_model_path

log = logging.getLogger(__name__)

SPECIAL_TOKENS = 2  # [CLS] and [SEP]: max_tokens counts word pieces only


def build_mcn_tokenizer(card: MCNCard) -> TextTokenizer:
    """The tokenizer of the card's language path, keeping `max_tokens` word pieces per expression."""
    return TextTokenizer(
        resolve_text_model_path(card.language.path), max_length=card.language.max_tokens + SPECIAL_TOKENS
    )


def build_language(card: MCNCard, tokenizer: TextTokenizer | None = None) -> nn.Module:
    cfg, ca2m = card.language, card.fusion == "ca2m"
    if cfg.kind == "hf":
        layers = card.ca2m.text_layers if ca2m else ()
        return HFLanguageEncoder(cfg, str(resolve_text_model_path(cfg.path)), layers)
    tokenizer = tokenizer or build_mcn_tokenizer(card)
    return GRULanguageEncoder(cfg, tokenizer.vocab_size, tokenizer.pad_id, with_levels=ca2m)


def build_mcn(
    card: MCNCard, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> GroundingModel:
    """A freshly initialised GroundingModel for `card` on `device` / `dtype` (hrem.factory loads weights)."""
    fine = card.mask_refine.feature if card.mask_refine.enabled else None
    model = GroundingModel(card, build_parts(card, VisualBackbone(card.backbone, fine), build_language(card)))
    model.to(device=device, dtype=dtype)
    log.info(
        "built MCN '%s': %.2f M parameters (%.2f M trainable)",
        card.name,
        count_parameters(model) / 1e6,
        count_parameters(model, trainable_only=True) / 1e6,
    )
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
