"""From projected fragments to one embedding: the pooling recipes selected by `HeadCard.pooling`.

- "hrem": r * maxk(tokens) + (1 - r) * masked_mean(relation(tokens))   (REFERENCE_HREM.md §1.1)
- "mean": masked_mean(relation(tokens))   (the ablation baseline when fragment_relation is false)
- "gpo":  GPO(relation(tokens))           (VSE-infinity)

`relation` is the fragment-level Transformer (`aggr`) when the card enables it, else the identity. It is
built by the model layer (hrem.relation.fragment) and handed to the encoders, which keep it as `aggr` so
the state-dict keys match the official checkpoints.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from hrem.config.model import HeadCard
from hrem.encoders.pooling import GPO, hrem_pool_unpadded, masked_mean, maxk_pool


class EncoderOutput(NamedTuple):
    embedding: torch.Tensor   # [B, D] pooled, not normalised
    tokens: torch.Tensor      # [B, N, D] projected fragments before the relation layer ("pre-pool")
    mask: torch.Tensor        # [B, N] bool, True = valid


def make_gpool(head: HeadCard) -> GPO | None:
    return GPO(head.gpo_pe_dim, head.gpo_hidden) if head.pooling == "gpo" else None


def pool_fragments(tokens: torch.Tensor, mask: torch.Tensor, head: HeadCard,
                   aggr: nn.Module | None, gpool: nn.Module | None) -> torch.Tensor:
    """[B, N, D] tokens + [B, N] mask -> [B, D] (not normalised)."""
    related = aggr(tokens, mask) if aggr is not None else tokens
    if head.pooling == "hrem":
        r = head.residual_weight
        if not (tokens.requires_grad or related.requires_grad) and bool(mask.all()):
            return hrem_pool_unpadded(tokens, related, r, head.maxk)
        return r * maxk_pool(tokens, mask, head.maxk) + (1.0 - r) * masked_mean(related, mask)
    if head.pooling == "mean":
        return masked_mean(related, mask)
    if gpool is None:
        raise ValueError("head.pooling is 'gpo' but the encoder has no GPO module")
    return gpool(related, mask)
