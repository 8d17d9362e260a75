"""Training-time augmentation of HREM (REFERENCE_HREM.md §3): caption word noise and region drop.

Text: every word (a WordPiece word = a piece plus its `##` continuations) is altered with probability p
(0.2 in the paper). An altered word is masked (50%: every sub-token becomes [MASK]), replaced (10%: every
sub-token becomes a random vocabulary token) or deleted (40%). Images given as region features lose each
region with probability p (0.2); the batch is then zero-padded with per-item lengths.

Randomness comes from torch's global generator, which DataLoader seeds differently in every worker
(numpy's global state would be the same forked copy in every worker and repeat the same noise).

Deviations from the reference, on purpose:
- random replacement draws from the real vocabulary only (no [PAD]/[CLS]/[SEP]/[MASK]/[UNK]/[unusedN]);
  the reference draws from every vocabulary entry;
- a caption whose words are all deleted keeps its original words, and an image keeps at least one
  region (the reference could produce an empty caption or an empty region set).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from hrem.data.tokenize import TextTokenizer, TokenBatch

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")
MASK_SHARE = 0.5      # of the altered words: masked
REPLACE_SHARE = 0.1   # of the altered words: replaced by random tokens; the remaining 0.4 are deleted


def read_wordpiece_vocab(model_dir: str | Path) -> dict[str, int]:
    """token -> id from the `vocab.txt` beside a BERT-style tokenizer."""
    path = Path(model_dir) / "vocab.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: caption augmentation needs a WordPiece vocab.txt beside the "
                                f"tokenizer, found none (set the card's text augmentation to 0 to train without it)")
    tokens = path.read_text(encoding="utf-8").splitlines()
    return {token: index for index, token in enumerate(tokens)}


def group_words(pieces: Sequence[str]) -> list[list[str]]:
    """WordPiece tokens -> words: a piece starting with '##' continues the previous word."""
    words: list[list[str]] = []
    for piece in pieces:
        if piece.startswith("##") and words:
            words[-1].append(piece)
        else:
            words.append([piece])
    return words


class CaptionAugmenter:
    """Callable: captions -> TokenBatch with word-level noise, tokenised exactly as `tokenizer` would."""

    def __init__(self, tokenizer: TextTokenizer, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"caption augmentation probability: expected a value in [0, 1], found {p}")
        self.tokenizer = tokenizer
        self.p = p
        self.vocab = read_wordpiece_vocab(tokenizer.model_dir)
        for token in SPECIAL_TOKENS:
            if token not in self.vocab:
                raise ValueError(f"{tokenizer.model_dir}/vocab.txt: expected special token {token}, found none")
        self.random_ids = torch.tensor([i for t, i in self.vocab.items()
                                        if t not in SPECIAL_TOKENS and not t.startswith("[unused")])
        self.unk_id = self.vocab["[UNK]"]

    def augment_ids(self, text: str) -> list[int]:
        """Sub-token ids of one caption after word noise, without [CLS]/[SEP]."""
        words = group_words(self.tokenizer.tokenize_words(text))
        kept: list[int] = []
        for word in words:
            ids = [self.vocab.get(piece, self.unk_id) for piece in word]
            draw = float(torch.rand(()))
            if draw >= self.p:
                kept.extend(ids)
                continue
            choice = draw / self.p
            if choice < MASK_SHARE:
                kept.extend([self.vocab["[MASK]"]] * len(ids))
            elif choice < MASK_SHARE + REPLACE_SHARE:
                picks = torch.randint(len(self.random_ids), (len(ids),))
                kept.extend(self.random_ids[picks].tolist())
            # else: the word is deleted
        if not kept:  # every word deleted: an empty caption teaches nothing, keep the original
            kept = [self.vocab.get(piece, self.unk_id) for word in words for piece in word]
        return kept

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        limit = self.tokenizer.max_length - 2
        rows = [[self.vocab["[CLS]"], *self.augment_ids(t)[:limit], self.vocab["[SEP]"]] for t in texts]
        return pad_token_rows(rows, self.vocab["[PAD]"])


def pad_token_rows(rows: Sequence[Sequence[int]], pad_id: int) -> TokenBatch:
    """Right-pad id lists into a TokenBatch (attention 1 on real tokens)."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention[i, : len(row)] = 1
    return TokenBatch(input_ids, attention)


def drop_regions(regions: torch.Tensor, p: float) -> torch.Tensor:
    """Keep each row of [R, F] region features with probability 1 - p (at least one row survives)."""
    if p <= 0.0 or regions.shape[0] <= 1:
        return regions
    keep = torch.rand(regions.shape[0]) >= p
    if not bool(keep.any()):
        keep[int(torch.randint(regions.shape[0], ()))] = True
    return regions[keep]
