"""Metrics on known answers: exact samples are calibrated, exact solutions conserve mass under the
builder's weights, the Stefan front is found at 2 z₁ √t, and posterior samples satisfy the constraint."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from physml.constraints import conservation_constraint, probconserv, value_constraint
from physml.metrics import (
    bound_violation,
    boundary_error,
    conservation_error,
    gaussian_crps,
    gaussian_log_likelihood,
    interval_coverage,
    mse,
    relative_l2,
    shock_position_posterior,
    shock_positions,
)
from physml.models.predictive import sample_gaussian


def test_mse_and_relative_l2_known_answers():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(4, 3, 50))
    assert mse(true + 0.5, true) == pytest.approx(0.25, rel=1e-14)
    assert relative_l2(1.1 * true, true) == pytest.approx(0.1, rel=1e-12)
    per = relative_l2(true * np.array([1.0, 1.2, 0.7])[None, :, None], true, reduce="none")
    np.testing.assert_allclose(per, np.tile([0.0, 0.2, 0.3], (4, 1)), atol=1e-14)
    assert relative_l2(true * 1.5, true, space_axes=2) == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="identically zero"):
        relative_l2(true, np.zeros_like(true))
    with pytest.raises(ValueError, match="shapes must match"):
        mse(true, true[0])
    with pytest.raises(ValueError, match="pred contains NaN"):
        mse(np.full(3, np.nan), np.zeros(3))


def test_coverage_and_log_likelihood_of_exact_samples_are_nominal():
    rng = np.random.default_rng(1)
    n = 200_000
    mean = rng.normal(size=n)
    var = rng.uniform(0.1, 3.0, size=n)
    y = mean + np.sqrt(var) * rng.standard_normal(n)
    for level in (0.5, 0.9):
        se = np.sqrt(level * (1 - level) / n)
        assert abs(interval_coverage(y, mean, var, level) - level) < 4 * se
    expected = np.mean(-0.5 - 0.5 * np.log(2 * np.pi * var))
    assert gaussian_log_likelihood(y, mean, var) == pytest.approx(expected, abs=4 * np.sqrt(0.5 / n))
    # over-confident predictions: coverage well below nominal, likelihood lower
    assert interval_coverage(y, mean, var / 4, 0.9) < 0.6
    assert gaussian_log_likelihood(y, mean, var / 100) < gaussian_log_likelihood(y, mean, var) - 10
    with pytest.raises(ValueError, match="level must be in"):
        interval_coverage(y, mean, var, 1.0)
    with pytest.raises(ValueError, match="var must be ≥ 0"):
        gaussian_log_likelihood(y[:2], mean[:2], -var[:2])


def test_log_likelihood_floors_zero_variance_like_the_reference():
    ll = gaussian_log_likelihood(np.zeros(1), np.zeros(1), np.zeros(1), reduce="none")
    assert ll[0] == pytest.approx(-0.5 * np.log(1e-8) - 0.5 * np.log(2 * np.pi), rel=1e-14)


def test_crps_is_the_integral_of_the_squared_distance_between_the_cdfs():
    """CRPS(N(μ, σ²), y) = ∫ (Φ((x − μ)/σ) − 1{x ≥ y})² dx, integrated by quadrature on either side of y; at
    σ = 0 the forecast's CDF is a step at μ and the integral is |y − μ|, which a vanishing σ approaches."""
    cases = [(0.3, 0.0, 1.0), (2.0, 0.5, 0.1), (-1.0, 0.2, 3.0), (0.01, 0.0, 1e-3), (5.0, -1.0, 0.5)]
    y, mu, sigma = (np.array(c) for c in zip(*cases, strict=True))
    got = gaussian_crps(y, mu, sigma**2, reduce="none")
    for i, (yi, mi, si) in enumerate(cases):
        def gap(x: float) -> float:
            return (stats.norm.cdf(x, mi, si) - float(x >= yi)) ** 2
        below = integrate.quad(gap, -np.inf, yi, epsabs=1e-13, epsrel=1e-12)[0]
        above = integrate.quad(gap, yi, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
        assert got[i] == pytest.approx(below + above, rel=1e-9), cases[i]
    assert gaussian_crps(y, mu, sigma**2) == pytest.approx(float(np.mean(got)), rel=1e-15)
    step = gaussian_crps(np.array([1.0, -2.0, 0.0]), np.array([0.25, 0.0, 0.0]), np.zeros(3), reduce="none")
    np.testing.assert_array_equal(step, [0.75, 2.0, 0.0])
    near = gaussian_crps(np.array([1.0]), np.array([0.25]), np.array([1e-20]))
    assert near == pytest.approx(0.75 - 1e-10 / np.sqrt(np.pi), rel=1e-15)


def test_crps_of_exact_samples_is_the_half_mean_distance_of_two_draws_and_no_other_forecast_beats_it():
    """For y ~ N(μ, σ²) scored by that same Gaussian, E CRPS = ½ E|X − X'| = σ/√π; the score is proper, so a
    forecast too narrow, too wide or shifted scores worse on average. A target far outside a tiny σ adds
    |y − μ| − σ/√π to the CRPS, where it adds (y − μ)²/(2σ²) to the negative log-likelihood."""
    rng = np.random.default_rng(2)
    n = 200_000
    mean = rng.normal(size=n)
    var = rng.uniform(0.1, 3.0, size=n)
    y = mean + np.sqrt(var) * rng.standard_normal(n)
    scores = gaussian_crps(y, mean, var, reduce="none")
    assert float(np.mean(scores)) == pytest.approx(float(np.mean(np.sqrt(var / np.pi))),
                                                   abs=4 * float(np.std(scores)) / np.sqrt(n))
    exact = gaussian_crps(y, mean, var)
    for worse in ((mean, var / 2), (mean, 2 * var), (mean + 0.3 * np.sqrt(var), var)):
        assert gaussian_crps(y, *worse) > exact + 0.01
    far = gaussian_crps(np.array([0.5]), np.zeros(1), np.array([1e-4]))
    assert far == pytest.approx(0.5 - 0.01 / np.sqrt(np.pi), rel=1e-12)
    assert -gaussian_log_likelihood(np.array([0.5]), np.zeros(1), np.array([1e-4])) > 1000


def test_crps_bad_inputs():
    with pytest.raises(ValueError, match="var must be ≥ 0"):
        gaussian_crps(np.zeros(2), np.zeros(2), -np.ones(2))
    with pytest.raises(ValueError, match="shapes must match"):
        gaussian_crps(np.zeros(2), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="reduce"):
        gaussian_crps(np.zeros(2), np.zeros(2), np.ones(2), reduce="sum")  # type: ignore[arg-type]


def test_boundary_error():
    true = np.tile(np.linspace(1.0, 2.0, 6), (3, 1))
    pred = true.copy()
    pred[:, 0] += 0.1
    pred[1, -1] -= 0.3
    pred[:, 2] += 5.0  # interior error is ignored
    mask = np.zeros(6, dtype=bool)
    mask[[0, -1]] = True
    e = boundary_error(pred, true, mask)
    assert e.max_abs == pytest.approx(0.3)
    expected_rel = np.sqrt(3 * 0.01 + 0.09) / np.sqrt(3 * (1.0 + 4.0))
    assert e.relative == pytest.approx(expected_rel, rel=1e-12)
    assert boundary_error(pred, true, [0, 5]) == e
    assert np.isnan(boundary_error(pred - true, np.zeros_like(true), mask).relative)
    with pytest.raises(ValueError, match="selects no points"):
        boundary_error(pred, true, np.zeros(6, dtype=bool))
    # the mask in another dtype used to be read as the indices {0, 1}: refused instead
    with pytest.raises(ValueError, match="a mask, not indices"):
        boundary_error(pred, true, mask.astype(int))
    with pytest.raises(ValueError, match="dtype float64"):
        boundary_error(pred, true, np.array([0.0, 4.9]))


def test_conservation_error_zero_for_exact_heat_and_probconserv_posterior():
    pytest.importorskip("physml.pdes.heat")
    from physml.pdes import get

    prob, params = get("heat"), {"k": 3.0}
    t = np.linspace(0.1, 1.0, 10)
    x = np.linspace(0.0, 2 * np.pi, 32, endpoint=False)
    G, b = conservation_constraint(prob, params, t, x)
    u = prob.solve(params, x, t)
    assert conservation_error(u, G, b, reduce="mean_abs") < 1e-14
    # a drifting black box (mass offset 0.05·t) has CE = 2π·0.05·t; ProbConserv removes it
    drift = u + 0.05 * t[:, None]
    np.testing.assert_allclose(conservation_error(drift, G, b)[:, 0], 2 * np.pi * 0.05 * t, rtol=1e-12)
    m, _ = probconserv(drift, np.full(u.shape, 1e-2), G, b)
    assert conservation_error(m, G, b, reduce="mean_abs") < 1e-15
    # b of shape (nt,) instead of (nt, 1) would compare every slice's quadrature with every mass
    with pytest.raises(ValueError, match=r"b must have shape \(\.\.\., k\) = \(10, 1\)"):
        conservation_error(drift, G, b[:, 0])
    with pytest.raises(ValueError, match="reduce must be one of"):
        conservation_error(drift, G, b, reduce="mean")
    # G without its k axis: for 10 functions on 10 slices, (10, 10, m) would pass as 10 rows per slice, each
    # slice's quadrature against every slice's mass
    functions = np.stack([drift] * 10)
    with pytest.raises(ValueError, match=r"G must have shape \(\.\.\., k, 32\) with mean's batch axes \(10, 10\)"):
        conservation_error(functions, np.stack([G[:, 0]] * 10), np.stack([b[:, 0]] * 10))
    assert conservation_error(functions, G[None], b[None]).shape == (10, 10, 1)  # a G shared by the functions


def test_conservation_error_of_exact_pme_converges_with_the_grid():
    pytest.importorskip("physml.pdes.pme")
    from physml.pdes import get

    prob, params = get("pme"), {"m": 3.0}
    t = np.array([0.25, 0.5, 0.75])
    errs = []
    for m in (101, 201, 401):
        x = np.linspace(0.0, 1.0, m)
        G, b = conservation_constraint(prob, params, t, x)
        errs.append(conservation_error(prob.solve(params, x, t), G, b, reduce="mean_abs"))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    # u ~ (t − x)^{1/3} at the front (a grid point here): the trapezoid rule converges at order 1 + 1/3
    assert errs[-1] < 1e-3
    assert np.all(np.abs(orders - 4 / 3) < 0.1), orders


def _stefan_profile(p_star: float, t: float, x: np.ndarray) -> tuple[np.ndarray, float]:
    z1 = optimize.brentq(lambda z: p_star * z * special.erf(z) * np.exp(z * z) - (1 - p_star) / np.sqrt(np.pi), 1e-9, 5)
    front = 2 * z1 * np.sqrt(t)
    u = np.where(x <= front, 1 - (1 - p_star) * special.erf(x / (2 * np.sqrt(t))) / special.erf(z1), 0.0)
    return u, front


@pytest.mark.parametrize("p_star", [0.5, 0.6])
def test_shock_position_of_exact_stefan_profile(p_star):
    x = np.linspace(0.0, 1.0, 201)
    h = x[1] - x[0]
    for t in (0.02, 0.05, 0.1):
        u, front = _stefan_profile(p_star, t, x)
        pos = shock_positions(u, x, level=p_star / 2)
        assert abs(pos - front) <= h / 2 + 1e-12
    if p_star == 0.5:
        assert front == pytest.approx(2 * 0.6201 * np.sqrt(0.1), abs=1e-4)


def test_shock_position_agrees_with_the_stefan_problem():
    pytest.importorskip("physml.pdes.stefan")
    from physml.pdes import get

    prob, params = get("stefan"), {"p_star": 0.6}
    x, t = np.linspace(0.0, 1.0, 401), np.array([0.03, 0.08])
    u = prob.solve(params, x, t)
    np.testing.assert_allclose(shock_positions(u, x, 0.3), prob.front_position(params, t), atol=(x[1] - x[0]) / 2)


def test_shock_positions_edge_rules():
    x = np.linspace(0, 1, 5)
    assert shock_positions(np.array([1.0, 1.0, 1.0, 1.0, 1.0]), x, 0.5) == 1.0  # never crosses: right end
    assert shock_positions(np.array([0.0, 1.0, 0.0, 0.0, 0.0]), x, 0.5) == 0.0  # starts below: left end
    assert shock_positions(np.array([1.0, 1.0, 0.0, 0.0, 0.0]), x, 0.5) == pytest.approx(0.375)
    # a ramp u = 1 − x crosses the level 0.3 at x = 0.7 (between grid points, off their middle)
    assert shock_positions(1.0 - x, x, 0.3) == pytest.approx(0.7, abs=1e-12)
    assert shock_positions(1.0 - x[None].repeat(2, 0), x, 0.8) == pytest.approx([0.2, 0.2], abs=1e-12)
    with pytest.raises(ValueError, match="x must have shape"):
        shock_positions(np.ones(4), x, 0.5)
    with pytest.raises(ValueError, match="level must be a finite number"):  # NaN compared false: the right end
        shock_positions(1.0 - x, x, float("nan"))


def test_shock_posterior_of_noisy_samples_is_centred_on_the_front():
    rng = np.random.default_rng(2)
    x = np.linspace(0.0, 1.0, 201)
    u, front = _stefan_profile(0.5, 0.05, x)
    samples = u + 0.02 * rng.standard_normal((400, x.size))
    post = shock_position_posterior(samples, x, level=0.25, true_front=front)
    assert post.positions.shape == (400,)
    assert abs(post.error) < 0.005 and post.std < 0.01
    assert np.all((post.positions >= x[0]) & (post.positions <= x[-1]))
    assert post.covers_90


def test_a_narrow_shock_posterior_beside_the_front_does_not_cover_it():
    """The posterior of profiles whose front sits 0.05 left of the exact one: tight (std ≪ 0.05), so the
    exact front lies outside its central 90 % interval; the same samples judged against their own front do
    cover it."""
    rng = np.random.default_rng(4)
    x = np.linspace(0.0, 1.0, 201)
    u, front = _stefan_profile(0.5, 0.05, x)
    shifted = np.interp(x + 0.05, x, u, right=0.0)
    samples = shifted + 0.02 * rng.standard_normal((400, x.size))
    beside = shock_position_posterior(samples, x, level=0.25, true_front=front)
    assert beside.error == pytest.approx(-0.05, abs=0.005) and beside.std < 0.01
    assert not beside.covers_90
    assert shock_position_posterior(samples, x, level=0.25, true_front=front - 0.05).covers_90


def test_sample_gaussian_moments_and_constrained_samples_satisfy_the_constraint():
    rng = np.random.default_rng(3)
    n = 8
    mean = rng.normal(size=n)
    A = rng.normal(size=(n, n))
    cov = A @ A.T / n
    s = sample_gaussian(mean, cov, 40_000, rng)
    assert s.shape == (40_000, n)
    np.testing.assert_allclose(s.mean(0), mean, atol=5 * np.sqrt(np.diag(cov).max() / 40_000))
    np.testing.assert_allclose(np.cov(s.T), cov, atol=0.05 * np.abs(cov).max())
    var = rng.uniform(0.5, 1.0, (3, n))
    sd = sample_gaussian(np.zeros((3, n)), var, 40_000, rng)
    np.testing.assert_allclose(sd.var(0), var, rtol=0.05)
    # posterior of an exact constraint is singular; every sample satisfies G u = b
    G, b = value_constraint(n, [0], np.array([2.0]))
    G = np.vstack([G, np.ones((1, n)) / n])
    b = np.array([2.0, 0.3])
    m_post, c_post = probconserv(mean, cov, G, b)
    sp = sample_gaussian(m_post, c_post, 1000, rng)
    assert np.abs(sp @ G.T - b).max() < 1e-10
    with pytest.raises(ValueError, match="cov must have shape"):
        sample_gaussian(mean, cov[:3], 5, rng)
    with pytest.raises(ValueError, match="positive semi-definite"):
        sample_gaussian(mean, -np.eye(n), 5, rng)


def test_sample_gaussian_draws_move_by_round_off_when_sigma_does():
    """A low-rank-plus-noise Σ (the ANP's: S latent draws plus a decoder-noise floor) has one eigenvalue
    repeated m − S times, whose eigenvectors eigh may rotate freely: with the factor Q √Λ, Σ and Σ perturbed
    by 1e-13 gave draws 0.5 apart; with Σ^½ = Q √Λ Qᵀ they move by round-off, for the same ε."""
    rng = np.random.default_rng(11)
    m, rank = 40, 4
    A = rng.normal(size=(m, rank))
    cov = A @ A.T / rank + 0.01 * np.eye(m)
    E = rng.normal(size=(m, m))
    nudged = cov + 1e-13 * (E + E.T)
    a = sample_gaussian(np.zeros(m), cov, 200, np.random.default_rng(0))
    b = sample_gaussian(np.zeros(m), nudged, 200, np.random.default_rng(0))
    assert np.abs(a - b).max() < 1e-9
    np.testing.assert_allclose(np.cov(sample_gaussian(np.zeros(m), cov, 40_000, rng).T), cov, atol=0.05 * np.abs(cov).max())


def test_the_field_image_centres_each_cell_on_its_sample(tmp_path, monkeypatch) -> None:
    """imshow's extent is the image's outer edges: the time row of t = 2.0 was drawn at 1.91 (heat_neumann quick,
    dt = 0.2) when the extent ran from the first to the last sample."""
    import matplotlib.image

    from physml import plots

    t, x = np.linspace(0.2, 2.0, 10), np.linspace(0.0, 1.0, 5)
    truth = np.outer(t, 1.0 + x)
    plots.field_error_panel(x, t, truth, {"fno": truth + 0.1}, tmp_path / "f.png")
    assert matplotlib.image.imread(tmp_path / "f.png").ndim == 3
    drawn: list = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig) or path)
    plots.field_error_panel(x, t, truth, {"fno": truth + 0.1}, tmp_path / "g.png")
    (fig,) = drawn
    images = [ax.images[0] for ax in fig.axes if ax.images]  # the truth and the error panel (not the colour bars)
    assert len(images) == 2
    for image in images:
        assert image.get_extent() == pytest.approx((-0.125, 1.125, 0.1, 2.1))


def test_bound_violation_is_the_deepest_entry_below_the_bound() -> None:
    """max_j max(ℓ − μ_j, 0): 0 when every entry is at or above ℓ, else the largest shortfall."""
    mean = np.array([[0.5, 0.0, 0.2], [0.1, 0.3, 0.4]])
    assert bound_violation(mean) == 0.0
    mean[1, 0] = -0.25
    mean[0, 2] = -0.05
    assert bound_violation(mean) == 0.25
    assert bound_violation(mean, lower=0.3) == 0.55
    with pytest.raises(ValueError, match="mean contains NaN or inf"):
        bound_violation(np.array([np.nan]))
