"""Consistency Energy Maximization (K `co_enegy_func`, `cem_loss`): training-only coupling of the branches.

  e_s = softmax over N_s of Conv1x1(F_s),  e_c = softmax over N_c of Conv1x1(F_c)
  T(i, j) = clip((cos(F_s[:, i], F_c[:, j]) + 1) / 2, 1e-6, 1 - 1e-6)
  E = e_s^T T e_c  in (0, 1),   L_cem = -log(E + 1e-6), averaged over the batch (K divides by the batch)
F_s and F_c are the two GARANs' attended maps (RES at stride 8, REC at stride 32); resolutions may differ.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

T_CLIP = 1e-6
LOG_EPS = 1e-6


def consistency_energy(
    res_map: torch.Tensor, rec_map: torch.Tensor, res_logits: torch.Tensor, rec_logits: torch.Tensor
) -> torch.Tensor:
    """E per sample [B] from the attended maps [B, C, *] and their 1-channel energy logits [B, 1, *]."""
    e_s = torch.softmax(res_logits.flatten(1), dim=-1)  # [B, N_s]
    e_c = torch.softmax(rec_logits.flatten(1), dim=-1)  # [B, N_c]
    f_s = F.normalize(res_map.flatten(2), dim=1, eps=1e-6)  # [B, C, N_s]
    f_c = F.normalize(rec_map.flatten(2), dim=1, eps=1e-6)
    affinity = ((torch.einsum("bci,bcj->bij", f_s, f_c) + 1.0) / 2.0).clamp(T_CLIP, 1.0 - T_CLIP)
    return torch.einsum("bi,bij,bj->b", e_s, affinity, e_c)


def cem_loss(energy: torch.Tensor) -> torch.Tensor:
    """-log(E + 1e-6), mean over the batch."""
    return -torch.log(energy + LOG_EPS).mean()


class ConsistencyEnergy(nn.Module):
    """The two learned 1x1 -> 1 channel projections of K's CEM, applied to (F_s, F_c)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res_proj = nn.Conv2d(channels, 1, 1)
        self.rec_proj = nn.Conv2d(channels, 1, 1)

    def forward(self, res_map: torch.Tensor, rec_map: torch.Tensor) -> torch.Tensor:
        return consistency_energy(res_map, rec_map, self.res_proj(res_map), self.rec_proj(rec_map))
