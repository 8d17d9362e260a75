"""Tokenisation with the tokenizer that ships beside a text backbone (WordPiece for BERT/MiniLM).

Padding id is 0 for BERT vocabularies, which HREM relies on (attention_mask = ids != 0 in the reference);
we pass the tokenizer's own attention mask instead, which is the same thing for BERT and stays correct
for other tokenizers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch


@dataclass(frozen=True)
class TokenBatch:
    input_ids: torch.Tensor       # [B, L] int64, right-padded
    attention_mask: torch.Tensor  # [B, L] int64, 1 for real tokens ([CLS] and [SEP] included)

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(dim=1)

    def to(self, device: torch.device | str) -> "TokenBatch":
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device))


class TextTokenizer:
    """Callable: list of strings -> TokenBatch. `max_length=None` means the backbone's limit (HREM does
    not truncate captions; only the 512 positions of BERT bound them)."""

    def __init__(self, model_dir: str | Path, max_length: int | None = None) -> None:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        self.model_dir = str(model_dir)
        self._tok = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        limit = int(getattr(self._tok, "model_max_length", 512) or 512)
        self.max_length = min(max_length or limit, limit, 512)
        self.vocab_size = len(self._tok)
        self.pad_id = int(self._tok.pad_token_id or 0)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text including special tokens, capped at max_length (for length bucketing)."""
        encoded = self._tok(list(texts), add_special_tokens=True, truncation=True, max_length=self.max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def tokenize_words(self, text: str) -> list[str]:
        """WordPiece tokens of one text without special tokens (used by training-time text augmentation)."""
        return self._tok.tokenize(text)

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        if isinstance(texts, str):
            raise TypeError("TextTokenizer expects a list of strings, got a single string")
        encoded = self._tok(list(texts), padding=True, truncation=True, max_length=self.max_length,
                            return_tensors="pt", return_token_type_ids=False)
        return TokenBatch(encoded["input_ids"].long(), encoded["attention_mask"].long())
