"""The Predictive type, mixture moments (law of total variance) and the deep ensemble."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from physml.models import DeepEnsemble, EnsembleConfig, Predictive, build_model, mixture
from physml.training import TrainConfig, fit, load_checkpoint, model_loss, seed_everything

from _synthetic import TWO_PI, heat_functions


def test_predictive_rejects_invalid_distributions() -> None:
    mean = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="mean contains NaN"):
        Predictive(torch.tensor([[0.0, float("nan")]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="var must be >= 0"):
        Predictive(mean, torch.tensor([[1.0, -1e-3, 1.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="var contains NaN"):
        Predictive(mean, torch.full((2, 3), float("inf")))
    with pytest.raises(ValueError, match="shape"):
        Predictive(mean, torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"var must have the shape of mean \(2, 3\), got \(3,\)"):
        Predictive(mean, torch.ones(3), cov=torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="symmetric"):
        Predictive(mean, cov=torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3))
    with pytest.raises(ValueError, match="numpy arrays or all torch"):
        Predictive(mean, np.ones((2, 3)))
    with pytest.raises(ValueError, match="give var"):
        Predictive(mean)
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    p = Predictive(torch.zeros(2), cov=cov)
    assert torch.equal(p.var, torch.tensor([2.0, 1.0]))
    assert np.allclose(p.to_numpy().std, np.sqrt([2.0, 1.0])) and p.to_numpy().mean.dtype == np.float64
    draws = p.sample(40_000, seed=1)
    assert np.allclose(np.cov(draws.T), cov.numpy(), atol=0.05)  # sampling error ~ 2/sqrt(4e4)
    # the draws go through Σ's symmetric root, continuous in Σ: round-off in Σ moves them by round-off (a
    # factor Q √Λ from eigh may rotate among near-equal eigenvalues and move them by O(1))
    near = torch.eye(4, dtype=torch.float64) + 1e-9 * torch.diag(torch.arange(4.0, dtype=torch.float64))
    bump = torch.zeros(4, 4, dtype=torch.float64)
    bump[0, 1] = bump[1, 0] = 1e-13
    a, b = Predictive(torch.zeros(4), cov=near).sample(200, seed=0), Predictive(torch.zeros(4), cov=near + bump).sample(200, seed=0)
    assert np.abs(a - b).max() < 1e-9


def test_mixture_moments_match_sampling_the_mixture() -> None:
    """Law of total (co)variance: the mixture's moments equal those of draws of (component, Gaussian)."""
    g = torch.Generator().manual_seed(0)
    means, variances = torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.1
    p = mixture(means, variances, full_cov=True)
    n = 200_000
    comp = torch.randint(0, 4, (n,), generator=g)
    draws = (means[comp] + variances[comp].sqrt() * torch.randn(n, 3, generator=g)).double().numpy()
    assert np.allclose(draws.mean(0), p.mean.numpy(), atol=0.01)
    assert np.allclose(np.cov(draws.T), p.cov.numpy(), atol=0.02)
    assert torch.all(p.var >= variances.double().mean(0))


def test_mixture_of_full_components_takes_their_mean_covariance() -> None:
    """Components with full covariances Σ_s (e.g. each conditioned on a constraint): cov = (1/S) Σ_s Σ_s +
    (1/S) Σ_s (μ_s − μ)(μ_s − μ)ᵀ, given the mean covariance; with diagonal Σ_s it is the diagonal mixture."""
    g = torch.Generator().manual_seed(1)
    means = torch.randn(5, 2, 4, generator=g, dtype=torch.float64)
    roots = torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64)
    covs = roots @ roots.mT
    p = mixture(means, None, full_cov=True, within_cov=covs.mean(0))
    dev = means - means.mean(0)
    expected = covs.mean(0) + torch.einsum("sbi,sbj->bij", dev, dev) / 5
    torch.testing.assert_close(p.cov, expected, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(p.var, torch.diagonal(expected, dim1=-2, dim2=-1), rtol=1e-13, atol=1e-13)
    variances = torch.rand(5, 2, 4, generator=g, dtype=torch.float64)
    diagonal = mixture(means, variances, full_cov=True)
    torch.testing.assert_close(mixture(means, None, full_cov=True, within_cov=torch.diag_embed(variances).mean(0)).cov,
                               diagonal.cov, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="variances .* or their mean covariance"):
        mixture(means, variances, within_cov=covs.mean(0))
    with pytest.raises(ValueError, match=r"within_cov must have shape \(2, 4, 4\)"):
        mixture(means, None, within_cov=covs)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> tuple[DeepEnsemble, Path]:
    torch.set_num_threads(1)
    seed_everything(0)
    config = EnsembleConfig(case="heat", members=3, hidden=32, layers=2, x_range=(0.0, TWO_PI)).to_dict()
    model = build_model(config)
    path = tmp_path_factory.mktemp("ens") / "ens.pt"
    fit(model, model_loss, heat_functions(300, 0), heat_functions(50, 1),
        TrainConfig(epochs=10, batch_size=16, lr=3e-3, device="cpu"), path, config, progress=False)
    return model, path


def test_ensemble_learns_and_its_variance_contains_the_members(ensemble: tuple[DeepEnsemble, Path]) -> None:
    model, path = ensemble
    b = default_collate(heat_functions(50, 2))
    args = (b["context_t"], b["context_x"], b["context_u"], b["target_t"], b["target_x"])
    pred = model.predict(*args, full_cov=True)
    mse = float(((pred.mean - b["target_u"].double()) ** 2).mean())
    baseline = float(((b["context_u"].mean(1)[:, None, None] - b["target_u"]) ** 2).mean())
    assert mse < baseline / 2, (mse, baseline)  # measured 0.03 vs 0.10
    from physml.models.anp import as_batch

    with torch.no_grad():
        means, variances = model.member_moments(as_batch(b, torch.device("cpu"), torch.float32))
    assert means.shape == (3,) + tuple(b["target_x"].shape)
    # mixture variance ≥ the members' mean aleatoric variance, equality iff members agree
    gap = pred.var - variances.double().mean(0)
    assert float(gap.min()) >= -1e-12 and float(gap.mean()) > 0
    assert torch.allclose(gap, means.double().var(0, unbiased=False), atol=1e-10)
    assert torch.allclose(torch.diagonal(pred.cov, dim1=-2, dim2=-1), pred.var)
    assert not torch.allclose(means[0], means[1])  # independent initialisations differ
    loaded, config, _ = load_checkpoint(path, build_model, expect_case="heat")
    assert config["members"] == 3 and torch.equal(loaded.predict(*args).mean, pred.mean)


def test_ensemble_config_is_validated() -> None:
    with pytest.raises(ValueError, match="members"):
        EnsembleConfig(case="heat", members=0)
    with pytest.raises(ValueError, match="min_std"):
        EnsembleConfig(case="heat", min_std=0.0)
    with pytest.raises(ValueError, match="unknown"):
        EnsembleConfig.from_dict({"case": "heat", "dropout": 0.1})
    with pytest.raises(ValueError, match="physics_weight"):
        EnsembleConfig(case="heat", physics_weight=-1.0)


def test_softc_ensemble_adds_the_conservation_penalty_of_the_member_mean_while_training() -> None:
    """loss_SoftC = Σ_m NLL_m + λ·mean (G μ̄ − b)² in train mode, μ̄ on the penalty's uniform grid (not on the
    training targets); the plain NLL in eval mode."""
    from physml.models.anp import SOFTC_POINTS, as_batch, conservation_penalty, penalty_batch

    batch = default_collate(heat_functions(4, seed=3))
    common = {"case": "heat", "members": 2, "hidden": 8, "layers": 1, "x_range": (0.0, TWO_PI), "periodic": True}
    torch.manual_seed(0)
    plain = DeepEnsemble(EnsembleConfig(**common))
    torch.manual_seed(0)
    soft = DeepEnsemble(EnsembleConfig(**common, physics_weight=7.0))
    b = as_batch(batch, torch.device("cpu"), torch.float32)
    dense = penalty_batch(b, (0.0, TWO_PI), True)
    assert dense["target_x"].shape == (*b["target_t"].shape, SOFTC_POINTS) and "target_u" not in dense
    means, _ = soft.member_moments(dense)
    penalty = conservation_penalty(means.mean(0), dense, (0.0, TWO_PI), True)
    at_targets = conservation_penalty(soft.member_moments(b)[0].mean(0), b, (0.0, TWO_PI), True)
    assert float(penalty.detach()) > 0 and not torch.allclose(penalty, at_targets)
    torch.testing.assert_close(soft.loss(batch), plain.loss(batch) + 7.0 * penalty)
    soft.eval()
    torch.testing.assert_close(soft.loss(batch), plain.loss(batch))


def test_constrained_loss_is_each_members_conditioned_nll_written_out() -> None:
    """With ``constrained_likelihood``: Σ_m mean over functions of Σ_slices −log p(u_t | G_t u_t) / Nt, member m's
    N(μ_m, diag σ_m²) of each slice conditioned on the trapezoid mass of its own targets (scipy's density of the
    singular posterior N(μ', Σ'), Σ' = diag σ² − (σ² g)(σ² g)ᵀ/(g σ² g))."""
    from scipy.stats import multivariate_normal

    from physml.constraints import trapezoid_weights

    torch.manual_seed(6)
    model = DeepEnsemble(EnsembleConfig(case="heat", members=3, hidden=8, layers=1, x_range=(0.0, TWO_PI),
                                        periodic=True, constrained_likelihood=True)).double()
    batch = {k: v.double() for k, v in default_collate(heat_functions(4, seed=5)).items()}
    with torch.no_grad():
        means, variances = (a.numpy() for a in model.member_moments(batch))
    g = trapezoid_weights(batch["target_x"].numpy(), (0.0, TWO_PI), periodic=True)
    u = batch["target_u"].numpy()
    n_f, nt, nx = u.shape
    expected = 0.0
    for m in range(means.shape[0]):
        per_function = []
        for i in range(n_f):
            nll = 0.0
            for t in range(nt):
                v, w, mu = variances[m, i, t], g[i, t], means[m, i, t]
                vg = v * w
                mean = mu - vg * (w @ mu - w @ u[i, t]) / (w @ vg)
                cov = np.diag(v) - np.outer(vg, vg) / (w @ vg)
                nll -= multivariate_normal(mean, cov, allow_singular=True).logpdf(u[i, t])
            per_function.append(nll / (nt * nx))
        expected += np.mean(per_function)
    with torch.no_grad():
        assert float(model.loss(batch)) == pytest.approx(expected, rel=1e-10)


def test_loss_is_the_members_gaussian_nll_written_out() -> None:
    """Σ_m mean over functions and targets of ½ log 2πσ_m² + (u − μ_m)²/(2σ_m²), with μ_m, σ_m² each member's
    moments: the negative log-likelihood written out, not taken from torch.distributions."""
    torch.manual_seed(6)
    model = DeepEnsemble(EnsembleConfig(case="heat", members=3, hidden=8, layers=1, x_range=(0.0, TWO_PI),
                                        periodic=True)).double()
    batch = {k: v.double() for k, v in default_collate(heat_functions(4, seed=5)).items()}
    means, variances = model.member_moments(batch)
    u = batch["target_u"].unsqueeze(0)
    nll = 0.5 * torch.log(2 * math.pi * variances) + (u - means) ** 2 / (2 * variances)
    expected = nll.flatten(1).mean(1).sum()
    with torch.no_grad():
        assert float(model.loss(batch)) == pytest.approx(float(expected), rel=1e-12)
