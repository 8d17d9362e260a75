"""Balancing two task losses (REFERENCE_EXTRA.md §2.1): Kendall uncertainty weights or GradNorm.

- `UncertaintyWeights`: learnable log variances s_i (init 0), trained by the main optimizer,
  total = sum_i 0.5 exp(-s_i) L_i + s_i (xtask's form: "+ s", so the optimum for a fixed L is
  s* = log(L / 2)).
- `GradNorm` (Chen et al. 2018): task weights w_i (init 1) trained only by
  L_grad = sum_i |G_i - stopgrad(mean_j G_j r_i^alpha)|, G_i = ||grad_W (w_i L_i)||, r_i = (L_i / L_i(0)) /
  mean_j (L_j / L_j(0)), then renormalised to sum_i w_i = T. Two bugs of the xtask code are avoided: the
  network never receives L_grad's gradient (G_i = w_i ||grad_W L_i|| with the norm taken without a graph,
  so L_grad depends on w only), and L_i(0) is recorded once, at the first training step, and kept (it is
  a buffer, so a resumed run keeps it too). The weights take their own Adam step inside `forward` while
  training; its moments are buffers as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class UncertaintyWeights(nn.Module):
    def __init__(self, tasks: int) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(tasks))

    def forward(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(losses) != self.log_vars.numel():
            raise ValueError(f"uncertainty weights: expected {self.log_vars.numel()} losses, found {len(losses)}")
        s = self.log_vars
        return sum(0.5 * torch.exp(-s[i]) * loss + s[i] for i, loss in enumerate(losses))


class GradNorm(nn.Module):
    def __init__(self, tasks: int, alpha: float = 0.16, lr: float = 1e-4) -> None:
        super().__init__()
        self.alpha, self.lr, self.tasks = alpha, lr, tasks
        self.weights = nn.Parameter(torch.ones(tasks))
        self.register_buffer("initial_losses", torch.full((tasks,), float("nan")))
        self.register_buffer("adam_m", torch.zeros(tasks))
        self.register_buffer("adam_v", torch.zeros(tasks))
        self.register_buffer("adam_t", torch.zeros(()))

    def balancing_loss(self, losses: torch.Tensor, grad_norms: torch.Tensor) -> torch.Tensor:
        """L_grad from the (detached) task losses [T] and ||grad_W L_i|| [T]; differentiable in w only."""
        if torch.isnan(self.initial_losses).any():
            self.initial_losses.copy_(losses.detach())  # L_i(0): taken once, never overwritten
        ratios = losses.detach() / self.initial_losses.clamp_min(1e-12)
        relative = ratios / ratios.mean()
        g = self.weights * grad_norms.detach()
        target = (g.mean() * relative**self.alpha).detach()
        return (g - target).abs().sum()

    @torch.no_grad()
    def _adam_step(self, grad: torch.Tensor) -> None:
        b1, b2 = ADAM_BETAS
        self.adam_t += 1
        self.adam_m.mul_(b1).add_((1 - b1) * grad)
        self.adam_v.mul_(b2).add_((1 - b2) * grad * grad)
        m_hat = self.adam_m / (1 - b1**self.adam_t)
        v_hat = self.adam_v / (1 - b2**self.adam_t)
        self.weights -= self.lr * m_hat / (v_hat.sqrt() + ADAM_EPS)
        self.weights.clamp_(min=1e-4)
        self.weights *= self.tasks / self.weights.sum()  # renormalise: sum w = T

    def update(self, losses: Sequence[torch.Tensor], shared: torch.Tensor) -> torch.Tensor:
        """One GradNorm step on w from the task losses and the last shared layer's weight; returns L_grad."""
        norms = torch.stack([
            torch.autograd.grad(loss, shared, retain_graph=True)[0].norm() for loss in losses
        ])
        with torch.enable_grad():
            l_grad = self.balancing_loss(torch.stack([loss.detach() for loss in losses]), norms)
            (grad,) = torch.autograd.grad(l_grad, [self.weights])
        self._adam_step(grad)
        return l_grad.detach()

    def forward(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        """sum_i w_i L_i with w detached: the network's loss never trains w."""
        if len(losses) != self.tasks:
            raise ValueError(f"GradNorm: expected {self.tasks} losses, found {len(losses)}")
        weights = self.weights.detach().clone()  # a copy: update() changes w in place after this product
        return sum(weights[i] * loss for i, loss in enumerate(losses))
