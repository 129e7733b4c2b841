"""The attentive neural process and SoftC on heat-equation functions u = e^{−kt} sin x (exact solution
of u_t = k u_xx, periodic on [0, 2π], total mass 0), in the dataset layout of physml.data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from physml.models import ANP, ANPConfig, Predictive, build_model
from physml.constraints import trapezoid_weights
from physml.models.anp import SOFTC_POINTS, conservation_penalty, penalty_batch, slice_weights
from physml.training import TrainConfig, fit, load_checkpoint, model_loss, seed_everything

from _synthetic import TWO_PI, heat_functions

SMALL = {"case": "heat", "hidden": 32, "latent": 16, "attention_layers": 1, "decoder_layers": 2,
         "x_range": [0.0, TWO_PI], "periodic": True}
TRAIN = TrainConfig(epochs=10, batch_size=16, lr=3e-3, device="cpu")


def train(config: dict, path: Path) -> tuple[ANP, list[dict[str, float]]]:
    torch.set_num_threads(1)
    seed_everything(0)
    model = build_model(config)
    result = fit(model, model_loss, heat_functions(300, 0), heat_functions(50, 1), TRAIN, path, config, progress=False)
    return model, result.history


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("anp")
    anp, history = train({**SMALL, "model": "anp"}, folder / "anp.pt")
    softc, _ = train({**SMALL, "model": "softc", "physics_weight": 100.0}, folder / "softc.pt")
    test = default_collate(heat_functions(50, 2))
    return {"anp": anp, "softc": softc, "history": history, "test": test, "path": folder / "anp.pt"}


def _predict(model: ANP, b: dict, **kw: object) -> Predictive:
    return model.predict(b["context_t"], b["context_x"], b["context_u"], b["target_t"], b["target_x"], **kw)


def test_anp_beats_the_context_mean_and_its_loss_decreases(trained: dict) -> None:
    b = trained["test"]
    pred = _predict(trained["anp"], b, n_samples=32)
    assert pred.mean.shape == b["target_x"].shape and pred.var.shape == b["target_x"].shape
    mse = float(((pred.mean - b["target_u"].double()) ** 2).mean())
    baseline = float(((b["context_u"].mean(1)[:, None, None] - b["target_u"]) ** 2).mean())
    assert mse < baseline / 10, (mse, baseline)  # measured 0.002 vs 0.10
    history = trained["history"]
    assert min(r["val_loss"] for r in history) < history[0]["val_loss"] - 1.0  # NLL per target, nats
    # calibration sanity: the predictive std is of the size of the actual error, not 10× off
    rmse, std = math.sqrt(mse), float(pred.std.mean())
    assert rmse / 10 < std < rmse * 10


def test_predict_mixes_latent_samples_by_total_variance(trained: dict) -> None:
    model, b = trained["anp"], trained["test"]
    full = _predict(model, b, n_samples=16, full_cov=True, seed=3)
    assert torch.equal(full.mean, _predict(model, b, n_samples=16, seed=3).mean)  # seeded draws
    cov = full.cov
    assert cov.shape == b["target_x"].shape + (b["target_x"].shape[-1],)
    assert torch.allclose(cov, cov.transpose(-1, -2))
    assert float(torch.linalg.eigvalsh(cov).min()) > 0  # diagonal noise ≥ min_std² makes it definite
    assert torch.allclose(torch.diagonal(cov, dim1=-2, dim2=-1), full.var)
    # one latent sample: no epistemic part, var = decoder σ² ≥ min_std²
    one = _predict(model, b, n_samples=1)
    assert float(one.var.min()) >= model.config.min_std**2 * (1 - 1e-5)
    with pytest.raises(ValueError, match="n_samples"):
        _predict(model, b, n_samples=0)
    with pytest.raises(ValueError, match="target_x"):
        model.predict(b["context_t"], b["context_x"], b["context_u"], b["target_t"], b["target_x"][:, 0])


def test_a_functions_latent_draws_do_not_depend_on_its_batch(trained: dict) -> None:
    """Function b of a call with seed s draws from function_seeds(s, [b]): predicting the second half of the
    batch alone, with those functions' seeds, gives their rows of the whole batch's prediction (to the
    float32 network's round-off); an int seed on the half alone would give other draws."""
    from physml.models.anp import function_seeds

    model, b = trained["anp"], trained["test"]
    n, k = b["target_t"].shape[0], b["target_t"].shape[0] // 2
    half = {key: value[k:] for key, value in b.items()}
    whole = _predict(model, b, n_samples=8, seed=5)
    alone = _predict(model, half, n_samples=8, seed=function_seeds(5, range(k, n)))
    torch.testing.assert_close(alone.mean, whole.mean[k:], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(alone.var, whole.var[k:], rtol=1e-5, atol=1e-9)
    restarted = _predict(model, half, n_samples=8, seed=5)
    assert float((restarted.var - whole.var[k:]).abs().max()) > 1e-3 * float(whole.var[k:].abs().max())
    for bad in (function_seeds(5, range(k)) + [1], [1.5] * (n - k), [-1] * (n - k), True, -1):
        with pytest.raises(ValueError, match="seed must be an int >= 0, or one int in \\[0, 2\\*\\*63\\) per function"):
            _predict(model, half, n_samples=2, seed=bad)
    as_array = _predict(model, half, n_samples=8, seed=np.array(function_seeds(5, range(k, n)), dtype=np.uint64))
    assert torch.equal(as_array.var, alone.var)
    empty = _predict(model, {key: value[:0] for key, value in b.items()}, n_samples=2, seed=5)
    assert empty.mean.shape == (0, *b["target_x"].shape[1:])
    with pytest.raises(ValueError, match="function_seeds takes an int seed >= 0"):
        function_seeds(5.7, [0])


def test_predict_is_the_moment_match_of_its_latent_samples(trained: dict) -> None:
    """μ = (1/S) Σ μ_s and σ² = (1/S) Σ σ_s² + (1/S) Σ (μ_s − μ)², the μ_s, σ_s decoded from S draws
    z_s = loc + scale ε_s of q(z | C) (ε_s from the seeded generator): recomputed here sample by sample. The
    epistemic part is positive for S > 1 (a prediction from the latent mean alone would have none)."""
    from physml.models.anp import as_batch, function_seeds

    model, b, n = trained["anp"], trained["test"], 8
    pred = _predict(model, b, n_samples=n, seed=5)
    p = next(model.parameters())
    keys = ("context_t", "context_x", "context_u", "target_t", "target_x")
    model.eval()
    with torch.no_grad():
        ctx, tgt = model._points(as_batch({k: b[k] for k in keys}, p.device, p.dtype))
        prior, r = model.latent(ctx), model.deterministic(ctx, tgt)
        seeds = function_seeds(5, range(prior.loc.shape[0]))  # function b's draws: its own generator
        eps = torch.stack([torch.randn((n, prior.loc.shape[-1]), generator=torch.Generator().manual_seed(s), dtype=p.dtype)
                           for s in seeds], dim=1)
        draws = [model.decode(r, prior.loc + prior.scale * e, tgt) for e in eps]
    means = torch.stack([m.double().reshape(b["target_x"].shape) for m, _ in draws])
    variances = torch.stack([(s.double() ** 2).reshape(b["target_x"].shape) for _, s in draws])
    epistemic = ((means - means.mean(0)) ** 2).mean(0)
    assert torch.allclose(pred.mean, means.mean(0), rtol=1e-6, atol=1e-9)
    assert torch.allclose(pred.var, variances.mean(0) + epistemic, rtol=1e-6, atol=1e-12)
    assert float(epistemic.min()) > 0


def test_softc_penalty_reduces_the_conservation_error(trained: dict) -> None:
    b = trained["test"]
    g = slice_weights(b["target_x"].double(), (0.0, TWO_PI), periodic=True)
    ce = {name: float((g * _predict(trained[name], b, n_samples=16).mean).sum(-1).abs().mean()) for name in ("anp", "softc")}
    assert ce["softc"] < 0.3 * ce["anp"], ce  # measured 0.010 vs 0.113


def test_conservation_penalty_is_the_trapezoid_residual() -> None:
    """(G μ − b)² with G the trapezoid weights; on a uniform periodic grid ∫ sin = 0 exactly."""
    x = torch.tensor([[[0.0, 1.0, 3.0, 6.0]]], dtype=torch.float64)
    mean = torch.tensor([[[1.0, 2.0, 0.5, -1.0]]], dtype=torch.float64)
    mass = torch.tensor([[0.25]], dtype=torch.float64)
    # interior trapezoid (x_{j+1} − x_{j−1})/2; the wrap gap 2π − 6 split between the ends
    gap = (TWO_PI - 6.0) / 2
    w = torch.tensor([0.5 + gap, 1.5, 2.5, 1.5 + gap], dtype=torch.float64)
    expected = ((w * mean[0, 0]).sum() - 0.25) ** 2
    got = conservation_penalty(mean, {"target_x": x, "mass": mass}, (0.0, TWO_PI), periodic=True)
    assert float(got) == pytest.approx(float(expected), rel=1e-12)
    grid = torch.linspace(0, TWO_PI, 33, dtype=torch.float64)[:-1].view(1, 1, -1)
    zero = conservation_penalty(torch.sin(grid), {"target_x": grid, "mass": torch.zeros(1, 1, dtype=torch.float64)},
                                (0.0, TWO_PI), periodic=True)
    assert float(zero) < 1e-28


def test_penalty_grid_integrates_the_true_mass_where_the_training_targets_do_not() -> None:
    """The reason SoftC's penalty is taken on a uniform grid: there the trapezoid rule gives an exact solution's
    mass to high accuracy, while on 10 random positions per slice it misses it by several per cent."""
    x_range = (0.0, 1.0)
    t = torch.tensor([[0.5]], dtype=torch.float64)
    dense = penalty_batch({"target_t": t, "mass": torch.zeros(1, 1, dtype=torch.float64)}, x_range, periodic=False)
    x = dense["target_x"]
    assert x.shape == (1, 1, SOFTC_POINTS) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    u = torch.exp(-((x - 0.3) / 0.15) ** 2)  # ∫₀¹ = 0.15 √π / 2 (erf(2) + erf(4.67))
    exact = 0.15 * math.sqrt(math.pi) / 2 * (math.erf(0.3 / 0.15) + math.erf(0.7 / 0.15))
    dense_error = abs(float((slice_weights(x, x_range, False) * u).sum()) - exact)
    rng = torch.Generator().manual_seed(0)
    random_x = torch.sort(torch.rand(1, 1, 10, generator=rng, dtype=torch.float64)).values
    random_u = torch.exp(-((random_x - 0.3) / 0.15) ** 2)
    random_error = abs(float((slice_weights(random_x, x_range, False) * random_u).sum()) - exact)
    assert dense_error < 1e-3 * exact and random_error > 10 * dense_error, (dense_error, random_error)
    periodic = penalty_batch({"target_t": t}, (0.0, TWO_PI), periodic=True)["target_x"]
    assert float(periodic.max()) < TWO_PI and periodic.shape[-1] == SOFTC_POINTS  # the right end repeats the left


def test_checkpoint_rebuilds_the_same_predictions(trained: dict) -> None:
    b = trained["test"]
    loaded, config, extra = load_checkpoint(trained["path"], build_model, expect_case="heat")
    assert config["model"] == "anp" and isinstance(loaded, ANP)
    assert torch.equal(_predict(loaded, b, n_samples=4).mean, _predict(trained["anp"], b, n_samples=4).mean)
    with pytest.raises(ValueError, match="expected"):
        load_checkpoint(trained["path"], build_model, expect_case="stefan")


def test_bad_configs_and_batches_are_rejected() -> None:
    with pytest.raises(ValueError, match="physics_weight"):
        ANPConfig(case="heat", model="softc")
    with pytest.raises(ValueError, match="divisible"):
        ANPConfig(case="heat", hidden=30, heads=4)
    with pytest.raises(ValueError, match="exclude each other"):
        ANPConfig(case="heat", model="softc", physics_weight=1.0, constrained_likelihood=True)
    with pytest.raises(ValueError, match="constraint_noise_var > 0 needs constrained_likelihood"):
        ANPConfig(case="heat", constraint_noise_var=0.1)
    with pytest.raises(ValueError, match="constraint_noise_var must be finite and >= 0"):
        ANPConfig(case="heat", constrained_likelihood=True, constraint_noise_var=-1.0)
    with pytest.raises(ValueError, match="constrained_likelihood must be true or false"):
        ANPConfig(case="heat", constrained_likelihood="yes")
    with pytest.raises(ValueError, match="x_range"):
        ANPConfig(case="heat", x_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="unknown"):
        build_model({"case": "heat", "model": "anp", "width": 3})
    with pytest.raises(ValueError, match="model"):
        build_model({"case": "heat", "model": "gp"})
    model = ANP(ANPConfig(case="heat", hidden=8, latent=4, heads=2))
    batch = default_collate(heat_functions(2, 0))
    with pytest.raises(ValueError, match="mass"):
        model.loss({**batch, "mass": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="context_u"):
        model.loss({k: v for k, v in batch.items() if k != "context_u"})
    with pytest.raises(ValueError, match="NaN"):
        model.loss({**batch, "target_u": torch.full_like(batch["target_u"], float("nan"))})
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        model.predict(*(batch[k] for k in ("context_t", "context_x", "context_u", "target_t", "target_x")), n_samples=0)


def test_a_component_mixture_without_components_says_so() -> None:
    """The shared ``predict`` of the black boxes needs the subclass's ``_components``; without it the error
    names the class, and the module is left in the mode it was in."""
    from physml.models.anp import ComponentMixture

    class NoComponents(ComponentMixture, torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

    net = NoComponents()
    batch = default_collate(heat_functions(2, 0))
    with pytest.raises(NotImplementedError, match="NoComponents defines no _components"):
        net.predict(*(batch[k] for k in ("context_t", "context_x", "context_u", "target_t", "target_x")))
    assert net.training


def _conditioned_slice_nll(u: np.ndarray, mean: np.ndarray, var: np.ndarray, g: np.ndarray, noise: float = 0.0) -> float:
    """−log N(u; μ', Σ') of one slice's N(mean, diag var) conditioned on g·u = g·u_true (+ noise of variance σ²),
    written out: μ' = μ − v g (g·μ − g·u)/(g v g + σ²), Σ' = diag v − (v g)(v g)ᵀ/(g v g + σ²); for σ² = 0 its
    density on the set g·v = g·u."""
    from scipy.stats import multivariate_normal

    vg = var * g
    s = float(g @ vg) + noise
    m = mean - vg * (g @ mean - g @ u) / s
    cov = np.diag(var) - np.outer(vg, vg) / s
    return -float(multivariate_normal(m, cov, allow_singular=True).logpdf(u))


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_constrained_loss_is_the_conditioned_gaussians_nll_written_out(noise: float) -> None:
    """ProbConserv's trained ANP: in eval mode its loss is the mean over functions of
    [Σ_slices −log p(u_t | G_t u_t) + KL] / Nt, each slice's Gaussian conditioned on the trapezoid mass of its own
    targets (σ_G² = 0: scipy's density of the singular posterior; σ_G² > 0: of the proper one); it differs from
    the plain ELBO."""
    torch.manual_seed(5)
    model = ANP(ANPConfig(**SMALL, constrained_likelihood=True, constraint_noise_var=noise)).double().eval()
    plain = ANP(ANPConfig(**SMALL)).double().eval()
    plain.load_state_dict(model.state_dict())
    batch = {k: v.double() for k, v in default_collate(heat_functions(3, seed=4)).items()}
    ctx, tgt = model._points(batch)
    u = batch["target_u"].flatten(1, 2)
    prior = model.latent(ctx)
    posterior = model.latent(torch.cat([ctx, torch.cat([tgt, u.unsqueeze(-1)], dim=-1)], dim=1))
    with torch.no_grad():
        mean, std = model.decode(model.deterministic(ctx, tgt), posterior.mean, tgt)
        kl = torch.distributions.kl_divergence(posterior, prior).sum(-1).numpy()
    shape = batch["target_x"].shape
    mean, var = mean.view(shape).numpy(), (std**2).view(shape).numpy()
    g = trapezoid_weights(batch["target_x"].numpy(), (0.0, TWO_PI), periodic=True)
    target = batch["target_u"].numpy()
    nll = np.array([sum(_conditioned_slice_nll(target[i, t], mean[i, t], var[i, t], g[i, t], noise)
                        for t in range(shape[1])) for i in range(shape[0])])
    expected = float(((nll + kl) / u.shape[1]).mean())
    with torch.no_grad():
        got, elbo = float(model.loss(batch)), float(plain.loss(batch))
    assert got == pytest.approx(expected, rel=1e-10)
    assert abs(got - elbo) > 1e-3 * abs(elbo)


def test_loss_is_the_elbo_written_out() -> None:
    """In eval mode (z = the posterior's mean) the loss is the mean over functions of
    [Σ_targets (½ log 2πσ² + (u − μ)²/(2σ²)) + KL(q(z | C ∪ T) ‖ q(z | C))] / Nt, with the KL of two diagonal
    Gaussians in closed form, Σ_d [log(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²)/(2σ_p²) − ½] (q the posterior, p the
    prior): here written out, not taken from torch.distributions."""
    torch.manual_seed(5)
    model = ANP(ANPConfig(**SMALL)).double().eval()
    batch = {k: v.double() for k, v in default_collate(heat_functions(3, seed=4)).items()}
    ctx, tgt = model._points(batch)
    u = batch["target_u"].flatten(1, 2)
    prior = model.latent(ctx)
    posterior = model.latent(torch.cat([ctx, torch.cat([tgt, u.unsqueeze(-1)], dim=-1)], dim=1))
    mean, std = model.decode(model.deterministic(ctx, tgt), posterior.mean, tgt)
    nll = (0.5 * torch.log(2 * math.pi * std**2) + (u - mean) ** 2 / (2 * std**2)).sum(-1)
    mq, sq, mp, sp = posterior.loc, posterior.scale, prior.loc, prior.scale
    kl = (torch.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(-1)
    assert float(kl.min().detach()) > 1e-6  # the two latents differ, so a dropped or reversed KL shows
    expected = ((nll + kl) / u.shape[1]).mean()
    with torch.no_grad():
        assert float(model.loss(batch)) == pytest.approx(float(expected), rel=1e-12)
