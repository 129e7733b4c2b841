"""ProbConserv end to end on the Stefan problem with tiny sizes: generate → train → constrain → evaluate.

Guarantees checked: ProbConserv and HardC conserve mass exactly (G μ' = b, so the mean |CE| is
round-off, ≤ 1e-10) while the unconstrained black box does not; every ProbConserv posterior sample of
the last time slice conserves mass too; the metrics files are flat {name: finite float}; a checkpoint of
another case and a model that predicts NaN variance are rejected with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import threading
import weakref
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from physml import stages
from physml.config import SeedsPerProfile, SplitSizes, load_params
from physml.data import MARKER
from physml.experiments import PREDICTIONS_FILE
from physml.experiments import probconserv as pc

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ["none", "softc", "hardc", "probconserv", "probconserv_mixture", "probconserv_nonnegative",
               "probconserv_trained"]


def tiny_params():
    """params.yaml with tiny quick sizes: 48 train / 8 val / 8 test functions, 2-epoch networks of width 8."""
    base = load_params(ROOT / "params.yaml").with_profile("quick")
    sizes = base.cases["stefan"].sizes.model_copy(update={"quick": SplitSizes(train=48, val=8, test=8)})
    cases = {**base.cases, "stefan": base.cases["stefan"].model_copy(update={"sizes": sizes})}
    anp = base.models.anp.quick
    anp = anp.model_copy(update={"hidden": 8, "latent": 8, "n_latent_samples": 4,
                                 "train": anp.train.model_copy(update={"epochs": 2, "batch_size": 16})})
    ens = base.models.ensemble.quick
    ens = ens.model_copy(update={"members": 2, "hidden": 8, "layers": 1,
                                 "train": ens.train.model_copy(update={"epochs": 2, "batch_size": 16})})
    models = base.models.model_copy(update={
        "anp": base.models.anp.model_copy(update={"quick": anp, "cases": {}}),
        "ensemble": base.models.ensemble.model_copy(update={"quick": ens, "cases": {}}),
    })
    matrix = base.matrix.model_copy(update={"probconserv": base.matrix.probconserv.model_copy(update={"constraints": CONSTRAINTS})})
    return base.model_copy(update={"cases": cases, "models": models, "matrix": matrix})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pc")
    params = tiny_params()
    stages.generate("stefan", params, root, progress=False)
    out = {"root": root, "params": params}
    for model in ("anp", "ensemble"):
        stages.train("stefan", model, params, root, progress=False)
        pred = stages.constrain("stefan", model, params, root)
        out[model] = {"pred": pred, "metrics": stages.evaluate("stefan", model, params, root)}
    return out


@pytest.mark.parametrize("model", ["anp", "ensemble"])
def test_round_trip_writes_checkpoints_predictions_metrics_and_figures(run: dict, model: str) -> None:
    lay = stages.Layout(run["root"], "quick")
    models = lay.models("stefan", model)
    assert all((models / f"{name}.pt").is_file() for name in ("plain", "softc", "probconserv_trained"))
    summary = json.loads((models / "train_summary.json").read_text())
    assert summary["plain"]["epochs"] == 2 and math.isfinite(summary["softc"]["best_val"])
    assert math.isfinite(summary["probconserv_trained"]["best_val"])
    with h5py.File(run[model]["pred"], "r") as fh:
        assert sorted(fh) == sorted(CONSTRAINTS)
        grid = load_params(ROOT / "params.yaml").with_profile("quick").test_grid("stefan")
        nt, nx = grid.nt, grid.nx  # the test split's regular target grid
        assert fh["probconserv/mean"].shape == (8, nt, nx) and fh["probconserv/samples"].shape[::2] == (8, nx)
    metrics_dir = lay.metrics("stefan", model)
    for c in CONSTRAINTS:
        data = json.loads((metrics_dir / f"{c}.json").read_text())
        assert data == run[model]["metrics"][c]
        assert all(isinstance(v, float) and math.isfinite(v) for v in data.values())  # flat DVC metrics
        assert {"mse", "conservation_error", "log_likelihood", "crps", "coverage_50", "coverage_90",
                "shock_abs_error"} <= set(data)
        assert 0.0 <= data["coverage_50"] <= data["coverage_90"] <= 1.0
    for name in ("mass_over_time.png", "stefan_profiles.png", "shock_position.png"):
        png = metrics_dir / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not list(metrics_dir.glob(".evaluate.*"))  # staging removed


@pytest.mark.parametrize("model", ["anp", "ensemble"])
def test_probconserv_and_hardc_conserve_mass_exactly_the_black_box_does_not(run: dict, model: str) -> None:
    m = run[model]["metrics"]
    assert m["probconserv"]["conservation_error"] <= 1e-10
    assert m["hardc"]["conservation_error"] <= 1e-10
    assert m["none"]["conservation_error"] > 1e3 * max(m["probconserv"]["conservation_error"], 1e-14)
    assert m["none"]["conservation_error"] > 1e-4  # a black box misses the mass visibly, not at round-off
    # every ProbConserv posterior sample of the last slice satisfies G u = b (zero variance along G)
    arrays = pc._load_split(stages.Layout(run["root"], "quick").data("stefan"), "test", "stefan", "quick")
    G, b = pc.conservation_system("stefan", arrays)
    with h5py.File(run[model]["pred"], "r") as fh:
        samples = fh["probconserv/samples"][...]
        mean, cov = fh["probconserv/mean"][:, -1], fh["probconserv/cov_last"][...]
        mass_var = {c: fh[f"{c}/mass_var"][...] for c in ("none", "probconserv")}
    ce = np.einsum("nm,nsm->ns", G[:, -1, 0], samples) - b[:, -1]
    assert np.max(np.abs(ce)) < 1e-12
    # ... and they are draws of the posterior N(μ', Σ'), not merely some projection onto G u = b: their mean
    # within 5 Monte Carlo standard errors of μ' at every point, their variances within ±50 % of diag Σ' (8σ)
    s = samples.shape[1]
    var = np.diagonal(cov, axis1=-2, axis2=-1)
    assert np.all(np.abs(samples.mean(1) - mean) <= 5 * np.sqrt(var / s) + 1e-9)
    wide = var > 1e-6 * var.max()
    ratio = samples.var(1, ddof=1)[wide] / var[wide]
    assert 0.5 < ratio.min() and ratio.max() < 1.5, (ratio.min(), ratio.max())
    # the mass of a ProbConserv slice has no variance (G Σ' Gᵀ = 0), the black box's has
    assert mass_var["probconserv"].max() <= 1e-12 * mass_var["none"].max() and mass_var["none"].min() > 0


@pytest.mark.parametrize("model", ["anp", "ensemble"])
def test_stored_constraints_are_the_textbook_updates_of_the_stored_black_box(run: dict, model: str) -> None:
    """On the last slice, from the stored black box N(μ, Σ) (/none/mean, /none/cov_last) and the stored G, b:
    HardC is the orthogonal projection μ − Gᵀ(G Gᵀ)⁻¹(G μ − b) with Σ unchanged; ProbConserv is the Gaussian
    update μ − Σ Gᵀ(G Σ Gᵀ)⁻¹(G μ − b), Σ − Σ Gᵀ(G Σ Gᵀ)⁻¹ G Σ (Eq. 5), written out here in numpy. Each would
    fail for the other's weighting: both conserve mass, so the conservation checks alone cannot tell them apart."""
    arrays = pc._load_split(stages.Layout(run["root"], "quick").data("stefan"), "test", "stefan", "quick")
    G, b = pc.conservation_system("stefan", arrays)
    g, c = G[:, -1], b[:, -1]  # (N, k, nx), (N, k)
    with h5py.File(run[model]["pred"], "r") as fh:
        mu, cov = fh["none/mean"][:, -1], fh["none/cov_last"][...]
        got = {k: (fh[f"{k}/mean"][:, -1], fh[f"{k}/cov_last"][...]) for k in ("hardc", "probconserv")}
    r = np.einsum("nkx,nx->nk", g, mu) - c
    gt = np.swapaxes(g, 1, 2)
    hardc = mu - np.einsum("nxk,nk->nx", gt, np.linalg.solve(g @ gt, r[..., None])[..., 0])
    gain = cov @ gt @ np.linalg.inv(g @ cov @ gt)  # Σ Gᵀ (G Σ Gᵀ)⁻¹, (N, nx, k)
    pc_mean, pc_cov = mu - np.einsum("nxk,nk->nx", gain, r), cov - gain @ g @ cov
    scale = np.abs(mu).max()
    np.testing.assert_allclose(got["hardc"][0], hardc, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(got["hardc"][1], cov, rtol=0, atol=0)
    np.testing.assert_allclose(got["probconserv"][0], pc_mean, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(got["probconserv"][1], pc_cov, rtol=0, atol=1e-10 * np.abs(cov).max())
    assert np.abs(hardc - pc_mean).max() > 1e-6 * scale  # the two weightings differ on this data


def test_conditioned_mixture_equals_mixing_the_dense_conditioned_components() -> None:
    """conditioned_mixture's rank-k form against each component's dense Σ'_s (condition with full_cov), mixed
    by the law of total variance: (1/S) Σ_s Σ'_s + (1/S) Σ_s (μ'_s − μ')(μ'_s − μ')ᵀ."""
    from physml.constraints import condition

    rng = np.random.default_rng(3)
    means, variances = torch.tensor(rng.normal(size=(6, 2, 3, 9))), torch.tensor(rng.uniform(0.01, 1.0, (6, 2, 3, 9)))
    G, b = rng.uniform(0.05, 0.2, (2, 3, 1, 9)), rng.normal(size=(2, 3, 1))
    got = pc.conditioned_mixture(means, variances, G, b)
    parts = [condition(means[s].numpy(), variances[s].numpy(), G, b, full_cov=True) for s in range(6)]
    mu = np.stack([m for m, _ in parts])
    dev = mu - mu.mean(0)
    expected = np.mean([c for _, c in parts], axis=0) + np.einsum("sbti,sbtj->btij", dev, dev) / 6
    np.testing.assert_allclose(got.mean.numpy(), mu.mean(0), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(got.cov.numpy(), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.einsum("btki,btij,btkj->bt", G, got.cov.numpy(), G), 0.0, atol=1e-15)


def test_conditioned_mixture_with_a_bound_equals_the_dense_construction() -> None:
    """With ``lower``: each component's held points (clamp_to_bound) at 0 with their prior variance, the rest
    conditioned densely on g·u = b (condition with full_cov on the clamped Gaussian), then mixed; the mean holds
    the mass, nothing is below 0, and G Σ' Gᵀ is the mean over components of Σ over held points of g² σ²."""
    from physml.constraints import clamp_to_bound, condition

    rng = np.random.default_rng(4)
    means = torch.tensor(rng.normal(0.2, 0.5, (5, 2, 3, 8)))
    variances = torch.tensor(rng.uniform(0.01, 1.0, (5, 2, 3, 8)))
    G, b = rng.uniform(0.05, 0.2, (2, 3, 1, 8)), rng.uniform(0.02, 0.2, (2, 3, 1))
    got = pc.conditioned_mixture(means, variances, G, b, lower=0.0)
    held_mean, held_var = (a.numpy() for a in clamp_to_bound(means, variances, torch.tensor(G), torch.tensor(b)))
    assert (held_var == 0).any() and (held_var > 0).any()  # the bound binds on some points, not all
    parts = [condition(held_mean[s], held_var[s], G, b, full_cov=True) for s in range(5)]
    mu = np.stack([m for m, _ in parts])
    prior_at_held = np.where(held_var == 0, variances.numpy(), 0.0)
    covs = [c + np.einsum("...i,ij->...ij", prior_at_held[s], np.eye(8)) for s, (_, c) in enumerate(parts)]
    dev = mu - mu.mean(0)
    expected = np.mean(covs, axis=0) + np.einsum("sbti,sbtj->btij", dev, dev) / 5
    np.testing.assert_allclose(got.mean.numpy(), mu.mean(0), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(got.cov.numpy(), expected, rtol=1e-12, atol=1e-14)
    g = G[:, :, 0]
    np.testing.assert_allclose((g * got.mean.numpy()).sum(-1), b[..., 0], rtol=0, atol=1e-14)
    assert got.mean.numpy().min() >= -1e-14
    np.testing.assert_allclose(np.einsum("bti,btij,btj->bt", g, got.cov.numpy(), g),
                               (g**2 * prior_at_held).sum(-1).mean(0), rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("model", ["anp", "ensemble"])
@pytest.mark.parametrize(("constraint", "checkpoint"), [("probconserv_trained", "probconserv_trained.pt"),
                                                        ("probconserv_mixture", "plain.pt")])
def test_per_component_probconserv_updates_each_component_then_mixes(run: dict, model: str, constraint: str,
                                                                      checkpoint: str) -> None:
    """probconserv_trained (the twin trained through the constrained likelihood) and probconserv_mixture (the
    plain network: the paper's ProbConserv-ANP), rebuilt from their checkpoints: each component (latent draw,
    member) N(μ_s, diag v_s) is conditioned on g·u = b, written out
    (μ'_s = μ_s − v_s g (g·μ_s − b)/(g v_s g), Σ'_s = diag v_s − (v_s g)(v_s g)ᵀ/(g v_s g)), then mixed by the law
    of total variance; the result conserves mass exactly, with no variance in the mass, and its posterior draws
    conserve it too."""
    from physml.models.anp import function_seeds

    lay, params = stages.Layout(run["root"], "quick"), run["params"]
    # the tiny ANP draws 4 latent samples (tests/conftest.py); an ensemble's members draw none
    assert pc.latent_draws(params, "stefan", "anp") == 4 and pc.latent_draws(params, "stefan", "ensemble") == 1
    arrays = pc._load_split(lay.data("stefan"), "test", "stefan", "quick")
    G, b = pc.conservation_system("stefan", arrays)
    net = pc._load_model(lay.models("stefan", model) / checkpoint, "stefan", model, "quick")
    assert net.config.constrained_likelihood == (constraint == "probconserv_trained")
    n = arrays["target_u"].shape[0]
    n_samples = pc.latent_draws(params, "stefan", model)
    components = net.predict_components(
        *(arrays[k] for k in ("context_t", "context_x", "context_u", "target_t", "target_x")), n_samples=n_samples,
        seed=function_seeds(params.seed, range(n)))
    assert all(a.dtype == torch.float64 for a in components)
    means, variances = (a.numpy() for a in components)
    g = G[:, :, 0]
    vg = variances * g
    mass_var = (vg * g).sum(-1, keepdims=True)
    conditioned = means - vg * ((g * means).sum(-1, keepdims=True) - b) / mass_var
    within = (variances - vg**2 / mass_var).mean(0)
    mean, var = conditioned.mean(0), within + conditioned.var(0)
    with h5py.File(run[model]["pred"], "r") as fh:
        stored = {k: fh[f"{constraint}/{k}"][...] for k in ("mean", "var", "mass_var", "samples")}
        post_hoc = fh["probconserv/mean"][...]
    np.testing.assert_allclose(stored["mean"], mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stored["var"], var, rtol=1e-9, atol=1e-14)
    assert not np.allclose(stored["mean"], post_hoc)  # per component, not the update of the mixture's moments
    assert run[model]["metrics"][constraint]["conservation_error"] <= 1e-10
    assert stored["mass_var"].max() <= 1e-12 * var.max()
    ce = np.einsum("nm,nsm->ns", g[:, -1], stored["samples"]) - b[:, -1]
    assert np.max(np.abs(ce)) < 1e-13 * np.abs(b).max(), np.max(np.abs(ce))
    # the draws are this posterior's, not the post hoc update's: its stored N(μ', Σ') at the last time
    # drawn with the run's seed gives them, put back on {g·u = b} by a move of √round-off (drawn through the
    # square root of a singular Σ'), and their mean is within 5 Monte Carlo standard errors of μ'
    with h5py.File(run[model]["pred"], "r") as fh:
        cov_last = fh[f"{constraint}/cov_last"][...]
    draws = pc._final_slice_samples(stored["mean"][:, -1], cov_last, stored["samples"].shape[1], params.seed)
    off = np.einsum("nm,nsm->ns", g[:, -1], draws) - b[:, -1]
    assert np.max(np.abs(off)) < 1e-6 * np.abs(b).max()
    projected = draws - g[:, None, -1] * (off / (g[:, -1] ** 2).sum(-1, keepdims=True))[..., None]
    np.testing.assert_allclose(stored["samples"], projected, rtol=0, atol=1e-13)
    s = stored["samples"].shape[1]
    assert np.all(np.abs(stored["samples"].mean(1) - mean[:, -1]) <= 5 * np.sqrt(var[:, -1] / s) + 1e-9)


@pytest.mark.parametrize("model", ["anp", "ensemble"])
def test_probconserv_nonnegative_keeps_each_component_nonnegative_and_the_mass_exact(run: dict, model: str) -> None:
    """Stefan's u ≥ 0: each component of the plain network, clamped where its most probable u on {g·u = b, u ≥ 0}
    sits at 0 (clamp_to_bound), conditioned on g·u = b and mixed, is what the file holds: a mean ≥ 0 with the mass
    exact (bound_violation 0, conservation error at round-off), the held points keeping their prior variance; on
    the slices where no component reaches 0 it is probconserv_mixture's. A signed case has no bound."""
    from physml.constraints import clamp_to_bound
    from physml.models.anp import function_seeds

    assert pc.lower_bound("stefan") == 0.0 and pc.lower_bound("heat") is None
    assert pc._applies(pc.NONNEGATIVE, "stefan") and not pc._applies(pc.NONNEGATIVE, "heat")  # heat: the mixture
    assert pc._applies(pc.PER_COMPONENT, "heat")
    lay, params = stages.Layout(run["root"], "quick"), run["params"]
    arrays = pc._load_split(lay.data("stefan"), "test", "stefan", "quick")
    G, b = pc.conservation_system("stefan", arrays)
    net = pc._load_model(lay.models("stefan", model) / "plain.pt", "stefan", model, "quick")
    n_samples = pc.latent_draws(params, "stefan", model)
    means, variances = net.predict_components(
        *(arrays[k] for k in ("context_t", "context_x", "context_u", "target_t", "target_x")), n_samples=n_samples,
        seed=function_seeds(params.seed, range(arrays["target_u"].shape[0])))
    clamped_mean, clamped_var = (a.numpy() for a in clamp_to_bound(means, variances, torch.as_tensor(G),
                                                                      torch.as_tensor(b), 0.0))
    g = G[:, :, 0]
    vg = clamped_var * g
    expected = clamped_mean - vg * ((g * clamped_mean).sum(-1, keepdims=True) - b) / (vg * g).sum(-1, keepdims=True)
    # the covariance: each component's conditioned one, its held points keeping their prior variance σ_s²
    within = (clamped_var - vg**2 / (vg * g).sum(-1, keepdims=True) + (variances.numpy() - clamped_var)).mean(0)
    with h5py.File(run[model]["pred"], "r") as fh:
        stored, mixture = fh["probconserv_nonnegative/mean"][...], fh["probconserv_mixture/mean"][...]
        stored_var = fh["probconserv_nonnegative/var"][...]
    np.testing.assert_allclose(stored, expected.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stored_var, within + expected.var(0), rtol=1e-9, atol=1e-14)
    assert stored.min() >= -1e-12
    # its posterior draws keep the bound too, and the mass (the Gaussian draws of N(μ', Σ') dipped below 0 at the
    # held points, which keep their prior variance)
    with h5py.File(run[model]["pred"], "r") as fh:
        samples = fh["probconserv_nonnegative/samples"][...]
    assert samples.min() >= -1e-12, samples.min()
    ce = np.einsum("nm,nsm->ns", g[:, -1], samples) - b[:, -1]
    assert np.max(np.abs(ce)) < 1e-13 * np.abs(b).max(), np.max(np.abs(ce))
    metrics = run[model]["metrics"]
    assert metrics["probconserv_nonnegative"]["bound_violation"] <= 1e-12
    assert metrics["probconserv_nonnegative"]["draw_bound_violation"] == pytest.approx(max(0.0, -samples.min()),
                                                                                       abs=1e-300)
    assert metrics["probconserv_nonnegative"]["conservation_error"] <= 1e-10
    untouched = (clamped_var > 0).all(axis=(0, -1))  # (N, nt): no component has a point at 0 there
    np.testing.assert_allclose(stored[untouched], mixture[untouched], rtol=1e-9, atol=1e-12)


def test_nonnegative_posterior_draws_are_each_components_draws_through_its_bounded_map() -> None:
    """probconserv_nonnegative's Stefan draws (perturb-and-MAP per component): every draw ≥ 0 and on g·u = b;
    far from the bound they are exact draws of the mixture of the components each conditioned on g·u = b
    (Matheron's rule), whose mean μ' = (1/S) Σ_s μ'_s and covariance (1/S) Σ_s Σ'_s + the spread of the μ'_s they
    match within Monte Carlo error; near it, the draws sit at 0 exactly where their perturbed MAP does."""
    rng = np.random.default_rng(5)
    n_comp, n_fun, nx, n = 3, 2, 6, 20000
    G = rng.uniform(0.05, 0.3, (n_fun, 1, nx))
    g = G[:, 0]
    means, variances = rng.normal(5.0, 1.0, (n_comp, n_fun, nx)), rng.uniform(0.01, 0.05, (n_comp, n_fun, nx))
    b = (g * means.mean(0)).sum(-1, keepdims=True) * 0.98
    draws = pc._nonnegative_samples(means, variances, G, b, 0.0, n, seed=3)
    assert draws.shape == (n_fun, n, nx) and draws.min() > 1.0  # far from 0: no draw is held
    np.testing.assert_allclose(np.einsum("fm,fsm->fs", g, draws), np.broadcast_to(b, (n_fun, n)), rtol=1e-14)
    vg = variances * g
    shift = ((g * means).sum(-1, keepdims=True) - b) / (vg * g).sum(-1, keepdims=True)
    mu_s = means - vg * shift  # (S, F, nx)
    cov_s = np.einsum("sfi,ij->sfij", variances, np.eye(nx)) - np.einsum("sfi,sfj->sfij", vg, vg) / (
        (vg * g).sum(-1)[..., None, None])
    mu = mu_s.mean(0)
    cov = cov_s.mean(0) + np.einsum("sfi,sfj->fij", mu_s - mu, mu_s - mu) / n_comp
    for f in range(n_fun):
        sd = np.sqrt(np.diag(cov[f]))
        assert np.all(np.abs(draws[f].mean(0) - mu[f]) <= 5 * sd / np.sqrt(n))
        sample_cov = np.cov(draws[f], rowvar=False)
        se = np.sqrt((np.outer(sd, sd) ** 2 + cov[f] ** 2) / n)  # of a normal sample covariance, entry by entry
        assert np.all(np.abs(sample_cov - cov[f]) <= 6 * se + 1e-12)
    # near the bound: a thin layer of mass, so most points of most draws are held at 0 exactly
    means = rng.normal(0.05, 0.1, (n_comp, n_fun, nx))
    b = np.full((n_fun, 1), 0.02)
    draws = pc._nonnegative_samples(means, np.full_like(means, 0.05), G, b, 0.0, 2000, seed=4)
    assert draws.min() >= 0.0 and (draws == 0.0).mean() > 0.3
    np.testing.assert_allclose(np.einsum("fm,fsm->fs", g, draws), 0.02, rtol=1e-13)


@pytest.mark.parametrize("model", ["anp", "ensemble"])
def test_params_min_std_and_constraint_noise_var_reach_the_networks(model: str) -> None:
    """``models.<model>.min_std`` is every network's σ floor; ``constraint_noise_var`` the σ_G² of the trained
    twin's likelihood only (the plain and SoftC networks have no constrained likelihood to give it to)."""
    from physml.models import build_model

    base = tiny_params()
    per_profile = getattr(base.models, model)
    settings = per_profile.quick.model_copy(update={"min_std": 0.02, "constraint_noise_var": 0.05})
    params = base.model_copy(update={"models": base.models.model_copy(
        update={model: per_profile.model_copy(update={"quick": settings})})})
    nets = {kind: build_model(pc.model_config("stefan", model, params, **flags))
            for kind, flags in (("plain", {}), ("softc", {"softc": True}), ("trained", {"constrained": True}))}
    for kind, net in nets.items():
        assert net.config.min_std == 0.02, kind
        assert net.config.constraint_noise_var == (0.05 if kind == "trained" else 0.0), kind
        assert net.config.constrained_likelihood == (kind == "trained"), kind


@pytest.mark.parametrize("model", ["anp", "ensemble"])
def test_metrics_recomputed_from_the_predictions_the_stored_mass_and_the_exact_front(run: dict, model: str) -> None:
    """What ``evaluate`` reports, rebuilt from the files: the constraint's b is the mass stored at generation
    (not recomputed the way the constraint is); ProbConserv's variance is its posterior's, diag Σ' of the
    stored last-slice covariance and below the black box's; the final-time MSE is taken at the last target
    time; the shock metrics are the front of each posterior sample at level p*/2 (and at 0) on the last slice
    against the exact x*(t) = 2 z₁ √t at that slice's time, and whether x* lies between the fronts' 5 % and
    95 % quantiles; the exact solution's conservation error is its own trapezoid mass against b; the MSE per
    test value of p* is over that value's functions, and so is its 90 % coverage (pooled and where u > 0); the CRPS
    is the closed form's mean over the targets."""
    from scipy.stats import norm

    from physml.metrics import shock_positions
    from physml.pdes import get

    arrays = pc._load_split(stages.Layout(run["root"], "quick").data("stefan"), "test", "stefan", "quick")
    G, b = pc.conservation_system("stefan", arrays)
    np.testing.assert_allclose(b[..., 0], arrays["mass"], rtol=1e-12, atol=1e-14)
    stefan = get("stefan")
    with h5py.File(run[model]["pred"], "r") as fh:
        pred = {c: {k: fh[f"{c}/{k}"][...] for k in ("mean", "var", "samples", "cov_last")} for c in CONSTRAINTS}
    posterior, prior = pred["probconserv"], pred["none"]
    np.testing.assert_allclose(posterior["var"][:, -1], np.diagonal(posterior["cov_last"], axis1=-2, axis2=-1),
                               rtol=1e-10, atol=1e-14)
    assert np.all(posterior["var"] <= prior["var"] * (1 + 1e-9) + 1e-15)
    assert float((prior["var"] - posterior["var"]).max()) > 1e-6
    true = arrays["target_u"]
    for c in CONSTRAINTS:
        m = run[model]["metrics"][c]
        assert m["mse_final_time"] == pytest.approx(float(np.mean((pred[c]["mean"][:, -1] - true[:, -1]) ** 2)), rel=1e-12)
        truth_ce = np.mean(np.abs(np.einsum("ntkx,ntx->ntk", G, true) - b))
        assert m["conservation_error_truth"] == pytest.approx(float(truth_ce), rel=1e-12)
        # the CRPS of N(μ, var) per target, σ [z (2Φ(z) − 1) + 2 φ(z) − 1/√π], z = (u − μ)/σ, over every target
        sigma = np.sqrt(pred[c]["var"])
        z = (true - pred[c]["mean"]) / sigma
        crps = sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
        assert m["crps"] == pytest.approx(float(np.mean(crps)), rel=1e-10)
        # p* is tested at the values {0.5, 0.6}: the MSE over each value's functions, which pool to the whole
        p_star = arrays["params"][:, 0]
        per_value = []
        for value in (0.5, 0.6):
            block = p_star == value
            assert block.sum() == true.shape[0] // 2
            per_value.append(m[f"mse_p_star_{value:g}"])
            assert per_value[-1] == pytest.approx(float(np.mean((pred[c]["mean"][block] - true[block]) ** 2)), rel=1e-12)
        assert np.mean(per_value) == pytest.approx(m["mse"], rel=1e-12)
        # Stefan keeps u >= 0: the 90 % coverage also over the targets ahead of the bound alone (u > 0), where the
        # dry region (u = 0 exactly, ahead of the front) does not pad it, and per test value (p* = 0.5 lies outside
        # the training range, so its coverage is read apart)
        assert 0 < (true > 0).sum() < true.size
        _assert_stefan_coverages(m, true, pred[c]["mean"], pred[c]["var"], p_star)
        for suffix, fraction in (("", 0.5), ("_level0", 0.0)):
            means, fronts, covered = [], [], []
            for i in range(true.shape[0]):
                p_star = float(arrays["params"][i, 0])
                pos = shock_positions(pred[c]["samples"][i], arrays["target_x"][i, -1], fraction * p_star)
                front = float(stefan.front_position({"p_star": p_star}, arrays["target_t"][i, -1:])[0])
                means.append(pos.mean())
                fronts.append(front)
                covered.append(np.quantile(pos, 0.05) <= front <= np.quantile(pos, 0.95))
            assert m[f"shock_mean{suffix}"] == pytest.approx(float(np.mean(means)), rel=1e-12)
            assert m[f"shock_abs_error{suffix}"] == pytest.approx(float(np.mean(np.abs(np.subtract(means, fronts)))),
                                                                  rel=1e-12)
            assert m[f"shock_coverage_90{suffix}"] == float(np.mean(covered))
        assert m["shock_true"] == pytest.approx(float(np.mean(fronts)), rel=1e-12)


def _assert_stefan_coverages(m: dict, true: np.ndarray, mean: np.ndarray, var: np.ndarray, p_star: np.ndarray) -> None:
    """A Stefan metrics file's 90 % coverages, recomputed from its predictive (N, nt, nx): pooled, over the targets
    where u > 0, and both per test value p* in {0.5, 0.6} (the functions of that value)."""
    from scipy.stats import norm

    wet = true > 0
    inside = np.abs(true - mean) <= norm.ppf(0.95) * np.sqrt(var)
    assert m["coverage_90"] == float(np.mean(inside))
    assert m["coverage_90_above_bound"] == float(np.mean(inside[wet]))
    for value in (0.5, 0.6):
        block = p_star == value
        assert block.any()
        assert m[f"coverage_90_p_star_{value:g}"] == float(np.mean(inside[block]))
        assert m[f"coverage_90_above_bound_p_star_{value:g}"] == float(np.mean(inside[block][wet[block]]))


def test_evaluate_reads_the_coverage_where_the_intervals_miss(run: dict, tmp_path: Path) -> None:
    """The tiny networks' σ covers every target (all coverages 1.0), which no mask could tell apart. With each
    predictive's σ set to the median |error| where u > 0 over z_0.95 (so half the wet targets fall outside their
    90 % interval), ``evaluate`` reads coverages strictly between 0 and 1, the pooled one above the one where
    u > 0 (the dry targets' errors are smaller), each per test value over its own functions and wet targets."""
    from scipy.stats import norm

    lay = stages.Layout(run["root"], "quick")
    arrays = pc._load_split(lay.data("stefan"), "test", "stefan", "quick")
    true, p_star = arrays["target_u"], arrays["params"][:, 0]
    wet = true > 0
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    shutil.copy(run["ensemble"]["pred"], pred_dir / PREDICTIONS_FILE)
    with h5py.File(pred_dir / PREDICTIONS_FILE, "r+") as fh:
        for c in CONSTRAINTS:
            scale = np.median(np.abs(fh[f"{c}/mean"][...] - true)[wet]) / norm.ppf(0.95)
            fh[f"{c}/var"][...] = np.full(true.shape, scale**2)
        narrowed = {c: (fh[f"{c}/mean"][...], fh[f"{c}/var"][...]) for c in CONSTRAINTS}
    metrics = pc.evaluate("stefan", "ensemble", run["params"], lay.data("stefan"), pred_dir, tmp_path / "metrics")
    for c in CONSTRAINTS:
        m = metrics[c]
        assert 0 < m["coverage_90_above_bound"] < m["coverage_90"] < 1
        _assert_stefan_coverages(m, true, *narrowed[c], p_star)
        for value in (0.5, 0.6):
            assert m[f"coverage_90_above_bound_p_star_{value:g}"] < m[f"coverage_90_p_star_{value:g}"]


def test_coverage_above_the_bound_is_reported_only_where_there_is_a_bound_and_targets_above_it() -> None:
    """Targets at the bound with a tight σ are covered, the one above it is not: the pooled coverage counts the
    covered dry targets, ``coverage_90_above_bound`` only the target above the bound; without a bound (u changes
    sign), or with every target at the bound, the key is absent."""
    true = np.array([[[0.0, 0.0, 0.0, 1.0]]])  # (functions, times, positions)
    pred = {"mean": np.array([[[0.0, 0.0, 0.0, 0.5]]]), "var": np.full((1, 1, 4), 0.01)}
    G, b = np.ones((1, 1, 1, 4)), np.ones((1, 1, 1))
    bounded = pc._metrics(true, pred, G, b, lower=0.0)
    assert bounded["coverage_90"] == 0.75 and bounded["coverage_90_above_bound"] == 0.0
    assert "coverage_90_above_bound" not in pc._metrics(true, pred, G, b, lower=None)
    assert "coverage_90_above_bound" not in pc._metrics(np.zeros_like(true), pred, G, b, lower=0.0)


def test_coverage_per_test_value_splits_the_functions_and_keeps_the_bound_rule() -> None:
    """Two functions drawn at p* = 0.5 and 0.6: each value's coverage counts its own function's targets only;
    the above-bound key is absent without a bound and for a value whose targets all sit at the bound."""
    true = np.array([[[0.0, 1.0]], [[0.0, 0.0]]])  # (functions, times, positions)
    mean, var = np.array([[[0.0, 0.5]], [[0.0, 0.0]]]), np.full((2, 1, 2), 0.01)
    groups = {("p_star", 0.5): np.array([0]), ("p_star", 0.6): np.array([1]), ("p_star", 0.7): np.array([], int)}
    bounded = pc._per_value_coverage(groups, mean, var, true, 0.0)
    assert bounded == {"coverage_90_p_star_0.5": 0.5, "coverage_90_above_bound_p_star_0.5": 0.0,
                       "coverage_90_p_star_0.6": 1.0}
    assert pc._per_value_coverage(groups, mean, var, true, None) == {"coverage_90_p_star_0.5": 0.5,
                                                                     "coverage_90_p_star_0.6": 1.0}


@pytest.mark.parametrize("model", ["anp", "ensemble"])
def test_constrain_one_function_at_a_time_writes_the_same_predictions(run: dict, model: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """constrain holds one batch of functions' covariances at a time (the paper's would not fit in memory):
    batches of one function give the file of one batch for all. The ensemble's arrays are the same to the
    bit; the ANP draws each function's latent samples from that function's own seed, so its draws are the
    same too and only the network's float32 arithmetic on a batch of 1 instead of 8 may differ (at round-off)."""
    lay = stages.Layout(run["root"], "quick")
    nt, nx = run["params"].test_grid("stefan").nt, run["params"].test_grid("stefan").nx
    monkeypatch.setattr(pc, "PREDICT_COV_ENTRIES", nt * nx * nx)  # one function per batch
    # and no batch's covariance outlives it: when a prediction's next batch is made, its last one is gone
    left_alive: list[int] = []
    original = pc.predict_batches

    def watched(net, *args, **kwargs):
        refs: list[weakref.ref] = []  # this prediction's batches' covariances (plain: mixed and per component)
        for sl, mixed, conditioned, last in original(net, *args, **kwargs):
            left_alive.append(sum(r() is not None for r in refs))
            refs.extend(weakref.ref(p.cov) for p in (mixed, *conditioned.values()) if p is not None)
            yield pc.PredictedBatch(sl, mixed, conditioned, last)
            del mixed, conditioned, last

    # and each network runs once per batch: the plain one's components serve its mixture, probconserv_mixture
    # and probconserv_nonnegative
    from physml.models.anp import ComponentMixture  # the ANP's and the ensemble's predict_components

    calls: list[int] = []
    predict_components = ComponentMixture.predict_components

    def counted(net, *args, **kwargs):
        calls.append(id(net))
        return predict_components(net, *args, **kwargs)

    monkeypatch.setattr(pc, "predict_batches", watched)
    monkeypatch.setattr(ComponentMixture, "predict_components", counted)
    one = pc.constrain("stefan", model, run["params"], lay.data("stefan"), lay.models("stefan", model), tmp_path)
    # the plain network and two twins, 8 functions each
    assert len(left_alive) == 3 * 8 and set(left_alive) == {0}, left_alive
    assert len(calls) == 3 * 8 and sorted(calls.count(net) for net in set(calls)) == [8, 8, 8], calls
    with h5py.File(run[model]["pred"], "r") as whole, h5py.File(one, "r") as single:
        assert sorted(whole) == sorted(single) == sorted(CONSTRAINTS)
        for name in CONSTRAINTS:
            assert sorted(whole[name]) == sorted(single[name])
            for key in whole[name]:
                a, b = single[name][key][...], whole[name][key][...]
                if model == "ensemble" or not np.issubdtype(b.dtype, np.floating):
                    np.testing.assert_array_equal(a, b, err_msg=f"{name}/{key}")
                else:
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=max(1e-7 * np.abs(b).max(), 1e-15), err_msg=f"{name}/{key}")


def test_test_functions_of_no_listed_value_are_a_clear_error(run: dict) -> None:
    """Per-value metrics group the test functions by the values params.yaml lists; data drawn at another value
    (params edited after generation) is named, with the values allowed."""
    arrays = dict(pc._load_split(stages.Layout(run["root"], "quick").data("stefan"), "test", "stefan", "quick"))
    groups = pc._test_value_groups(run["params"], "stefan", arrays)
    assert sorted(groups) == [("p_star", 0.5), ("p_star", 0.6)]
    assert sorted(np.concatenate(list(groups.values())).tolist()) == list(range(arrays["params"].shape[0]))
    arrays["params"] = arrays["params"].copy()
    arrays["params"][3, 0] = 0.65
    with pytest.raises(ValueError, match=re.escape("stefan: test functions with p_star = [0.65] match none of "
                                                   "cases.stefan.parameters.p_star.test.values [0.5, 0.6]")):
        pc._test_value_groups(run["params"], "stefan", arrays)


def test_a_checkpoint_of_another_case_is_rejected(run: dict, tmp_path: Path) -> None:
    lay = stages.Layout(run["root"], "quick")
    model_dir = tmp_path / "models"
    shutil.copytree(lay.models("stefan", "ensemble"), model_dir)
    with pytest.raises(ValueError, match="trained on case 'stefan'; expected one of \\['heat'\\]"):
        pc._load_model(model_dir / "plain.pt", "heat", "ensemble", "quick")
    with pytest.raises(ValueError, match="holds a 'ensemble' network; expected a 'anp' model"):
        pc.constrain("stefan", "anp", run["params"], lay.data("stefan"), model_dir, tmp_path / "pred")
    assert not (tmp_path / "pred" / PREDICTIONS_FILE).exists()


def test_nan_variance_from_a_model_is_a_clear_error(run: dict, tmp_path: Path) -> None:
    lay = stages.Layout(run["root"], "quick")
    model_dir = tmp_path / "models"
    shutil.copytree(lay.models("stefan", "ensemble"), model_dir)
    payload = torch.load(model_dir / "plain.pt", weights_only=True)
    key = next(k for k in payload["model_state"] if k.endswith("decoder.0.bias"))
    payload["model_state"][key] = torch.full_like(payload["model_state"][key], float("nan"))
    torch.save(payload, model_dir / "plain.pt")
    with pytest.raises(ValueError, match=r"plain\.pt: the model's prediction .* is not a valid Gaussian .*NaN"):
        pc.constrain("stefan", "ensemble", run["params"], lay.data("stefan"), model_dir, tmp_path / "pred")
    assert not (tmp_path / "pred" / PREDICTIONS_FILE).exists()


def test_bad_inputs_name_the_field(run: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model: 'fno' is not a ProbConserv black box; allowed: anp, ensemble"):
        pc.train("stefan", "fno", run["params"], tmp_path, tmp_path / "m", progress=False)
    with pytest.raises(ValueError, match=r"no predictions .*predictions.h5; run `physml constrain --case stefan --model anp --profile quick` first"):
        pc.evaluate("stefan", "anp", run["params"], stages.Layout(run["root"], "quick").data("stefan"), tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_data_whose_generation_did_not_finish_are_not_trained_on(run: dict, tmp_path: Path) -> None:
    """Without the completion marker (a failed generation keeps the splits it finished) training stops
    before it writes anything."""
    data = tmp_path / "data"
    shutil.copytree(stages.Layout(run["root"], "quick").data("stefan"), data)
    (data / MARKER).unlink()
    with pytest.raises(ValueError, match=rf"{data}: no completion marker dataset.json: .* run `physml generate --case stefan --profile quick`$"):
        pc.train("stefan", "ensemble", run["params"], data, tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()


def test_training_twice_gives_an_identical_model_folder(run: dict, tmp_path: Path) -> None:
    """Initial weights and batch order are both seeded and nothing records wall-clock time or the writer: a
    fresh run, here from another thread (another temporary file name), reproduces the model folder byte for
    byte (so DVC skips the stages downstream of an identical retrain)."""
    params, root = run["params"], run["root"]
    lay = stages.Layout(root, "quick")
    again = tmp_path / "ensemble"
    worker = threading.Thread(target=pc.train, args=("stefan", "ensemble", params, lay.data("stefan"), again),
                              kwargs={"progress": False})
    worker.start()
    worker.join()
    first = lay.models("stefan", "ensemble")

    def digests(folder: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    by_the_stage = {stages.TRAINED_WITH}  # the stage's record of the settings, beside what train writes
    assert digests(again) == {k: v for k, v in digests(first).items() if k not in by_the_stage}
    assert "plain.pt" in digests(again)
    assert set(json.loads((tmp_path / "ensemble.seconds.json").read_text())) == {"plain", "softc", "probconserv_trained"}


def test_seed_study_retrains_the_plain_network_per_seed_and_reproduces_evaluate_at_the_project_seed(
        run: dict, tmp_path: Path) -> None:
    """The seed study: the project seed's MSEs are evaluate's (the same network and latent draws), every other
    seed trains the plain network alone, with its own seed (different weights, hence different MSEs), and only
    the post hoc constraints are studied; the per-value MSEs pool back to the overall one; ProbConserv's
    'ahead' count is recomputed from the lists."""
    base = run["params"]
    params = base.model_copy(update={"matrix": base.matrix.model_copy(update={
        "probconserv": base.matrix.probconserv.model_copy(update={"seeds": SeedsPerProfile(quick=2, paper=1)})})})
    assert params.study_seeds("probconserv") == [base.seed, base.seed + 1]
    lay = stages.Layout(run["root"], "quick")
    out = tmp_path / "seeds.json"
    study = pc.seed_study("stefan", "anp", params, lay.data("stefan"), lay.models("stefan", "anp"), tmp_path / "study",
                          out, progress=False)
    assert json.loads(out.read_text()) == study
    assert list(study["mse"]) == ["none", "hardc", "probconserv", "probconserv_mixture", "probconserv_nonnegative"]
    for c, errors in study["mse"].items():
        assert errors[0] == run["anp"]["metrics"][c]["mse"], c
        assert errors[1] != errors[0] and math.isfinite(errors[1])
        assert study["mse_mean"][c] == pytest.approx(np.mean(errors), rel=1e-12)
        assert study["mse_spread"][c] == pytest.approx(np.std(errors, ddof=1), rel=1e-12)
    assert sorted(p.name for p in (tmp_path / "study" / f"seed_{base.seed + 1}").glob("*.pt")) == ["plain.pt"]
    assert study["probconserv_ahead"] == sum(p <= f for p, f in zip(study["mse"]["probconserv"], study["mse"]["none"]))
    # stefan's test set is drawn at listed p* values: per-value MSEs, whose function-weighted mean is the MSE
    arrays = pc._load_split(lay.data("stefan"), "test", "stefan", "quick")
    groups = pc._test_value_groups(params, "stefan", arrays)
    weights = {pc.per_value_key("mse", p, v): idx.size for (p, v), idx in groups.items() if idx.size}
    assert set(study["mse_per_value"]) == set(weights)
    for c in study["mse"]:
        pooled = sum(weights[k] * study["mse_per_value"][k][c][1] for k in weights) / sum(weights.values())
        assert pooled == pytest.approx(study["mse"][c][1], rel=1e-12)
        assert [study["mse_per_value"][k][c][0] for k in weights] == [run["anp"]["metrics"][c][k] for k in weights]


def test_seed_study_without_the_project_seeds_network_is_a_clear_error(run: dict, tmp_path: Path) -> None:
    lay = stages.Layout(run["root"], "quick")
    with pytest.raises(ValueError, match="no plain network of the project seed; run `physml train --case stefan --model anp --profile quick` first"):
        pc.seed_study("stefan", "anp", run["params"], lay.data("stefan"), tmp_path / "empty", tmp_path / "study",
                      tmp_path / "seeds.json", progress=False)
    assert not (tmp_path / "seeds.json").exists()


@pytest.mark.parametrize("model", ["anp", "ensemble"])
def test_the_served_champion_predicts_what_the_constrain_stage_wrote(run: dict, model: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`physml track` registers the plain black box; loaded back as an MLflow pyfunc model and called on the
    test split with each post hoc constraint (the mass M(t) as the input ``mass``) at its default params, it
    gives the predictions file's mean and variance to the bit, so the served network is the evaluated one."""
    import mlflow.pyfunc

    from physml import tracking

    params, root = run["params"], run["root"]
    for var in ("PHYSML_TRACKING_URI", "MLFLOW_TRACKING_URI", "PHYSML_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PHYSML_PROJECT_DIR", str(tmp_path))  # the store here, not in the module's shared root
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stages.track("stefan", model, params, root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # where models:/ URIs resolve
    served = mlflow.pyfunc.load_model(f"models:/{tracking.registered_model_name('stefan', model, 'quick')}@champion")
    arrays = pc._load_split(stages.Layout(root, "quick").data("stefan"), "test", "stefan", "quick")
    _, b = pc.conservation_system("stefan", arrays)
    inputs = {k: arrays[k] for k in ("context_t", "context_x", "context_u", "target_t", "target_x")}
    with h5py.File(run[model]["pred"]) as f:
        for constraint in ("none", "hardc", "probconserv", "probconserv_mixture", "probconserv_nonnegative"):
            data = inputs if constraint == "none" else {**inputs, "mass": b[..., 0]}
            out = served.predict(data, params={"constraint": constraint})
            np.testing.assert_array_equal(out["mean"], f[constraint]["mean"][:], err_msg=constraint)
            np.testing.assert_array_equal(out["var"], f[constraint]["var"][:], err_msg=constraint)
