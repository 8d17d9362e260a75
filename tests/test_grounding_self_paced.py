"""Self-paced weighting (REFERENCE_EXTRA.md §3.5 tests 1-3) against closed forms and naive loops."""

import math

import numpy as np
import pytest
import torch

from hrem.config.grounding_options import SelfPacedCfg
from hrem.grounding.options.self_paced import SelfPacedWeighting, self_paced_weights

LAM = 0.75


def _module(names=("l1",), **overrides) -> SelfPacedWeighting:
    return SelfPacedWeighting(names, SelfPacedCfg(**overrides))


def _set_sigma(module: SelfPacedWeighting, name: str, sigma: float) -> None:
    with torch.no_grad():
        module.log_sigma[name].fill_(math.log(sigma))


def _equilibrium_sigma(losses, lam: float = LAM) -> float:
    """Root of mean_k exp(-L^2/s^2) L^2 (L - lam) = 0 by bisection (the stationary condition of §3.1)."""
    losses = np.asarray(losses, dtype=np.float64)

    def slope(s):
        return np.mean(np.exp(-(losses**2) / s**2) * losses**2 * (losses - lam))

    low, high = 1e-2, 1e2
    for _ in range(200):
        middle = math.sqrt(low * high)
        low, high = (low, middle) if slope(middle) > 0 else (middle, high)
    return middle


def _naive_total(losses: dict, sigmas: dict, lam: float, mu: float) -> float:
    batch = len(next(iter(losses.values())))
    total = 0.0
    for k in range(batch):
        for name, values in losses.items():
            d = math.exp(-((float(values[k]) - mu) ** 2) / sigmas[name] ** 2)
            total += (d * float(values[k]) - lam * d) / batch
    return total


# ------------------------------------------------------------------------------------ 1. boundedness, sign
def test_weights_are_bounded_and_each_term_is_at_least_minus_lambda_on_a_grid():
    losses = torch.linspace(0, 4, 41, dtype=torch.float64)[:, None]
    sigmas = torch.logspace(-3, 3, 25, dtype=torch.float64)[None, :]
    d = self_paced_weights(losses, sigmas)
    # Mathematically d > 0; tiny sigmas underflow to exactly 0 in float64, so positivity is checked where
    # the exponent is representable.
    assert bool((d >= 0).all()) and bool((d <= 1).all())
    representable = (losses**2 / sigmas**2) < 700
    assert bool((d[representable] > 0).all())
    assert torch.equal(d[0], torch.ones_like(d[0]))  # d(L = mu = 0) = 1 for every sigma
    term = d * (losses - LAM)
    assert bool((term >= -LAM - 1e-12).all())


def test_single_sample_total_through_the_module_is_at_least_minus_lambda():
    module = _module()
    for sigma in (1e-3, 0.1, 1.0, 10.0, 1e3):
        _set_sigma(module, "l1", sigma)
        for loss in (0.0, 0.05, 0.5, 0.74, 0.76, 2.0, 4.0):
            total, _ = module({"l1": torch.tensor([loss])})
            assert total.item() >= -LAM - 1e-6


@pytest.mark.parametrize("loss", [0.1, 0.4, 0.7, 0.8, 1.2, 3.0])
def test_single_sample_sigma_gradient_sign_and_value(loss):
    sigma = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    value = torch.tensor([loss], dtype=torch.float64)
    d = self_paced_weights(value, sigma)
    total = (d * value).mean() - LAM * d.mean()
    (grad,) = torch.autograd.grad(total, sigma)
    # Easy samples (L < lam) push sigma up (negative gradient), hard ones push it down.
    assert (grad.item() < 0) == (loss < LAM)
    expected = 2 / 1.3**3 * math.exp(-(loss**2) / 1.3**2) * loss**2 * (loss - LAM)
    assert grad.item() == pytest.approx(expected, rel=1e-9)


def test_module_log_sigma_gradient_has_the_same_sign():
    module = _module()
    for loss, sign in ((0.3, -1), (1.5, 1)):
        module.zero_grad()
        total, _ = module({"l1": torch.tensor([loss])})
        total.backward()
        assert math.copysign(1, module.log_sigma["l1"].grad.item()) == sign


# ------------------------------------------------------------------------------------------- 2. equilibrium
def test_gradient_descent_on_log_sigma_converges_to_the_stationary_sigma():
    losses = torch.tensor([0.2, 0.3, 1.2, 1.6])
    module = _module(lam=LAM, mu=0.0, sigma_init=2.5)
    optimizer = torch.optim.SGD(module.parameters(), lr=5.0)
    for _ in range(2000):
        optimizer.zero_grad()
        total, _ = module({"l1": losses})
        total.backward()
        optimizer.step()
    sigma = module.sigma("l1").item()
    assert sigma == pytest.approx(0.7170, abs=1e-3)
    assert sigma == pytest.approx(_equilibrium_sigma([0.2, 0.3, 1.2, 1.6]), abs=1e-4)
    weights = self_paced_weights(losses, module.sigma("l1")).tolist()
    assert weights == pytest.approx([0.925, 0.839, 0.061, 0.007], abs=1e-3)


def test_two_loss_types_reach_their_own_equilibria_with_adam():
    losses = {"l1": torch.tensor([0.2, 0.3, 1.2, 1.6]), "giou": torch.tensor([0.1, 0.5, 0.9, 1.8])}
    module = _module(("l1", "giou"))
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(3000):
        optimizer.zero_grad()
        module(losses)[0].backward()
        optimizer.step()
    for name, values in losses.items():
        assert module.sigma(name).item() == pytest.approx(_equilibrium_sigma(values.tolist()), abs=1e-3)


# ------------------------------------------------------------------------------------------------ 3. detach
X = [0.5, 1.0, 2.0, -1.5]
Y = [0.2, 1.5, 0.3, 0.4]


def _toy_losses(theta: torch.Tensor) -> torch.Tensor:
    # One parameter, per-sample losses spanning easy and hard samples.
    x = torch.tensor(X, dtype=torch.float64)
    y = torch.tensor(Y, dtype=torch.float64)
    return (theta * x - y) ** 2


@pytest.mark.parametrize("detach", [True, False])
def test_network_gradient_is_the_pure_reweighting_only_when_detached(detach):
    theta_value, sigma = 0.8, 0.9
    theta = torch.tensor(theta_value, dtype=torch.float64, requires_grad=True)
    module = _module(detach=detach).double()
    _set_sigma(module, "l1", sigma)
    total, _ = module({"l1": _toy_losses(theta)})
    (grad,) = torch.autograd.grad(total, theta)

    values = [(theta_value * x - y) ** 2 for x, y in zip(X, Y)]
    slopes = [2 * x * (theta_value * x - y) for x, y in zip(X, Y)]  # dL_k / dtheta by hand
    d = [math.exp(-(v**2) / sigma**2) for v in values]
    reweighted = sum(dk * g for dk, g in zip(d, slopes)) / len(X)
    # Not detached, the effective weight is d [1 - 2 L (L - lam) / sigma^2] (§3.1).
    coupled = sum(dk * (1 - 2 * v * (v - LAM) / sigma**2) * g for dk, v, g in zip(d, values, slopes)) / len(X)
    assert abs(reweighted - coupled) > 1e-3  # the toy case tells the two apart
    assert grad.item() == pytest.approx(reweighted if detach else coupled, rel=1e-9)


def test_sigma_learns_through_the_weights_when_detached():
    theta = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    module = _module().double()
    total, _ = module({"l1": _toy_losses(theta)})
    total.backward()
    assert module.log_sigma["l1"].grad is not None and module.log_sigma["l1"].grad.item() != 0


# ---------------------------------------------------------------------------------------- module contract
def test_module_total_and_info_match_a_naive_loop():
    torch.manual_seed(0)
    losses = {"l1": torch.rand(5) * 2, "giou": torch.rand(5) * 2}
    module = _module(("l1", "giou"), lam=0.6, mu=0.1)
    _set_sigma(module, "l1", 0.8)
    _set_sigma(module, "giou", 1.7)
    total, info = module(losses)
    assert total.item() == pytest.approx(_naive_total(losses, {"l1": 0.8, "giou": 1.7}, 0.6, 0.1), rel=1e-5)
    assert set(info) == {"sigma_l1", "sigma_giou", "weight_l1", "weight_giou"}
    assert info["sigma_giou"].item() == pytest.approx(1.7, rel=1e-6)
    expected_weight = torch.exp(-((losses["l1"] - 0.1) ** 2) / 0.8**2).mean().item()
    assert info["weight_l1"].item() == pytest.approx(expected_weight, rel=1e-5)
    assert all(not value.requires_grad for value in info.values())
    assert module.sigma("l1").item() == pytest.approx(0.8, rel=1e-6)


def test_sigma_starts_at_sigma_init_and_is_stored_as_log():
    module = _module(("yolo",), sigma_init=2.5)
    assert module.sigma("yolo").item() == pytest.approx(2.5, rel=1e-6)
    assert [name for name, _ in module.named_parameters()] == ["log_sigma.yolo"]


@pytest.mark.parametrize(
    "losses",
    [
        {"l1": torch.rand(3)},  # a name is missing
        {"l1": torch.rand(3), "giou": torch.rand(3), "yolo": torch.rand(3)},  # an extra name
        {"l1": torch.rand(3), "giou": torch.rand(4)},  # lengths differ
        {"l1": torch.rand(3, 1), "giou": torch.rand(3, 1)},  # not per-sample vectors
    ],
)
def test_module_rejects_bad_loss_dicts(losses):
    with pytest.raises(ValueError, match="losses"):
        _module(("l1", "giou"))(losses)


def test_module_rejects_duplicate_names_and_unknown_sigma():
    with pytest.raises(ValueError, match="names"):
        _module(("l1", "l1"))
    with pytest.raises(ValueError, match="name"):
        _module().sigma("giou")
