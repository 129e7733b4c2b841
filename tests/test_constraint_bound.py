"""A known lower bound beside the conservation law (physml.constraints.bound): the Gaussian a bound clamps, then
the one shared update.

Guarantees checked: the conditioned mean (most_probable_on_bound) is the most probable u of N(μ, diag v) on {gᵀu = b, u ≥ ℓ} (its KKT
conditions hold to round-off, and SciPy's SLSQP finds the same point), with gᵀu = b to round-off and u ≥ ℓ; a
bound no point reaches changes nothing (ProbConserv's update itself); the points held at the bound get no
variance; batches broadcast; a mass below ℓ Σ g and a negative quadrature weight are refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from physml.constraints import clamp_to_bound, most_probable_on_bound, probconserv


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
    u = most_probable_on_bound(mean, var, G, b, lower)  # clamp_to_bound, then probconserv on the rest
    _, clamped_var = clamp_to_bound(mean, var, G, b, lower)
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
    with pytest.raises(ValueError, match=r"mass b is below the least mass a u ≥ ℓ can have \(ℓ = 0.5\)"):
        clamp_to_bound(mean, var, g, torch.tensor([[0.4]], dtype=torch.float64), 0.5)
    # a point that cannot move (v = 0) keeps its mass: 5 there leaves at least 5 g = 5 for the slice
    with pytest.raises(ValueError, match=r"b = 2, least 5"):
        clamp_to_bound(torch.tensor([[5.0, 1.0, 1.0]]), torch.tensor([[0.0, 1.0, 1.0]]), torch.ones(1, 1, 3),
                       torch.tensor([[2.0]]))
    with pytest.raises(ValueError, match="G must be non-negative"):
        clamp_to_bound(mean, var, -g, torch.tensor([[0.4]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"G must be \(..., 1, n\)"):
        clamp_to_bound(mean, var, g.expand(1, 2, 4), torch.tensor([[0.4, 0.4]], dtype=torch.float64))


def _brute_force(mean: np.ndarray, var: np.ndarray, g: np.ndarray, b: float, lower: float) -> np.ndarray:
    """The MAP on {gᵀu = b, u ≥ ℓ} by trying every held set H: hold H at ℓ, solve the free points' λ from the mass,
    keep the H whose u satisfies the KKT conditions (free points ≥ ℓ, held points' unconstrained value ≤ ℓ). A point
    that cannot move (v g = 0) is max(μ, ℓ), as :func:`clamp_to_bound` takes it."""
    n = mean.size
    fixed = var * g == 0
    for mask in range(1 << n):
        held = np.array([(mask >> j) & 1 == 1 for j in range(n)])
        if np.any(held & fixed & (mean > lower)) or np.any(~held & fixed & (mean < lower)):
            continue  # a point that cannot move stays where it is, or at ℓ if it is below
        free = ~held & ~fixed
        a = np.sum(g[free] ** 2 * var[free])
        rest = np.sum(g[held] * lower) + np.sum(g[fixed & ~held] * mean[fixed & ~held])
        if a == 0:
            continue
        lam = (np.sum(g[free] * mean[free]) + rest - b) / a
        u = np.where(held, lower, mean - lam * var * g * ~fixed)
        if np.all(u[free] >= lower - 1e-12) and np.all(mean[held & ~fixed] - lam * var[held & ~fixed] * g[held & ~fixed]
                                                       <= lower + 1e-12):
            return u
    raise AssertionError("no held set satisfies the KKT conditions")


@pytest.mark.parametrize("case", ["ties", "fixed_points", "at_the_bound", "all_at_the_bound", "no_clamping",
                                  "zero_weight", "random"])
def test_hard_slices_match_a_brute_force_search_of_the_held_set(case: str) -> None:
    """Ties between breakpoints, points that cannot move (v = 0) or do not count (g = 0), μ exactly at ℓ, a mass
    that holds every point at ℓ, one so large nothing is held, and random slices: the update of the clamped
    Gaussian is the brute-force MAP, with the mass exact and nothing below ℓ."""
    rng = np.random.default_rng(7)
    slices = {
        "ties": (np.array([0.4, 0.4, 0.4, -0.2, 0.8]), np.full(5, 0.5), np.full(5, 0.2), 0.1),
        "fixed_points": (np.array([0.9, 0.5, -0.3, 0.2, 0.6]), np.array([0.0, 0.3, 0.2, 0.0, 0.4]), np.full(5, 0.25), 0.3),
        "at_the_bound": (np.array([0.0, 0.5, -0.1, 0.0, 0.3]), np.full(5, 0.3), np.full(5, 0.25), 0.1),
        "all_at_the_bound": (np.array([0.3, 0.5, 0.1]), np.full(3, 0.3), np.full(3, 0.5), 0.0),
        "no_clamping": (np.array([2.0, 3.0, 2.5]), np.full(3, 0.3), np.full(3, 0.5), 4.0),
        "zero_weight": (np.array([0.4, -0.6, 0.3, 0.7]), np.full(4, 0.5), np.array([0.3, 0.0, 0.3, 0.3]), 0.2),
    }
    cases = [slices[case]] if case != "random" else [
        (rng.normal(0.2, 0.5, 6), rng.uniform(0.05, 1, 6) * (rng.random(6) > 0.2), rng.uniform(0.05, 0.3, 6),
         float(rng.uniform(0.2, 0.6))) for _ in range(40)]
    for mean, var, g, b in cases:
        mean_t, var_t = torch.tensor(mean), torch.tensor(var)
        G, B = torch.tensor(g)[None], torch.tensor([b], dtype=torch.float64)
        try:
            expected = _brute_force(mean, var, g, b, 0.0)
        except AssertionError:
            with pytest.raises(ValueError, match="least mass"):
                clamp_to_bound(mean_t, var_t, G, B)
            continue
        held_mean, held_var = clamp_to_bound(mean_t, var_t, G, B)
        if bool((held_var * G[0] > 0).any()):
            u, _ = probconserv(held_mean, held_var, G, B)
        else:  # nothing can move: the clamped mean is the answer (its mass is b when b was reachable)
            u = held_mean
        np.testing.assert_allclose(u.numpy(), expected, rtol=0, atol=1e-12)
        assert abs(float(g @ u.numpy()) - b) < 1e-12 and float(u.min()) >= -1e-12


def test_a_slice_where_no_point_can_move_keeps_what_is_above_the_bound() -> None:
    """v g = 0 everywhere (here g = 0): no segment to solve on; the points above ℓ stay, the rest are held."""
    held_mean, held_var = clamp_to_bound(torch.tensor([1.0, 2.0, -1.0]), torch.ones(3), torch.zeros(1, 3),
                                         torch.zeros(1))
    assert held_mean.tolist() == [1.0, 2.0, 0.0] and held_var.tolist() == [1.0, 1.0, 0.0]
