"""The FC + MLP-BN residual projection of fragment features into the joint space (HREM `lib/mlp.py`).

Parameter names follow the official checkpoints so conversion is a near-identity: `fc.*` is the linear
branch, `mlp.layers.{0,1}.*` the two-layer MLP branch, `mlp.bns.{0,1}.*` its BatchNorms. `bns.1` is
created but never used in forward, exactly as in HREM and VSE-infinity: it is kept only so that official
state dicts load key for key.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Linear -> BN -> ReLU -> ... -> Linear over rows [M, F] (the last BatchNorm is unused, see module doc)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2) -> None:
        super().__init__()
        widths = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip([in_dim] + widths, widths + [out_dim]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(w) for w in widths + [out_dim])

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, (bn, layer) in enumerate(zip(self.bns, self.layers)):
            rows = layer(rows) if i == last else F.relu(bn(layer(rows)))
        return rows


class FCMLP(nn.Module):
    """fragments [B, N, F] -> Linear(F, D)(x) + MLP(F, hidden, D)(x), computed on valid rows only.

    The reference runs BatchNorm over all B*N rows, zero padding included, which biases the batch
    statistics during training whenever regions were dropped. We normalise only the valid rows (the
    correct behaviour); with no padding (evaluation, grid features) both are identical. Padded rows of
    the output are zero.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.mlp = MLP(in_dim, hidden_dim, out_dim, num_layers=2)
        self.out_dim = out_dim
        for module in self.modules():  # xavier-uniform weights, zero bias for every Linear (as HREM)
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, fragments: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if bool(mask.all()):
            rows = fragments.reshape(-1, fragments.shape[-1])
            out = self.fc(rows) + self.mlp(rows)
            return out.view(*fragments.shape[:2], self.out_dim)
        valid = fragments[mask]                                    # [M, F]
        values = self.fc(valid) + self.mlp(valid)                  # dtype may differ under autocast
        out = values.new_zeros(*fragments.shape[:2], self.out_dim)
        out[mask] = values
        return out
