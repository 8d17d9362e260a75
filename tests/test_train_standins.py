"""Small stand-ins for the loop tests: a bag-of-words / mean-region model, a contrastive criterion and an
in-memory precomp split with a learnable signal. They exercise hrem.train without the real HREM model,
so a loop bug is not hidden behind (or confused with) a model bug. No tests live here."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from hrem.data.datasets import RetrievalSplit

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
SHAPES = ["circle", "square", "star", "triangle"]


class BagModel(nn.Module):
    """Mean of regions -> Linear; mean of word embeddings -> Linear. `txt_enc.bert` is the 'backbone'."""

    def __init__(self, feature_dim: int = 12, dim: int = 16, vocab: int = 30522) -> None:
        super().__init__()
        self.img_enc = nn.Linear(feature_dim, dim)
        self.txt_enc = nn.Module()
        self.txt_enc.bert = nn.Embedding(vocab, dim)
        self.txt_enc.linear = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(0.0)

    def encode_image(self, batch, normalize: bool = True) -> torch.Tensor:
        mask = (torch.arange(batch.regions.shape[1])[None, :] < batch.lengths[:, None]).float()
        pooled = (batch.regions * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        emb = self.img_enc(pooled)
        return nn.functional.normalize(emb, dim=-1) if normalize else emb

    def encode_text(self, tokens, normalize: bool = True) -> torch.Tensor:
        mask = tokens.attention_mask.float()
        words = self.txt_enc.bert(tokens.input_ids) * mask[..., None]
        emb = self.txt_enc.linear(words.sum(1) / mask.sum(1, keepdim=True))
        return nn.functional.normalize(emb, dim=-1) if normalize else emb

    def forward_train(self, images, texts, image_index=None):
        if image_index is not None:
            raise NotImplementedError("the stand-in model takes caption-sampled batches only")
        return SimpleNamespace(img_emb=self.encode_image(images), cap_emb=self.encode_text(texts))


class ContrastiveCriterion(nn.Module):
    """Multi-positive InfoNCE with a learnable temperature (so the criterion has a parameter group)."""

    def __init__(self, nan_at: set[int] | None = None) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(2.0))
        self.nan_at = nan_at or set()
        self.iterations_seen: list[int] = []

    def forward(self, out, image_ids: torch.Tensor, iteration: int) -> dict[str, torch.Tensor]:
        self.iterations_seen.append(iteration)
        logits = self.log_scale.exp() * out.img_emb @ out.cap_emb.T
        positive = image_ids[:, None] == image_ids[None, :]
        pos = torch.logsumexp(logits.masked_fill(~positive, -1e9), dim=1)
        loss = (torch.logsumexp(logits, dim=1) - pos).mean() + (torch.logsumexp(logits.T, 1) - pos).mean()
        if iteration in self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "base": loss.detach()}


def synthetic_precomp_split(n_images: int = 60, regions: int = 5, feature_dim: int = 12, seed: int = 0,
                            split: str = "train") -> RetrievalSplit:
    """Each image has a colour and a shape; its regions carry both as directions, its captions name them."""
    rng = np.random.default_rng(seed)
    colour_dirs = rng.normal(size=(len(COLOURS), feature_dim))
    shape_dirs = rng.normal(size=(len(SHAPES), feature_dim))
    colours = rng.integers(len(COLOURS), size=n_images)
    shapes = rng.integers(len(SHAPES), size=n_images)
    feats = rng.normal(scale=0.3, size=(n_images, regions, feature_dim))
    feats += colour_dirs[colours][:, None, :] + shape_dirs[shapes][:, None, :]
    templates = ["a {c} {s}", "the {s} is {c}", "one {c} {s} in a picture", "a picture of a {c} {s}",
                 "there is a {s} coloured {c}"]
    captions = [t.format(c=COLOURS[c], s=SHAPES[s]) for c, s in zip(colours, shapes) for t in templates]
    return RetrievalSplit("precomp", split, "synthetic", __import__("pathlib").Path("/synthetic"), captions,
                          np.repeat(np.arange(n_images), 5).astype(np.int64), np.arange(n_images, dtype=np.int64),
                          features=feats.astype(np.float32))
