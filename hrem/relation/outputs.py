"""What the model hands to the training criterion (defined here so the criterion, one layer below the
model, can name it; hrem.model re-exports it)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrainOutputs:
    img_emb: torch.Tensor      # [B, D] image embeddings, L2-normalised
    cap_emb: torch.Tensor      # [B, D] caption embeddings, L2-normalised
    img_tokens: torch.Tensor   # [B, N, D] projected regions / grid cells before the relation layer
    img_mask: torch.Tensor     # [B, N] bool, True = valid
    cap_tokens: torch.Tensor   # [B, L, D] projected word tokens before the relation layer
    cap_mask: torch.Tensor     # [B, L] bool, True = valid
