"""Hugging Face text backbones behind hrem's own interface (the only place `transformers` models are built).

`HFTextBackbone` wraps any encoder-only Hugging Face model found in a local directory (the packaged
MiniLM by default, bert-base-uncased for the paper's setting) and returns the last hidden state of every
token, [CLS] and [SEP] included, as HREM's EncoderText_BERT does. It never downloads: the path must be a
local directory (see hrem.utils.paths.resolve_text_model_path). With `pretrained=False` the architecture
is built from the directory's config.json (plus `config_overrides`) with random weights: the tiny test
cards use this to get a small BERT that still matches the packaged tokenizer's vocabulary.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hrem.encoders.feature_cache import FrozenFeatureCache
from hrem.encoders.length_chunks import run_length_chunked

log = logging.getLogger(__name__)


def _quiet_transformers() -> None:
    # transformers prints a loading progress bar and "some weights unused" notices; keep them in our log.
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def build_hf_encoder(model_dir: str | Path, pretrained: bool = True,
                     config_overrides: dict[str, Any] | None = None) -> nn.Module:
    """The bare encoder (e.g. BertModel) from a local directory, pretrained or randomly initialised."""
    import transformers

    _quiet_transformers()
    config = transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True)
    for key, value in (config_overrides or {}).items():
        if not hasattr(config, key):
            raise ValueError(f"text config override '{key}' is not a field of {type(config).__name__} "
                             f"({model_dir}/config.json)")
        setattr(config, key, value)
    if pretrained and not config_overrides:
        return transformers.AutoModel.from_pretrained(model_dir, local_files_only=True, add_pooling_layer=False)
    if pretrained:
        raise ValueError("config_overrides change the architecture, so they need pretrained=False")
    return transformers.AutoModel.from_config(config, add_pooling_layer=False)


class HFTextBackbone(nn.Module):
    """Token features [B, L, hidden] from a Hugging Face encoder; padding positions are zeros when the batch
    is run in length chunks (hrem.encoders.length_chunks), as computed otherwise; every consumer masks them.

    The wrapped model is kept as `self.bert` so state-dict keys read `bert.embeddings...`, the layout of
    HREM's official checkpoints.
    """

    def __init__(self, model_dir: str | Path, pretrained: bool = True,
                 config_overrides: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model_dir = str(model_dir)
        self.bert = build_hf_encoder(model_dir, pretrained, config_overrides)
        self.hidden_size = int(self.bert.config.hidden_size)
        self.feature_cache: FrozenFeatureCache | None = None

    def enable_feature_cache(self, max_entries: int) -> FrozenFeatureCache:
        """Reuse token states per caption (hrem.encoders.feature_cache); only for a frozen backbone."""
        if any(p.requires_grad for p in self.bert.parameters()) or self.bert.training:
            raise ValueError("feature cache: the text backbone must be frozen (no gradients, eval mode), "
                             "found a trainable backbone")
        self.feature_cache = FrozenFeatureCache(max_entries)
        return self.feature_cache

    def _backbone_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return run_length_chunked(self._bert_states, input_ids, attention_mask)

    def _bert_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.feature_cache is not None:
            return self.feature_cache.lookup(input_ids, attention_mask, self._backbone_states)
        return self._backbone_states(input_ids, attention_mask)  # [B, L, hidden]
