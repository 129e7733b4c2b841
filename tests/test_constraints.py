"""Guarantees of the exact Gaussian conditioning and of the constraint builders.

condition() must give: G μ' = b to round-off (zero noise), a symmetric PSD covariance whose variances
never grow, no change of the mean when the constraint already holds, the textbook dense formula, the same
answer batched or looped, in NumPy or torch, and clear ValueErrors for bad input.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
import torch

from physml import pdes
from physml.constraints import (
    condition,
    conservation_constraint,
    constrained_log_likelihood,
    dirichlet_constraint,
    hardc,
    periodic_constraint,
    probconserv,
    stack_constraints,
    trapezoid_weights,
    value_constraint,
)
from physml.pdes.base import Parameter, Problem

N_DRAWS = 100


def _random_case(rng: np.random.Generator, batch: tuple[int, ...] = ()):
    n = int(rng.integers(1, 40))
    k = int(rng.integers(1, min(n, 5) + 1))
    scale = 10.0 ** rng.uniform(-3, 3)
    mean = rng.normal(size=batch + (n,)) * scale
    var = rng.uniform(0.05, 2.0, size=batch + (n,)) * scale**2
    A = rng.normal(size=batch + (n, n))
    full = A @ np.swapaxes(A, -1, -2) / n * scale**2 + np.eye(n) * 1e-3 * scale**2
    G = rng.normal(size=batch + (k, n))
    b = rng.normal(size=batch + (k,)) * scale
    return mean, var, full, G, b


def _dense_textbook(mean, cov, G, b, noise=0.0):
    S = G @ cov @ G.T + noise * np.eye(G.shape[0])
    K = cov @ G.T @ np.linalg.inv(S)
    return mean - K @ (G @ mean - b), cov - K @ G @ cov


def test_constraint_holds_to_roundoff_and_covariance_is_psd():
    rng = np.random.default_rng(0)
    for _ in range(N_DRAWS):
        mean, var, full, G, b = _random_case(rng)
        for cov in (var, full):
            m, c = condition(mean, cov, G, b, full_cov=True)
            resid = np.abs(G @ m - b)
            scale = np.abs(G) @ np.abs(m) + np.abs(b)
            assert np.all(resid <= 1e-10 * scale)
            assert np.array_equal(c, c.T)
            lam = np.linalg.eigvalsh(c)
            prior_scale = np.abs(cov).max()
            assert lam.min() >= -1e-12 * prior_scale
            prior_var = cov if cov.ndim == 1 else np.diag(cov)
            assert np.all(np.diag(c) <= prior_var * (1 + 1e-12))


def test_posterior_covariance_has_no_variance_along_the_constraint():
    """Var(G u) = G Σ' Gᵀ = 0 under an exact constraint."""
    rng = np.random.default_rng(1)
    for _ in range(30):
        mean, var, full, G, b = _random_case(rng)
        _, c = condition(mean, full, G, b)
        assert np.abs(G @ c @ G.T).max() <= 1e-10 * np.abs(G @ full @ G.T).max()


def test_matches_dense_textbook_formula_diag_and_full_with_and_without_noise():
    rng = np.random.default_rng(2)
    for _ in range(N_DRAWS):
        mean, var, full, G, b = _random_case(rng)
        noise = float(rng.choice([0.0, rng.uniform(0.01, 1.0) * np.abs(var).max()]))
        for cov in (np.diag(var), full):
            m_ref, c_ref = _dense_textbook(mean, cov, G, b, noise)
            m, c = condition(mean, cov, G, b, noise_var=noise)
            cscale = np.abs(cov).max()
            np.testing.assert_allclose(m, m_ref, rtol=0, atol=1e-8 * (np.abs(mean).max() + np.abs(b).max() + 1))
            np.testing.assert_allclose(c, c_ref, rtol=0, atol=1e-8 * cscale)
        m_d, v_d = condition(mean, var, G, b, noise_var=noise)
        m_f, c_f = condition(mean, np.diag(var), G, b, noise_var=noise)
        np.testing.assert_allclose(m_d, m_f, rtol=1e-12, atol=1e-12 * np.abs(m_f).max())
        np.testing.assert_allclose(v_d, np.clip(np.diag(c_f), 0, None), rtol=0, atol=1e-12 * var.max())
        _, c_d_full = condition(mean, var, G, b, noise_var=noise, full_cov=True)
        np.testing.assert_allclose(c_d_full, c_f, rtol=0, atol=1e-12 * var.max())


def test_mean_unchanged_when_constraint_already_holds():
    rng = np.random.default_rng(3)
    for _ in range(N_DRAWS):
        mean, var, full, G, _ = _random_case(rng)
        b = G @ mean
        for cov in (var, full):
            m, _ = condition(mean, cov, G, b)
            np.testing.assert_allclose(m, mean, rtol=0, atol=1e-10 * (np.abs(mean).max() + 1e-300))


def test_large_noise_leaves_the_prior_and_noise_interpolates():
    rng = np.random.default_rng(4)
    mean, var, _, G, b = _random_case(rng)
    m, v = condition(mean, var, G, b, noise_var=1e14 * var.max())
    np.testing.assert_allclose(m, mean, atol=1e-8 * (np.abs(mean).max() + np.abs(b).max()))
    np.testing.assert_allclose(v, var, rtol=1e-8)
    r_small = np.abs(G @ condition(mean, var, G, b, noise_var=1e-3)[0] - b).max()
    r_big = np.abs(G @ condition(mean, var, G, b, noise_var=1e1)[0] - b).max()
    assert r_small < r_big


def test_batched_equals_loop_and_broadcasting():
    rng = np.random.default_rng(5)
    for _ in range(8):
        mean, var, full, G, b = _random_case(rng, batch=(3, 4))
        for cov in (var, full):
            m, c = condition(mean, cov, G, b)
            for i in range(3):
                for j in range(4):
                    mi, ci = condition(mean[i, j], cov[i, j], G[i, j], b[i, j])
                    np.testing.assert_allclose(m[i, j], mi, rtol=1e-12, atol=1e-12 * np.abs(mi).max())
                    np.testing.assert_allclose(c[i, j], ci, rtol=1e-12, atol=1e-12 * np.abs(ci).max())
    # one G shared by all slices broadcasts against a batch of means
    m, v = condition(mean, var, G[0, 0], b[0, 0])
    np.testing.assert_allclose(m[1, 2], condition(mean[1, 2], var[1, 2], G[0, 0], b[0, 0])[0], rtol=1e-12)
    assert v.shape == var.shape


def test_draws_sharing_a_covariance_are_conditioned_with_one_gain():
    """Matheron's rule: S draws (B, S, n) of N(μ, Σ) with Σ (B, 1, n, n) — each draw moves by the textbook
    gain, and Σ' is computed once per function: along the draws it is a broadcast view, not S copies."""
    rng = np.random.default_rng(12)
    _, _, full, G, b = _random_case(rng, batch=(3,))
    draws = rng.normal(size=(3, 50, full.shape[-1]))
    m, c = condition(draws, full[:, None], G[:, None], b[:, None])
    assert c.shape == (3, 50) + full.shape[-2:] and c.strides[1] == 0 and not c.flags.writeable
    for i in range(3):
        for j in (0, 49):
            mi, ci = _dense_textbook(draws[i, j], full[i], G[i], b[i])
            np.testing.assert_allclose(m[i, j], mi, rtol=1e-10, atol=1e-10 * np.abs(mi).max())
            np.testing.assert_allclose(c[i, j], ci, rtol=1e-8, atol=1e-10 * np.abs(full[i]).max())
    mt, ct = condition(torch.from_numpy(draws), torch.from_numpy(full[:, None]), G[:, None], b[:, None])
    assert ct.shape == c.shape and ct.stride(1) == 0
    np.testing.assert_allclose(mt.numpy(), m, rtol=1e-12, atol=1e-12)


def test_keep_dtype_accepts_a_plain_list():
    m, v = condition([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [[1.0, 1.0, 1.0]], [0.0], keep_dtype=True)
    assert m.dtype == np.float64 and abs(m.sum()) < 1e-12 and v.shape == (3,)


def test_keep_dtype_keeps_only_a_floating_dtype():
    """An integer mean' would be truncated off the constraint (G μ' = 1 against b = 0.5): it stays float64."""
    m, _ = condition(np.array([0, 0, 1]), np.ones(3), np.ones((1, 3)), np.array([0.5]), keep_dtype=True)
    assert m.dtype == np.float64 and abs(m.sum() - 0.5) < 1e-12
    m32, _ = condition(np.zeros(3, dtype=np.float32), np.ones(3), np.ones((1, 3)), np.array([0.5]), keep_dtype=True)
    assert m32.dtype == np.float32


def test_a_row_of_g_too_small_to_test_is_refused_as_zero():
    """Below ~2e-295 a diagonal entry of S is too small for the relative pivot test (its 1e-13 underflows): such a
    row is refused as singular rather than giving a mean off its constraint."""
    G = np.array([[1.0, 0.0, 0.0], [0.0, 1e-160, 0.0]])
    with pytest.raises(ValueError, match="singular or indefinite at batch index"):
        condition(np.zeros(3), np.ones(3), G, np.array([1.0, 5e-160]))


def test_singularity_test_does_not_depend_on_the_units_of_the_rows():
    """Scaling a row of G (and its b) by 1e-8 states the same constraint: the posterior must not change, nor
    may the system be called singular. Nor may a tiny but positive variance along one row."""
    rng = np.random.default_rng(21)
    mean, var, full, G, b = _random_case(rng)
    scale = np.ones(len(b))
    scale[-1] = 1e-8
    for cov in (var, full):
        m, c = condition(mean, cov, G, b)
        ms, cs = condition(mean, cov, G * scale[:, None], b * scale)
        np.testing.assert_allclose(ms, m, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(cs, c, rtol=1e-6, atol=1e-10)
    tiny = np.ones(4)
    tiny[0] = 1e-15
    m, _ = condition(np.zeros(4), tiny, np.array([[1.0, 0, 0, 0], [0, 1.0, 1.0, 0]]), np.array([1e-9, 1.0]))
    np.testing.assert_allclose([m[0], m[1] + m[2]], [1e-9, 1.0], rtol=1e-12)


def test_a_full_covariance_that_is_not_positive_semi_definite_is_refused():
    """An indefinite Σ would give negative posterior variances (here −3) that a later clip hides; a valid
    low-rank Σ rounded through float32 (negatives near n·eps32 once its directions are conditioned away) is not
    refused."""
    rng = np.random.default_rng(5)
    for rank in (1, 2, 3):
        B = rng.standard_normal((50, rank))
        low = (B @ B.T).astype(np.float32)
        low = (low + low.T) / 2
        G = rng.standard_normal((rank, 50))
        condition(np.zeros(50), low.astype(np.float64), G, np.zeros(rank))
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and −1
    with pytest.raises(ValueError, match=r"cov is not positive semi-definite: .* variance of -3"):
        condition(np.zeros(2), bad, np.array([[1.0, 0.0]]), np.array([0.0]))
    with pytest.raises(ValueError, match="singular or indefinite .* not positive semi-definite"):
        condition(np.zeros(2), bad, np.array([[1.0, -1.0]]), np.array([0.0]))


def test_read_only_inputs_are_taken_without_a_warning():
    import warnings

    G = np.broadcast_to(np.ones((1, 3)), (2, 1, 3))  # read-only view
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m, _ = condition(np.zeros((2, 3)), np.ones((2, 3)), G, np.ones((2, 1)))
    np.testing.assert_allclose(m.sum(-1), 1.0)
    assert not G.flags.writeable and G.strides[0] == 0  # the input itself is left as it was


def test_torch_equals_numpy_keeps_device_and_gradient():
    rng = np.random.default_rng(6)
    for _ in range(20):
        mean, var, full, G, b = _random_case(rng, batch=(2,))
        for cov in (var, full):
            m_np, c_np = condition(mean, cov, G, b)
            m_t, c_t = condition(torch.tensor(mean), torch.tensor(cov), torch.tensor(G), torch.tensor(b))
            assert isinstance(m_t, torch.Tensor) and m_t.dtype == torch.float64
            np.testing.assert_allclose(m_t.numpy(), m_np, rtol=1e-13, atol=1e-13 * np.abs(m_np).max())
            np.testing.assert_allclose(c_t.numpy(), c_np, rtol=1e-13, atol=1e-13 * np.abs(c_np).max())
    mu32 = torch.tensor(mean, dtype=torch.float32, requires_grad=True)
    m32, v32 = condition(mu32, torch.tensor(var, dtype=torch.float32), G, b, keep_dtype=True)
    assert m32.dtype == torch.float32 and v32.dtype == torch.float32
    m32.sum().backward()
    assert mu32.grad is not None and torch.isfinite(mu32.grad).all()
    m64, _ = condition(mean.astype(np.float32), var.astype(np.float32), G, b)
    assert m64.dtype == np.float64


def _good():
    rng = np.random.default_rng(7)
    return dict(mean=rng.normal(size=(2, 5)), cov=rng.uniform(0.5, 1, (2, 5)), G=np.ones((2, 1, 5)), b=np.zeros((2, 1)))


@pytest.mark.parametrize("name", ["mean", "cov", "G", "b"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_raise_naming_the_argument(name, bad):
    args = _good()
    args[name] = args[name].copy()
    args[name].flat[0] = bad
    with pytest.raises(ValueError, match=rf"^{name} contains NaN or inf"):
        condition(**args)


@pytest.mark.parametrize(
    ("name", "value", "pattern"),
    [
        ("cov", -np.ones((2, 5)), "cov has negative variances"),
        ("cov", np.ones((2, 4)), r"cov must have shape \(\.\.\., 5\)"),
        ("cov", np.ones((2, 5, 4)), r"cov must have shape"),
        ("G", np.ones((2, 1, 4)), r"G must have shape \(\.\.\., k, n\) with n = 5"),
        ("b", np.ones((2, 2)), r"b must have shape \(\.\.\., k\) with k = 1"),
        ("mean", np.ones((3, 5)), "leading .batch. axes do not broadcast"),
    ],
)
def test_bad_shapes_and_variances_raise(name, value, pattern):
    args = _good()
    args[name] = value
    with pytest.raises(ValueError, match=pattern):
        condition(**args)


@pytest.mark.parametrize("dtype, accepted", [(torch.float32, True), (torch.float64, False)])
def test_float32_round_off_asymmetry_is_accepted_float64_is_not(dtype, accepted):
    """A float32 Σ = A Aᵀ/m is asymmetric by a few float32 ε (~1e-7 of its variances): round-off, accepted by
    condition, probconserv and hardc (the tolerance is max(1e-8, 16 ε) of the dtype passed). The same size of
    asymmetry in a float64 Σ is 1e8 float64 ε, an error, refused."""
    torch.manual_seed(0)
    A = torch.randn(3, 10, 16, dtype=torch.float64)
    cov = A @ A.mT / 16 + 1e-4 * torch.eye(10, dtype=torch.float64)
    cov = cov + 1e-7 * torch.triu(torch.ones(10, 10, dtype=torch.float64), 1) * cov.diagonal(dim1=-2, dim2=-1).amax()
    cov = cov.to(dtype)
    mean, G, b = torch.zeros(3, 10, dtype=dtype), torch.full((3, 1, 10), 0.1, dtype=dtype), torch.ones(3, 1, dtype=dtype)
    calls = (lambda: condition(mean, cov, G, b), lambda: probconserv(mean, cov, G, b), lambda: hardc(mean, cov, G, b))
    for call in calls:
        if accepted:
            mu, _ = call()
            assert float((G.double() @ mu.double().unsqueeze(-1)).squeeze(-1).sub(b).abs().max()) < 1e-5
        else:
            with pytest.raises(ValueError, match=r"must be symmetric: max\|Σ − Σᵀ\| = .* > 1e-08 · max variance"):
                call()


def test_bad_noise_asymmetric_cov_and_singular_system_raise():
    args = _good()
    with pytest.raises(ValueError, match="noise_var must be ≥ 0"):
        condition(**args, noise_var=-1.0)
    with pytest.raises(ValueError, match="noise_var contains NaN"):
        condition(**args, noise_var=np.nan)
    full = np.tile(np.eye(5), (2, 1, 1))
    full[1, 0, 1] = 0.5
    with pytest.raises(ValueError, match="cov must be symmetric"):
        condition(args["mean"], full, args["G"], args["b"])
    # two identical rows: G Σ Gᵀ singular, in batch element 1 only
    G = np.stack([np.eye(5)[:2], np.stack([np.ones(5), np.ones(5)])])
    with pytest.raises(ValueError, match=r"singular or indefinite at batch index \(1,\)"):
        condition(args["mean"], args["cov"], G, np.zeros((2, 2)))
    # zero variance on every constrained entry
    var = args["cov"].copy()
    var[0, :] = 0.0
    with pytest.raises(ValueError, match=r"singular or indefinite at batch index \(0,\)"):
        condition(args["mean"], var, args["G"], args["b"])
    # the same singular systems are fine with observation noise
    m, _ = condition(args["mean"], var, args["G"], args["b"], noise_var=1e-2)
    assert np.all(np.isfinite(m))


def test_gradient_with_respect_to_a_scalar_noise_variance_matches_finite_differences():
    """A 0-d noise_var tensor is differentiated through the whole update (S and the Joseph form), as a
    (k,) one is: d/dσ² of Σ μ' + Σ Σ' against central differences."""
    rng = np.random.default_rng(11)
    n, k = 6, 2
    mean, G, b = (torch.tensor(rng.normal(size=shape)) for shape in ((n,), (k, n), (k,)))
    A = torch.tensor(rng.normal(size=(n, n)))
    for cov in (torch.tensor(rng.uniform(0.5, 2.0, n)), A @ A.T / n + 0.1 * torch.eye(n, dtype=torch.float64)):
        def loss(sig: torch.Tensor) -> torch.Tensor:
            m, c = condition(mean, cov, G, b, noise_var=sig, full_cov=True)
            return m.sum() + c.sum()

        for sig in (torch.tensor(0.3, dtype=torch.float64), torch.full((k,), 0.3, dtype=torch.float64)):
            leaf = sig.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(loss(leaf), leaf)
            step = 1e-5
            numeric = float(loss(sig + step) - loss(sig - step)) / (2 * step)
            assert float(grad.sum()) == pytest.approx(numeric, rel=1e-7)


def test_probconserv_errors_name_its_own_argument_and_a_shared_full_covariance_is_explained():
    args = _good()
    with pytest.raises(ValueError, match="^var has negative variances"):
        probconserv(args["mean"], -args["cov"], args["G"], args["b"])
    with pytest.raises(ValueError, match=r"^var must have shape"):
        probconserv(args["mean"], args["cov"][:, :4], args["G"], args["b"])
    # a full (n, n) covariance has as many axes as a (B, n) mean, so it reads as B rows of variances
    with pytest.raises(ValueError, match=r"do not broadcast.*cov \(5, 5\) has as many axes as mean.*cov\[None\]"):
        condition(args["mean"], np.eye(5), args["G"], args["b"])
    shared, _ = condition(args["mean"], np.eye(5)[None], args["G"], args["b"])
    looped = [condition(args["mean"][i], np.eye(5), args["G"][i], args["b"][i])[0] for i in range(2)]
    np.testing.assert_allclose(shared, np.stack(looped), rtol=1e-14)


def test_hardc_is_the_least_squares_projection_and_keeps_variance():
    rng = np.random.default_rng(8)
    for _ in range(30):
        mean, var, _, G, b = _random_case(rng)
        m, v = hardc(mean, var, G, b)
        # minimum-norm correction: μ' − μ = Gᵀ λ with G μ' = b
        delta = np.linalg.lstsq(G, b - G @ mean, rcond=None)[0]
        np.testing.assert_allclose(m, mean + delta, rtol=0, atol=1e-9 * (np.abs(mean).max() + np.abs(b).max()))
        np.testing.assert_array_equal(v, var)
    mp, vp = probconserv(mean, var, G, b)
    assert not np.allclose(mp, m) and np.all(vp <= var)
    n = mean.shape[-1]
    for bad in (np.ones((n + 1, n)), np.ones((n + 1, n + 1)), np.ones((7, 4, n))):  # not a variance or covariance of mean
        with pytest.raises(ValueError, match=r"var must have shape .* broadcast to mean's"):
            hardc(mean, bad, G, b)
    skew = np.eye(n)
    skew[0, 1] = 5.0
    with pytest.raises(ValueError, match="var must be symmetric"):  # as condition refuses it for cov
        hardc(mean, skew, G, b)
    batch_mean = np.stack([mean, mean])
    _, full_var = hardc(batch_mean, np.stack([np.eye(n)] * 2), G, b)
    assert full_var.shape == (2, n, n)
    # one mean and its variances against a batch of constraints, as condition takes them
    m2, v2 = hardc(mean, var, np.stack([G, G]), np.stack([b, b]))
    assert m2.shape == (2, n) and v2.shape == var.shape


def test_update_acts_where_the_model_is_unsure():
    """ProbConserv distributes the correction ∝ variance: a point with 100× the variance moves 100× more."""
    mean, var = np.zeros(4), np.array([1.0, 1.0, 100.0, 1.0])
    G, b = np.full((1, 4), 0.25), np.array([1.0])
    m, _ = probconserv(mean, var, G, b)
    np.testing.assert_allclose(m / m[0], var / var[0], rtol=1e-12)
    mh, _ = hardc(mean, var, G, b)
    np.testing.assert_allclose(mh, np.full(4, 1.0), rtol=1e-12)


def test_factor_is_the_rank_k_downdate_of_a_diagonal_prior():
    """factor=True returns W with Σ' = diag(v) − Wᵀ W, the full posterior covariance (with and without noise);
    the mean is the same; a full covariance is refused."""
    rng = np.random.default_rng(23)
    for noise in (0.0, 0.2):
        mean, var, G = rng.normal(size=(3, 8)), rng.uniform(0.1, 1.0, (3, 8)), rng.normal(size=(3, 2, 8))
        b = rng.normal(size=(3, 2))
        m_full, cov = condition(mean, var, G, b, noise_var=noise, full_cov=True)
        m, W = condition(mean, var, G, b, noise_var=noise, factor=True)
        assert W.shape == (3, 2, 8)
        np.testing.assert_allclose(m, m_full, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(np.apply_along_axis(np.diag, -1, var) - np.swapaxes(W, -1, -2) @ W, cov,
                                   rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"factor=True takes a diagonal var"):
        probconserv(mean, np.apply_along_axis(np.diag, -1, var), G, b, factor=True)
    with pytest.raises(ValueError, match=r"factor=True takes a diagonal cov \(\.\.\., n\) and full_cov=False"):
        condition(mean, var, G, b, full_cov=True, factor=True)
    m0, W0 = condition(mean, var, G[:, :0], b[:, :0], factor=True)  # no constraint: no downdate
    assert W0.shape == (3, 0, 8)
    np.testing.assert_array_equal(m0, mean)


def test_constrained_log_likelihood_is_the_density_of_the_conditioned_gaussian():
    """log p(u | G u) by Bayes' rule equals log N(u; μ', Σ') of condition's posterior for b = G u: with noise a
    proper density on Rⁿ, without it the density on the set G v = G u (scipy's, through Σ''s pseudo-determinant)."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(21)
    for k, noise in ((1, 0.0), (2, 0.0), (1, 0.05), (3, 0.7)):
        for _ in range(5):
            n = int(rng.integers(k + 2, 12))
            mean, var, G, u = rng.normal(size=n), rng.uniform(0.05, 2.0, n), rng.normal(size=(k, n)), rng.normal(size=n)
            m, cov = condition(mean, var, G, G @ u, noise_var=noise, full_cov=True)
            expected = multivariate_normal(m, cov, allow_singular=True).logpdf(u)
            got = constrained_log_likelihood(*(torch.tensor(a) for a in (u, mean, var, G)), noise_var=noise)
            assert float(got) == pytest.approx(expected, rel=1e-10, abs=1e-10), (k, noise)


def test_constrained_log_likelihood_ignores_the_mean_along_the_update_direction():
    """Without noise the mean's component along diag(var) Gᵀ, the direction the update moves it in, is set by
    the constraint and does not enter; a shift in any other direction does. Batched slices equal a loop."""
    rng = np.random.default_rng(22)
    n, slices = 9, 4
    u, mean, var = (torch.tensor(rng.normal(size=(slices, n))), torch.tensor(rng.normal(size=(slices, n))),
                    torch.tensor(rng.uniform(0.1, 1.0, (slices, n))))
    G = torch.tensor(rng.uniform(0.05, 0.2, (slices, 1, n)))
    ll = constrained_log_likelihood(u, mean, var, G)
    along = mean + 3.7 * var * G[:, 0]
    np.testing.assert_allclose(constrained_log_likelihood(u, along, var, G), ll, rtol=1e-12)
    across = mean + 3.7 * G[:, 0]  # Gᵀ itself is not the update's direction unless var is constant
    assert float((constrained_log_likelihood(u, across, var, G) - ll).abs().min()) > 1e-3
    looped = torch.stack([constrained_log_likelihood(u[i], mean[i], var[i], G[i]) for i in range(slices)])
    np.testing.assert_allclose(ll, looped, rtol=1e-13)
    # a loss: gradients reach the mean and the variance
    m, v = mean.clone().requires_grad_(), var.clone().requires_grad_()
    constrained_log_likelihood(u, m, v, G).sum().backward()
    assert bool(torch.isfinite(m.grad).all()) and float(v.grad.abs().max()) > 0


def test_constrained_log_likelihood_bad_inputs():
    u, G = torch.zeros(3), torch.ones(1, 3)
    with pytest.raises(ValueError, match="torch tensors"):
        constrained_log_likelihood(np.zeros(3), u, torch.ones(3), G)
    with pytest.raises(ValueError, match="noise_var must be finite and >= 0"):
        constrained_log_likelihood(u, u, torch.ones(3), G, noise_var=-1.0)
    with pytest.raises(ValueError, match="var must be > 0"):
        constrained_log_likelihood(u, u, torch.tensor([1.0, 0.0, 1.0]), G)
    with pytest.raises(ValueError, match=r"G \(\.\.\., k, n\)"):
        constrained_log_likelihood(u, u, torch.ones(3), torch.ones(1, 4))
    with pytest.raises(ValueError, match="rows of G are dependent"):
        constrained_log_likelihood(u, u, torch.ones(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="u contains NaN"):
        constrained_log_likelihood(torch.tensor([0.0, float("nan"), 0.0]), u, torch.ones(3), G)
    with pytest.raises(ValueError, match="batch\\) axes do not broadcast"):
        constrained_log_likelihood(torch.zeros(2, 3), torch.zeros(4, 3), torch.ones(3), G)


# ---------------------------------------------------------------------------- builders


def test_trapezoid_weights_reference_and_extended_ends():
    rng = np.random.default_rng(9)
    x = np.sort(rng.uniform(0.0, 1.0, size=(5, 12)), axis=-1)
    w_ref = trapezoid_weights(x, (0.0, 1.0), ends="reference")
    np.testing.assert_allclose(w_ref.sum(-1), x[:, -1] - x[:, 0], rtol=1e-14)
    # the trapezoid rule integrates linear functions exactly on [x_1, x_m]
    np.testing.assert_allclose((w_ref * (3 * x + 2)).sum(-1), 1.5 * (x[:, -1] ** 2 - x[:, 0] ** 2) + 2 * (x[:, -1] - x[:, 0]))
    w_ext = trapezoid_weights(x, (0.0, 1.0))
    np.testing.assert_allclose(w_ext.sum(-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(w_ext[:, 1:-1], w_ref[:, 1:-1])
    # periodic: spectrally accurate on a uniform grid, second order on random sorted points
    L = 2 * np.pi
    xu = np.linspace(0, L, 16, endpoint=False) + 0.3
    wp = trapezoid_weights(xu, (0.0, L), periodic=True)
    assert abs((wp * np.exp(np.sin(xu))).sum() - L * 1.2660658777520082) < 1e-12


def test_trapezoid_weights_converge_at_second_order_on_a_smooth_field():
    errs = []
    for m in (20, 40, 80):
        x = np.linspace(0.0, 1.0, m)
        w = trapezoid_weights(x, (0.0, 1.0))
        errs.append(abs((w * np.exp(x)).sum() - (np.e - 1)))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(orders - 2.0) < 0.1)


def test_trapezoid_weights_take_an_end_point_rounded_in_float32_as_the_end():
    """float32(2π) = 2π + 1.7e-7: it is the domain's end, not outside it (the SoftC penalty on grid data);
    a point one float32 step further than that rounding is still refused."""
    L = 2 * np.pi
    x32 = np.linspace(0.0, L, 11).astype(np.float32)
    assert float(x32[-1]) > L
    w = trapezoid_weights(x32, (0.0, L), periodic=True)
    np.testing.assert_allclose(w.sum(), L, rtol=1e-15)
    from physml.models.anp import slice_weights
    np.testing.assert_allclose(slice_weights(torch.from_numpy(x32)[None, None], (0.0, L), True).double().sum(),
                               L, rtol=1e-6)
    with pytest.raises(ValueError, match="domain"):
        trapezoid_weights(np.array([0.0, L * (1 + 1e-5)], dtype=np.float32), (0.0, L))
    with pytest.raises(ValueError, match="domain"):
        trapezoid_weights(np.array([0.0, L + 1e-9]), (0.0, L))
    # conservation_constraint passes the positions on in their own precision (cast to float64 first, the end
    # was 1.7e-7 outside the domain, and the message printed both as 6.28319)
    from physml.pdes import get

    heat = get("heat")
    G, _ = conservation_constraint(heat, {"k": 1.0}, np.array([0.0, 0.5]), x32[1:])  # ends on float32(2π)
    np.testing.assert_allclose(G.sum(-1), L, rtol=1e-15)
    with pytest.raises(ValueError, match=r"domain \[0, 6\.2831853071795862\] .* got range \[0, 6\.283248"):
        conservation_constraint(heat, {"k": 1.0}, np.array([0.0]), np.array([0.0, L * (1 + 1e-5)]))


@pytest.mark.parametrize(
    ("x", "pattern"),
    [(np.array([0.5, 0.2]), "sorted"), (np.array([-0.1, 0.2]), "domain"), (np.array([0.1, np.nan]), "NaN")],
)
def test_trapezoid_weights_bad_input(x, pattern):
    with pytest.raises(ValueError, match=pattern):
        trapezoid_weights(x, (0.0, 1.0))


class _LinearInFlow(Problem):
    """u = 1 + t x on [0, 1]: u_t = x = −F_x with F = −x²/2, so M(t) = 1 + t/2 from the flux integral."""

    name = "fake_linear"
    family = "probconserv"
    parameters = (Parameter("c", 0.0, 10.0, "unused"),)
    x_domain = (0.0, 1.0)
    t_domain = (0.0, 1.0)
    boundary = "dirichlet"
    conservative = True

    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        return 1.0 + np.outer(t, x)

    def boundary_flux(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        return np.tile([0.0, -0.5], (len(t), 1))

    def boundary_data(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        return np.stack([np.ones_like(t), 1.0 + t], axis=-1)


def test_conservation_constraint_uses_the_problems_flux_and_makes_mass_exact():
    prob, params = _LinearInFlow(), {"c": 1.0}
    rng = np.random.default_rng(10)
    t = np.sort(rng.uniform(0, 1, 6))
    x = np.sort(rng.uniform(0, 1, (6, 9)), axis=-1)
    G, b = conservation_constraint(prob, params, t, x)
    assert G.shape == (6, 1, 9) and b.shape == (6, 1)
    np.testing.assert_allclose(b[:, 0], 1.0 + t / 2, rtol=1e-10)
    np.testing.assert_allclose(G.sum(-1), 1.0, rtol=1e-14)
    mean = rng.normal(size=(6, 9))
    var = rng.uniform(0.1, 1.0, (6, 9))
    m, v = probconserv(mean, var, G, b)
    np.testing.assert_allclose(np.einsum("tkn,tn->tk", G, m), b, rtol=1e-12)
    # shared x for all slices gives the same rows
    G1, _ = conservation_constraint(prob, params, t, x[0])
    np.testing.assert_array_equal(G1[3], G1[0])


def test_conservation_constraint_bad_input():
    prob, params = _LinearInFlow(), {"c": 1.0}
    with pytest.raises(ValueError, match="target_t"):
        conservation_constraint(prob, params, np.array([2.0]), np.array([0.5]))
    with pytest.raises(ValueError, match="target_x must have shape"):
        conservation_constraint(prob, params, np.array([0.1, 0.2]), np.ones((3, 4)) * 0.5)
    with pytest.raises(ValueError, match="sorted"):
        conservation_constraint(prob, params, np.array([0.1]), np.array([0.6, 0.5]))


def test_heat_exact_solution_satisfies_the_built_constraint():
    """Heat (periodic, u = e^{−kt} sin x, mass 0): the constraint is the periodic trapezoid, weights 2π/n on a
    uniform grid, so it integrates a constant to 2π·c and the exact field to its mass 0 at every time; a
    perturbed prediction is pulled back onto the law."""
    from physml.pdes import get

    prob, params = get("heat"), {"k": 2.0}
    t = np.linspace(0.05, 0.95, 5)
    x = np.linspace(0, 2 * np.pi, 24, endpoint=False) + 0.1
    G, b = conservation_constraint(prob, params, t, x)
    np.testing.assert_array_equal(b, np.zeros((5, 1)))
    np.testing.assert_allclose(G, np.full((5, 1, 24), 2 * np.pi / 24), rtol=1e-14)
    u = prob.solve(params, x, t)
    np.testing.assert_allclose(u, np.exp(-2.0 * t)[:, None] * np.sin(x), rtol=1e-12, atol=1e-15)
    assert np.abs(np.einsum("tkn,tn->tk", G, u) - b).max() < 1e-13
    lifted = np.einsum("tkn,tn->tk", G, 0.5 + u)  # a field with mass: π at every time
    np.testing.assert_allclose(lifted, np.pi, rtol=1e-14)
    # a perturbed prediction is pulled back onto the law
    rng = np.random.default_rng(11)
    m, _ = probconserv(u + 0.1 * rng.normal(size=u.shape), np.full(u.shape, 0.01), G, b)
    assert np.abs(np.einsum("tkn,tn->tk", G, m) - b).max() < 1e-14


def test_dirichlet_constraint_pins_boundary_values_exactly():
    prob, params = _LinearInFlow(), {"c": 1.0}
    t = np.array([0.2, 0.7])
    x = np.linspace(0, 1, 7)
    Gd, bd = dirichlet_constraint(prob, params, t, x)
    assert Gd.shape == (2, 2, 7)
    rng = np.random.default_rng(12)
    mean, var = rng.normal(size=(2, 7)), rng.uniform(0.1, 1, (2, 7))
    m, v = condition(mean, var, Gd, bd)
    np.testing.assert_allclose(m[:, [0, -1]], prob.boundary_data(params, t), rtol=1e-14)
    assert np.abs(v[:, [0, -1]]).max() <= 1e-15 * var.max()
    np.testing.assert_array_equal(m[:, 1:-1], mean[:, 1:-1])  # diagonal Σ: interior untouched
    # conservation and boundary values together
    Gc, bc = conservation_constraint(prob, params, t, x)
    G, b = stack_constraints((Gc, bc), (Gd, bd))
    m2, _ = condition(mean, var, G, b)
    np.testing.assert_allclose(np.einsum("tkn,tn->tk", G, m2), b, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="must start at x_L"):
        dirichlet_constraint(prob, params, t, x[1:])


def test_dirichlet_constraint_on_the_exact_cases_takes_their_closed_form_end_values():
    """The ProbConserv cases with a Dirichlet boundary prescribe what their exact solutions hold at the ends:
    pme u(t, 0) = (m t)^{1/m}, u(t, 1) = 0 (t < 1); stefan u(t, 0) = 1, u(t, 1) = 0 while the front
    2 z₁ √t is inside; advection u(t, 0) = 1 (inflow), u(t, 1) = 0 until the step 1/2 + a t arrives;
    burgers u(t, −1) = a (inflow), u(t, 1) = 0 until the shock (a t − 1)/2 arrives. The conditioned mean takes
    them exactly. Heat, periodic, has none: dirichlet_constraint refuses it by name."""
    t = np.array([0.02, 0.05, 0.09])
    cases = {
        "pme": ({"m": 3.0}, np.stack([(3.0 * t) ** (1 / 3), np.zeros_like(t)], axis=1)),
        "stefan": ({"p_star": 0.6}, np.stack([np.ones_like(t), np.zeros_like(t)], axis=1)),
        "advection": ({"a": 2.0}, np.stack([np.ones_like(t), np.zeros_like(t)], axis=1)),
        "burgers": ({"a": 2.0}, np.stack([np.full_like(t, 2.0), np.zeros_like(t)], axis=1)),
    }
    rng = np.random.default_rng(13)
    for name, (params, ends) in cases.items():
        prob = pdes.get(name)
        x = np.linspace(*prob.x_domain, 11)
        G, b = dirichlet_constraint(prob, params, t, x)
        np.testing.assert_allclose(b, ends, rtol=1e-14, atol=0, err_msg=name)
        mean, var = rng.normal(size=(t.size, x.size)), rng.uniform(0.1, 1.0, (t.size, x.size))
        m, _ = condition(mean, var, G, b)
        np.testing.assert_allclose(m[:, [0, -1]], ends, rtol=1e-14, atol=1e-15, err_msg=name)
    with pytest.raises(ValueError, match="'heat' has boundary 'periodic'"):
        dirichlet_constraint(pdes.get("heat"), {"k": 1.0}, t, np.linspace(*pdes.get("heat").x_domain, 11))


def test_value_and_periodic_constraints():
    G, b = value_constraint(5, [0, 3], np.array([[1.0, 2.0]]))
    assert G.shape == (1, 2, 5) and G[0, 1, 3] == 1.0 and G.sum() == 2.0
    with pytest.raises(ValueError, match="distinct"):
        value_constraint(5, [1, 1], np.zeros(2))
    with pytest.raises(ValueError, match="indices must lie"):
        value_constraint(5, [5], np.zeros(1))
    x = np.linspace(0, 1, 6)
    Gp, bp = periodic_constraint(3, x, (0.0, 1.0))
    mean = np.arange(18.0).reshape(3, 6)
    m, _ = condition(mean, np.ones((3, 6)), Gp, bp)
    np.testing.assert_allclose(m[:, 0], m[:, -1], rtol=1e-14)


def test_per_row_noise_and_empty_constraint_set():
    rng = np.random.default_rng(13)
    mean, var, full, G, b = _random_case(rng)
    k = G.shape[0]
    noise = rng.uniform(0.1, 1.0, k) * var.max()
    S = G @ full @ G.T + np.diag(noise)
    K = full @ G.T @ np.linalg.inv(S)
    m, c = condition(mean, full, G, b, noise_var=noise)
    np.testing.assert_allclose(m, mean - K @ (G @ mean - b), rtol=1e-9, atol=1e-9 * np.abs(mean).max())
    np.testing.assert_allclose(c, full - K @ G @ full, rtol=0, atol=1e-9 * np.abs(full).max())
    m0, v0 = condition(mean, var, np.zeros((0, mean.size)), np.zeros(0))
    np.testing.assert_array_equal(m0, mean)
    np.testing.assert_array_equal(v0, var)
