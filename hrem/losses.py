"""Matching losses on L2-normalised embeddings (REFERENCE_HREM.md §2, `lib/loss.py`).

Both take (img [B, D], cap [B, D], image_ids [B]); row i of img and of cap belong to training item i and
the positives are all pairs that share an image id (an image can appear with several of its captions in
one batch). Similarity is the dot product; the device comes from the inputs.

- `TripletLoss` (HREM's default "trip"): distance-weighted negative sampling (Wu et al. 2017), one
  negative per (anchor, positive) pair, margin 0.2, summed over pairs and both directions.
- `ContrastiveLoss` ("vse"): the VSE++ hinge, summed over negatives or only the hardest (max_violation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrem.config.model import LossCard


def positive_mask(image_ids: torch.Tensor) -> torch.Tensor:
    """[B, B] bool: True where row and column items show the same image."""
    return image_ids[:, None] == image_ids[None, :]


class TripletLoss(nn.Module):
    def __init__(self, margin: float = 0.2, cutoff: float = 1.7, sampling_dim: int = 512,
                 min_distance: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.margin, self.cutoff, self.n, self.min_distance = margin, cutoff, sampling_dim, min_distance
        self.generator = generator  # None: the global RNG (torch.manual_seed)

    def forward(self, img: torch.Tensor, cap: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        sim = img @ cap.t()                                          # [B, B], rows = images
        positives = positive_mask(image_ids.to(sim.device))
        return self.one_direction(sim, positives) + self.one_direction(sim.t(), positives.t())

    def sampling_weights(self, sim: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """[B, B] probabilities of drawing each column as the negative of a row's anchor.

        The density q(d) ∝ d^(n-2) (1 - d^2/4)^((n-3)/2) of distances between random points on the unit
        sphere is inverted: log w = (2 - n) log d - ((n - 3)/2) log(1 - d^2/4), d = sqrt(2 - 2s) clamped
        to >= min_distance. Positives and d >= cutoff get weight 0. Unlike the reference, the row max is
        taken over the candidates only (so a far-away row does not underflow to all zeros) and a row
        without candidates is all zero (its pairs are skipped, instead of failing the whole direction).
        """
        with torch.no_grad():
            dist = (2.0 - 2.0 * sim.float()).clamp(min=0.0).sqrt().clamp(min=self.min_distance)
            log_w = (2.0 - self.n) * dist.log() - ((self.n - 3.0) / 2.0) * torch.log1p(-0.25 * dist * dist)
            candidate = ~positives & (dist < self.cutoff) & torch.isfinite(log_w)
            log_w = log_w.masked_fill(~candidate, float("-inf"))
            weights = torch.softmax(log_w, dim=1)
            return torch.nan_to_num(weights, nan=0.0)                # rows with no candidate -> zeros

    def one_direction(self, sim: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        anchor, pos = positives.nonzero(as_tuple=True)
        weights = self.sampling_weights(sim, positives)[anchor]      # one row per (anchor, positive) pair
        usable = weights.sum(dim=1) > 0
        if not bool(usable.any()):
            return sim.sum() * 0.0                                   # keeps the graph; no negative exists
        anchor, pos, weights = anchor[usable], pos[usable], weights[usable]
        neg = torch.multinomial(weights, 1, generator=self.generator).squeeze(1)
        return F.relu(self.margin + sim[anchor, neg] - sim[anchor, pos]).sum()


class ContrastiveLoss(nn.Module):
    def __init__(self, margin: float = 0.2, max_violation: bool = True) -> None:
        super().__init__()
        self.margin = margin
        self.max_violation = max_violation  # the trainer may switch it on after a warm-up epoch

    def forward(self, img: torch.Tensor, cap: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        scores = img @ cap.t()                                       # [B, B], rows = images
        diagonal = scores.diagonal()
        cost_cap = (self.margin + scores - diagonal[:, None]).clamp(min=0)   # image anchor vs other captions
        cost_img = (self.margin + scores - diagonal[None, :]).clamp(min=0)   # caption anchor vs other images
        positives = positive_mask(image_ids.to(scores.device))
        cost_cap = cost_cap.masked_fill(positives, 0.0)
        cost_img = cost_img.masked_fill(positives, 0.0)
        if self.max_violation:
            return cost_cap.max(dim=1).values.sum() + cost_img.max(dim=0).values.sum()
        return cost_cap.sum() + cost_img.sum()


def build_loss(kind: str, card: LossCard, generator: torch.Generator | None = None) -> nn.Module:
    """'trip' | 'vse' -> the loss module configured by the card."""
    if kind == "trip":
        return TripletLoss(card.margin, card.cutoff, card.sampling_dim, card.min_distance, generator)
    if kind == "vse":
        return ContrastiveLoss(card.margin, card.max_violation)
    raise ValueError(f"loss: expected 'trip' or 'vse', found {kind!r}")
