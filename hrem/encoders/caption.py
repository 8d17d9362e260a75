"""The caption encoder: a Hugging Face backbone's token states -> Linear -> the HREM head.

Keys follow the official `EncoderText_BERT`: `bert.*` (kept by HFTextBackbone), `linear.*`, `aggr.*`.
Every token is a fragment, [CLS] and [SEP] included, as in the reference; padding is excluded by the
attention mask. The reference hard-codes Linear(768, D); here the width is the backbone's hidden size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hrem.config.model import HeadCard
from hrem.encoders.head import EncoderOutput, make_gpool, pool_fragments
from hrem.encoders.text import HFTextBackbone


class CaptionEncoder(HFTextBackbone):
    """(input_ids [B, L], attention_mask [B, L]) -> EncoderOutput with D-dimensional word tokens."""

    def __init__(self, model_dir: str | Path, embed_size: int, head: HeadCard, aggr: nn.Module | None,
                 pretrained: bool = True, config_overrides: dict[str, Any] | None = None) -> None:
        super().__init__(model_dir, pretrained=pretrained, config_overrides=config_overrides)
        self.head = head
        self.linear = nn.Linear(self.hidden_size, embed_size)
        self.aggr = aggr
        self.gpool = make_gpool(head)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:  # type: ignore[override]
        if input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask "
                             f"{tuple(attention_mask.shape)} must have the same shape")
        hidden = HFTextBackbone.forward(self, input_ids, attention_mask)   # [B, L, hidden]
        mask = attention_mask.bool()
        tokens = self.linear(hidden)
        return EncoderOutput(pool_fragments(tokens, mask, self.head, self.aggr, self.gpool), tokens, mask)
