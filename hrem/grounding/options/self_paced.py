"""Trainable Gaussian self-paced sample weighting (Miao et al., arXiv 2204.09957); REFERENCE_EXTRA §3.1, §3.4.

    d_k = exp(-(L_k - mu)^2 / sigma^2)            in (0, 1], 1 at L = mu
    L_total = mean_k sum_type d_k L_k - lam mean_k sum_type d_k

The blog prints exp(+...), which is unbounded below (sigma -> 0 sends every easy sample's term to -inf); the
Gaussian reading keeps each term >= -lam and gives sigma a stable interior optimum where
mean_k d_k L_k^2 (L_k - lam) = 0. Samples with L < lam pull sigma up, harder ones push it down.

Note the tension with the paper's prose ("enhance hard samples"): this form is easy-first and only admits
hard samples as sigma grows; with sigma_init 2.5 and a tiny sigma lr the weights stay in about [0.5, 1], so
the effect is mild. Do not "fix" it with exp(+u).

The weights come from *detached* losses by default, so the network gets the pure re-weighting d dL/dtheta
and sigma learns only through d. The parameters are `log_sigma.<name>`; the trainer should give them their
own group (lr = sigma_lr, no weight decay).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from hrem.config.grounding_options import SelfPacedCfg


def self_paced_weights(losses: Tensor, sigma: Tensor, mu: float = 0.0, detach: bool = True) -> Tensor:
    """d = exp(-(L - mu)^2 / sigma^2), elementwise over `losses`; L is detached when `detach`."""
    value = losses.detach() if detach else losses
    return torch.exp(-((value - mu) ** 2) / sigma**2)


class SelfPacedWeighting(nn.Module):
    """One learnable sigma per loss type (stored as log sigma, so sigma > 0); forward gives the total."""

    def __init__(self, names: Sequence[str], cfg: SelfPacedCfg) -> None:
        super().__init__()
        cfg.validate()
        if not names or len(set(names)) != len(names):
            raise ValueError(f"names: expected distinct loss names, found {tuple(names)}")
        self.names = tuple(names)
        self.lam = cfg.lam
        self.mu = cfg.mu
        self.detach = cfg.detach
        self.log_sigma = nn.ParameterDict(
            {name: nn.Parameter(torch.tensor(math.log(cfg.sigma_init))) for name in self.names}
        )

    def sigma(self, name: str) -> Tensor:
        if name not in self.log_sigma:
            raise ValueError(f"name: expected one of {self.names}, found {name!r}")
        return self.log_sigma[name].exp()

    def _check(self, losses: Mapping[str, Tensor]) -> None:
        if set(losses) != set(self.names):
            raise ValueError(f"losses: expected keys {sorted(self.names)}, found {sorted(losses)}")
        shapes = {name: tuple(value.shape) for name, value in losses.items()}
        first = shapes[self.names[0]]
        if len(first) != 1 or any(shape != first for shape in shapes.values()):
            raise ValueError(f"losses: expected per-sample vectors [B] of one length, found {shapes}")

    def forward(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """losses: name -> per-sample [B] -> (total, {"sigma_<name>", "weight_<name>" (mean d)}, detached)."""
        self._check(losses)
        total = losses[self.names[0]].new_zeros(())
        info: dict[str, Tensor] = {}
        for name in self.names:
            sigma = self.sigma(name)
            weights = self_paced_weights(losses[name], sigma, self.mu, self.detach)
            # Means over samples of each type add up to mean_k sum_type (d L - lam d).
            total = total + (weights * losses[name]).mean() - self.lam * weights.mean()
            info[f"sigma_{name}"] = sigma.detach()
            info[f"weight_{name}"] = weights.detach().mean()
        return total, info


__all__ = ["SelfPacedWeighting", "self_paced_weights"]
