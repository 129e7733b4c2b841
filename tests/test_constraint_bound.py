"""A known lower bound beside the conservation law (physml.constraints.bound): the Gaussian a bound clamps, then
the one shared update.

Guarantees checked: the conditioned mean is the most probable u of N(μ, diag v) on {gᵀu = b, u ≥ ℓ} (its KKT
conditions hold to round-off, and SciPy's SLSQP finds the same point), with gᵀu = b to round-off and u ≥ ℓ; a
bound no point reaches changes nothing (ProbConserv's update itself); the points held at the bound get no
variance; batches broadcast; a mass below ℓ Σ g and a negative quadrature weight are refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from physml.constraints import clamp_to_bound, probconserv


def _random_slices(rng: np.random.Generator, batch: tuple[int, ...], n: int):
    """μ (mostly above 0, some below), v > 0, g > 0 (quadrature-like), b > 0 small enough to push points to 0."""
    mean = rng.normal(0.3, 0.6, batch + (n,))
    var = rng.uniform(0.01, 1.0, batch + (n,))
    g = rng.uniform(0.05, 0.3, batch + (n,))
    b = rng.uniform(0.01, 0.3, batch + (1,))
    return (torch.tensor(a, dtype=torch.float64) for a in (mean, var, g[..., None, :], b))


@pytest.mark.parametrize("lower", [0.0, -0.2])
def test_the_conditioned_mean_is_the_most_probable_point_of_the_feasible_set(lower: float) -> None:
    """KKT of min Σ (u − μ)²/v s.t. gᵀu = b, u ≥ ℓ: u_j = max(ℓ, μ_j − λ v_j g_j) with one λ per slice; and SLSQP on
    the same problem lands on it (to its tolerance)."""
    rng = np.random.default_rng(0)
    mean, var, G, b = _random_slices(rng, (40,), 9)
    clamped_mean, clamped_var = clamp_to_bound(mean, var, G, b, lower)
    u, _ = probconserv(clamped_mean, clamped_var, G, b)
    g = G[:, 0]
    np.testing.assert_allclose((g * u).sum(-1), b[:, 0], rtol=0, atol=1e-14)
    assert float(u.min()) >= lower - 1e-14
    free = clamped_var > 0
    assert bool((~free).any(dim=-1).sum() >= 20)  # the bound binds on most slices: the test is about it
    lam = ((mean - u) / (var * g)).where(free, torch.nan).nanmean(-1, keepdim=True)  # one λ per slice
    np.testing.assert_allclose(u, torch.clamp(mean - lam * var * g, min=lower), rtol=0, atol=1e-12)
    for i in range(5):
        mu, v, gi, bi = mean[i].numpy(), var[i].numpy(), g[i].numpy(), float(b[i, 0])
        res = minimize(lambda x: ((x - mu) ** 2 / v).sum(), np.full(9, max(lower, 0) + 0.01),
                       jac=lambda x: 2 * (x - mu) / v, bounds=[(lower, None)] * 9, method="SLSQP",
                       constraints=[{"type": "eq", "fun": lambda x: gi @ x - bi, "jac": lambda x: gi}],
                       options={"ftol": 1e-15, "maxiter": 1000})
        np.testing.assert_allclose(u[i].numpy(), res.x, rtol=0, atol=1e-6)


def test_a_bound_no_point_reaches_is_probconserv_itself() -> None:
    rng = np.random.default_rng(1)
    mean, var, G, b = _random_slices(rng, (3, 4), 7)
    mean = mean.abs() + 1.0  # every point far above 0, and a mass 1 % below the mean's: a small move, none to 0
    b = (G[..., 0, :] * mean).sum(-1, keepdim=True) * 0.99
    clamped_mean, clamped_var = clamp_to_bound(mean, var, G, b, 0.0)
    assert torch.equal(clamped_mean, mean) and torch.equal(clamped_var, var)


def test_points_at_the_bound_get_no_variance_and_batches_broadcast() -> None:
    """S components against one (G, b) per function and slice, as the per-component update calls it: the same as
    one slice at a time; the clamped points' posterior variance is 0 and they sit at ℓ."""
    rng = np.random.default_rng(2)
    mean, var, _, _ = _random_slices(rng, (4, 3, 2), 8)  # S, B, nt
    _, _, G, b = _random_slices(rng, (3, 2), 8)
    clamped_mean, clamped_var = clamp_to_bound(mean, var, G, b, 0.0)
    for s in range(4):
        for i in range(3):
            m, v = clamp_to_bound(mean[s, i], var[s, i], G[i], b[i], 0.0)
            assert torch.equal(m, clamped_mean[s, i]) and torch.equal(v, clamped_var[s, i])
    u, var_post = probconserv(clamped_mean, clamped_var, G, b)
    held = clamped_var == 0
    assert bool(held.any()) and torch.all(u[held] == 0) and torch.all(var_post[held] == 0)


def test_an_unreachable_mass_and_a_negative_weight_are_refused() -> None:
    mean, var = torch.ones(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.float64)
    g = torch.full((1, 1, 4), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"mass b is below ℓ Σ g \(ℓ = 0.5\)"):
        clamp_to_bound(mean, var, g, torch.tensor([[0.4]], dtype=torch.float64), 0.5)
    with pytest.raises(ValueError, match="G must be non-negative"):
        clamp_to_bound(mean, var, -g, torch.tensor([[0.4]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"G must be \(..., 1, n\)"):
        clamp_to_bound(mean, var, g.expand(1, 2, 4), torch.tensor([[0.4, 0.4]], dtype=torch.float64))
