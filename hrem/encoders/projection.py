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

    def project_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """[M, F] -> [M, D]: fc(rows) + mlp(rows), folded in eval-mode inference (no autograd or autocast)."""
        if self.training or torch.is_grad_enabled() or torch.is_autocast_enabled(rows.device.type):
            return self.fc(rows) + self.mlp(rows)
        return folded_fc_mlp(self, rows)

    def forward(self, fragments: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if bool(mask.all()):
            rows = fragments.reshape(-1, fragments.shape[-1])
            return self.project_rows(rows).view(*fragments.shape[:2], self.out_dim)
        valid = fragments[mask]                                    # [M, F]
        values = self.project_rows(valid)                          # dtype may differ under autocast
        out = values.new_zeros(*fragments.shape[:2], self.out_dim)
        out[mask] = values
        return out


def fold_batchnorm(linear: nn.Linear, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of `bn(linear(x))` with BatchNorm's running statistics (eval mode) as one Linear.

    Eval-mode BatchNorm is the affine map x * s + (beta - mean * s) with s = gamma / sqrt(var + eps), so it
    moves into the Linear before it. Computed in float32 on every call (scaling a [hidden, F] weight: 0.4 ms
    for 512 x 2048 on one thread), so there is no cache to invalidate after load_state_dict or training.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batchnorm: the BatchNorm has no running statistics "
                         "(expected track_running_stats=True, found False)")
    scale = bn.running_var.float().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.float()
    shift = -bn.running_mean.float() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.float()
    bias = shift if linear.bias is None else linear.bias.float() * scale + shift
    weight = linear.weight.float() * scale[:, None]
    return weight.to(linear.weight.dtype), bias.to(linear.weight.dtype)


def folded_fc_mlp(head: FCMLP, rows: torch.Tensor) -> torch.Tensor:
    """Inference-only equal of `head.fc(rows) + head.mlp(rows)` for eval mode (running BatchNorm statistics).

    Why: besides its three GEMMs the plain path makes a [M, hidden] BatchNorm pass, a separate ReLU output
    and the [M, D] sum of the two branches. Here BatchNorm is folded into the MLP's first Linear, ReLU runs
    in place, and the second Linear accumulates straight into the fc output (whose bias also carries the
    second Linear's bias): 221 -> 212 ms for the 4608 x 2048 rows of a hrem-f30k batch of 128 (one thread).
    Only for model.eval() without autograd or autocast, with the module's two-layer MLP.
    """
    if len(head.mlp.layers) != 2:
        raise ValueError(f"folded_fc_mlp: expected a two-layer MLP, found {len(head.mlp.layers)} layers")
    first, second = head.mlp.layers
    weight, bias = fold_batchnorm(first, head.mlp.bns[0])
    hidden = torch.addmm(bias, rows, weight.t()).relu_()                        # [M, hidden]
    out = torch.addmm(head.fc.bias + second.bias, rows, head.fc.weight.t())     # [M, D]
    return out.addmm_(hidden, second.weight.t())
