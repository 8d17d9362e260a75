"""The expression encoder: token states -> one sentence vector f_q by per-channel attention pooling.

K (model/language_backbone.py) runs GloVe vectors through a bi-GRU (1024 per direction, merge = sum) and
pools with a per-channel attention: w = softmax over time of tanh(Dense(h)), f_q = sum_t w_t * h_t. hrem
keeps that pooling and replaces what feeds it:
- kind "hf": a Hugging Face encoder (the packaged MiniLM by default) whose token states are projected to
  `dim` (the GloVe vectors are not available here);
- kind "gru": K's encoder, a word embedding (over the tokenizer's vocabulary, trained) + bi-GRU summed.
For CA2M fusion (`fusion: ca2m`) the encoder also returns several granularities of token states
(`levels`): the hidden states of the configured HF layers (e.g. 2, 4, 6 of the 6-layer MiniLM, as the
paper's BERT blocks), or, for kind "gru", the word embeddings and the bi-GRU states.
Deviation from K: padding is masked in the pooling (K pads with zero vectors and does not mask; HF
encoders give non-zero states at padding, so masking is needed to keep f_q independent of batch padding),
and the GRU runs on packed sequences so the backward direction starts at the last real token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from hrem.config.grounding import MCNLanguageCfg
from hrem.data.tokenize import TokenBatch
from hrem.encoders.text import HFTextBackbone


@dataclass(frozen=True)
class LanguageOutput:
    sentence: torch.Tensor  # [B, D] f_q
    tokens: torch.Tensor  # [B, L, D] per-token states that were pooled
    mask: torch.Tensor  # [B, L] bool, True = real token
    levels: tuple[torch.Tensor, ...] = ()  # [B, L, w_i] token states at several granularities (CA2M only)


class ChannelAttentionPool(nn.Module):
    """K's per-channel attention pooling, with the padding masked out."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.score = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.dropout(torch.tanh(self.score(tokens)))  # [B, L, D]
        mask = mask.clone()
        mask[:, 0] |= ~mask.any(dim=1)  # an all-padding row pools its first position instead of NaN
        scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        weights = torch.softmax(scores, dim=1)  # over time, per channel
        return (weights * tokens).sum(dim=1)


class HFLanguageEncoder(nn.Module):
    """Hugging Face encoder -> Linear to `dim` -> per-channel attention pooling."""

    def __init__(self, cfg: MCNLanguageCfg, model_dir: str, hidden_layers: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.text = HFTextBackbone(
            model_dir, pretrained=cfg.pretrained, config_overrides=dict(cfg.config_overrides)
        )
        layers = int(self.text.bert.config.num_hidden_layers)
        if any(i > layers for i in hidden_layers):
            raise ValueError(f"ca2m.text_layers: expected layer indices <= {layers} (the text encoder's depth), "
                             f"found {hidden_layers}")
        self.hidden_layers = tuple(hidden_layers)
        self.level_widths = (self.text.hidden_size,) * len(hidden_layers)
        self.frozen = cfg.freeze
        if self.frozen:
            self.text.requires_grad_(False)
            self.text.eval()  # from the start, so a feature cache can be enabled before the first train()
        self.proj = nn.Linear(self.text.hidden_size, cfg.dim)
        self.pool = ChannelAttentionPool(cfg.dim, cfg.dropout)

    def train(self, mode: bool = True) -> HFLanguageEncoder:
        super().train(mode)
        if self.frozen:
            self.text.eval()  # no dropout inside a fixed encoder
        return self

    def forward(self, batch: TokenBatch) -> LanguageOutput:
        mask = batch.attention_mask.bool()
        levels: tuple[torch.Tensor, ...] = ()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.hidden_layers:
                hidden = self.text.bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                        output_hidden_states=True).hidden_states  # (embeddings, layer 1, ...)
                states, levels = hidden[-1], tuple(hidden[i] for i in self.hidden_layers)
            else:
                states = self.text(batch.input_ids, batch.attention_mask)
        tokens = self.proj(states)
        return LanguageOutput(self.pool(tokens, mask), tokens, mask, levels)


class GRULanguageEncoder(nn.Module):
    """Word embedding -> input dropout -> bi-GRU (hidden `dim`, directions summed) -> attention pooling."""

    def __init__(self, cfg: MCNLanguageCfg, vocab_size: int, pad_id: int = 0, with_levels: bool = False) -> None:
        super().__init__()
        self.level_widths = (cfg.word_dim, cfg.dim) if with_levels else ()
        self.embed = nn.Embedding(vocab_size, cfg.word_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.word_dim, cfg.dim, batch_first=True, bidirectional=True)
        self.dim = cfg.dim
        self.pool = ChannelAttentionPool(cfg.dim, cfg.dropout)

    def forward(self, batch: TokenBatch) -> LanguageOutput:
        mask = batch.attention_mask.bool()
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        words = self.dropout(self.embed(batch.input_ids))
        packed = pack_padded_sequence(words, lengths, batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=words.shape[1])
        tokens = states[..., : self.dim] + states[..., self.dim :]  # merge_mode = "sum"
        levels = (words, tokens) if self.level_widths else ()
        return LanguageOutput(self.pool(tokens, mask), tokens, mask, levels)
