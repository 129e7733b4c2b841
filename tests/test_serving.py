"""Registered networks as MLflow pyfunc models (physml.serving), through a real SQLite registry and a real
``mlflow models serve``.

Guarantees checked: a served black box conserves the given mass to round-off by default, and its three
updates are the textbook formulas on the mixture of the network's own components (recomputed here from
``predict_components``); ``constraint="none"`` is the network's plain predictive; its params default to what
the pipeline predicted with; a served BOON network holds its boundary data (Neumann stencil derivative,
the cavity's two pairs of walls) and equals the network's float64 forward; missing or unknown inputs, inputs
whose shapes do not fit together and times or positions outside the case's domain name themselves; a call
is held to bounded draws, covariances and network working memory (in parts, or refused with the most it may
ask); a version logged before versions were pyfunc models becomes one; ``physml serve`` refuses what is
not there and, started, answers a REST call as the in-process model does.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException

from physml import serving, tracking
from physml.config import load_params
from physml.constraints.conservation import trapezoid_weights
from physml.experiments import probconserv
from physml.models import build_model
from physml.models.anp import function_seeds
from physml.serving import ServingInputError

ANP_CONFIG = {"case": "heat", "model": "anp", "hidden": 8, "latent": 8, "heads": 2, "attention_layers": 1,
              "decoder_layers": 2, "t_range": [0.0, 1.0], "x_range": [0.0, 2 * np.pi], "periodic": True}
NEUMANN_CONFIG = {"variant": "boon", "boundary": "neumann", "neumann_order": 2,
                  "fno": {"n_space": 1, "nt": 4, "width": 8, "modes": [4, 3], "n_layers": 2, "proj_width": 8}}
CAVITY_CONFIG = {"variant": "boon", "boundary": "dirichlet", "neumann_order": 2,
                 "fno": {"n_space": 2, "nt": 4, "in_channels": 2, "out_channels": 2, "width": 6, "modes": [3, 3, 3],
                         "n_layers": 2, "proj_width": 8}}
B, NC, NT, NX = 3, 10, 2, 12
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store + artifact folder, also where MLflow resolves ``models:/`` URIs; returns the
    tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("PHYSML_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PHYSML_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.delenv("RANK", raising=False)
    return uri


def _register(case: str, model: str, constraint: str, config: dict, **serving: int):
    """A network of ``config`` with seeded random weights, logged and registered with the pyfunc defaults
    ``serving``; (network, pyfunc model)."""
    torch.manual_seed(0)
    net = build_model(config)
    record = tracking.log_experiment(case, model, constraint, "quick", metrics={"mse": 1.0},
                                     state_dict=net.state_dict(), model_config=config, serving=serving or None)
    assert record is not None and record.model_version == "1"
    return net.eval(), mlflow.pyfunc.load_model(f"models:/{record.model_name}/1")


def _black_box_inputs(seed: int = 1) -> dict[str, np.ndarray]:
    """Random contexts and sorted targets of B functions on heat's domain [0, 2π] × [0, 1]."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.0, 2 * np.pi, size=(B, NT, NX)), axis=-1)
    return {"context_t": rng.uniform(0, 1, (B, NC)), "context_x": rng.uniform(0, 2 * np.pi, (B, NC)),
            "context_u": rng.normal(size=(B, NC)), "target_t": np.sort(rng.uniform(0, 1, (B, NT)), axis=-1),
            "target_x": x}


def test_a_served_black_box_conserves_the_given_mass_with_the_textbook_updates(store: str) -> None:
    """Components N(μ_s, diag σ_s²) → μ = (1/S) Σ μ_s, Σ = (1/S) Σ diag σ_s² + (1/S) Σ (μ_s − μ)(μ_s − μ)ᵀ per slice;
    ProbConserv μ' = μ − Σ g (gᵀ Σ g)⁻¹ (gᵀ μ − b), diag Σ' = diag Σ − (Σ g)² / (gᵀ Σ g); HardC μ' = μ − g (gᵀ μ − b) / gᵀ g
    with the variance kept; per component: the mean of each component's ProbConserv mean. g: the periodic trapezoid
    weights of the slice, b: the given mass."""
    net, served = _register("heat", "anp", "probconserv", ANP_CONFIG, n_samples=5, seed=7)
    schema = {p.name: p.default for p in served.metadata.get_params_schema().params}
    assert schema == {"constraint": "probconserv", "n_samples": 5, "seed": 7, "first_index": 0}
    inputs = _black_box_inputs()
    mass = np.random.default_rng(2).normal(size=(B, NT))
    means, variances = (a.numpy() for a in net.predict_components(
        *(inputs[k] for k in ("context_t", "context_x", "context_u", "target_t", "target_x")),
        n_samples=5, seed=function_seeds(7, range(B))))
    mu = means.mean(0)
    dev = means - mu
    cov = np.einsum("sbti,sbtj->btij", dev, dev) / 5 + np.einsum("bti,ij->btij", variances.mean(0), np.eye(NX))
    g = trapezoid_weights(inputs["target_x"], (0.0, 2 * np.pi), periodic=True)  # (B, NT, NX)
    sg = np.einsum("btij,btj->bti", cov, g)
    gsg = np.einsum("bti,bti->bt", g, sg)
    residual = np.einsum("bti,bti->bt", g, mu) - mass

    plain = served.predict(inputs, params={"constraint": "none"})
    np.testing.assert_allclose(plain["mean"], mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(plain["var"], np.diagonal(cov, axis1=-2, axis2=-1), rtol=1e-12, atol=1e-14)
    assert np.abs(residual).max() > 1e-2  # the plain predictive does not hold the given mass

    posterior = served.predict({**inputs, "mass": mass})  # the default: ProbConserv
    np.testing.assert_allclose(posterior["mean"], mu - sg * (residual / gsg)[..., None], rtol=0, atol=1e-12)
    np.testing.assert_allclose(posterior["var"], np.diagonal(cov, axis1=-2, axis2=-1) - sg**2 / gsg[..., None],
                               rtol=0, atol=1e-12)
    hard = served.predict({**inputs, "mass": mass}, params={"constraint": "hardc"})
    gg = np.einsum("bti,bti->bt", g, g)
    np.testing.assert_allclose(hard["mean"], mu - g * (residual / gg)[..., None], rtol=0, atol=1e-12)
    np.testing.assert_allclose(hard["var"], plain["var"], rtol=0, atol=1e-14)
    per_component = served.predict({**inputs, "mass": mass}, params={"constraint": "probconserv_mixture"})
    sg_s = variances * g
    conditioned = means - sg_s * ((np.einsum("bti,sbti->sbt", g, means) - mass) / np.einsum("bti,sbti->sbt", g, sg_s))[..., None]
    np.testing.assert_allclose(per_component["mean"], conditioned.mean(0), rtol=0, atol=1e-12)
    within = (variances - sg_s**2 / np.einsum("bti,sbti->sbt", g, sg_s)[..., None]).mean(0)
    np.testing.assert_allclose(per_component["var"], within + conditioned.var(0), rtol=1e-10, atol=1e-14)
    signed = served.predict({**inputs, "mass": mass}, params={"constraint": "probconserv_nonnegative"})
    for key in ("mean", "var"):  # heat's u changes sign: no bound, so the per-component update itself
        np.testing.assert_array_equal(signed[key], per_component[key])
    for out in (posterior, hard, per_component):
        assert np.abs(np.einsum("bti,bti->bt", g, out["mean"]) - mass).max() < 1e-12
        assert np.all(out["var"] >= 0)
    other = served.predict(inputs, params={"constraint": "none", "seed": 8})
    assert not np.allclose(other["mean"], plain["mean"])  # the seed param reaches the latent draws


def test_a_served_nonnegative_case_keeps_its_mean_above_zero(store: str) -> None:
    """Stefan's u ≥ 0: ``probconserv_nonnegative`` returns a mean ≥ 0 with the given mass, where the per-component
    update alone goes below 0 for these random weights and a mass small enough to force it."""
    config = {**ANP_CONFIG, "case": "stefan", "t_range": [0.0, 0.1], "x_range": [0.0, 1.0], "periodic": False}
    _, served = _register("stefan", "anp", "probconserv", config, n_samples=6)
    rng = np.random.default_rng(5)
    inputs = {"context_t": rng.uniform(0, 0.1, (B, NC)), "context_x": rng.uniform(0, 1, (B, NC)),
              "context_u": rng.uniform(0, 1, (B, NC)), "target_t": np.sort(rng.uniform(0, 0.1, (B, NT)), axis=-1),
              "target_x": np.sort(rng.uniform(0, 1, (B, NT, NX)), axis=-1)}
    mass = np.full((B, NT), 0.02)
    g = trapezoid_weights(inputs["target_x"], (0.0, 1.0))
    unbounded = served.predict({**inputs, "mass": mass}, params={"constraint": "probconserv_mixture"})
    bounded = served.predict({**inputs, "mass": mass}, params={"constraint": "probconserv_nonnegative"})
    assert unbounded["mean"].min() < -1e-3
    assert bounded["mean"].min() >= -1e-14
    np.testing.assert_allclose(np.einsum("bti,bti->bt", g, bounded["mean"]), mass, rtol=0, atol=1e-14)
    negative = mass.copy()
    negative[1, 1] = -1e-9  # no u ≥ 0 has a mass below 0: the input is named, nothing is predicted
    with pytest.raises(ServingInputError, match=r"input 'mass' is below .* 1 slice\(s\) \(first: row 1, "
                                                r"time 1: mass -1e-09 < 0\)"):
        served.predict({**inputs, "mass": negative}, params={"constraint": "probconserv_nonnegative"})
    served.predict({**inputs, "mass": negative}, params={"constraint": "probconserv_mixture"})  # unbounded: fine


def test_an_anp_answers_for_a_function_whatever_else_the_call_holds(store: str) -> None:
    """Function i draws its latent samples from (seed, first_index + i): rows 1–2 of a call equal a call of those
    two rows alone with first_index = 1, to the bit; a float32 grid whose end rounds past 2π is on the domain, in
    process and as a JSON body gives it."""
    _, served = _register("heat", "anp", "probconserv", ANP_CONFIG, n_samples=4)
    inputs = _black_box_inputs()
    mass = np.random.default_rng(6).normal(size=(B, NT))
    whole = served.predict({**inputs, "mass": mass})
    tail = served.predict({**{k: v[1:] for k, v in inputs.items()}, "mass": mass[1:]}, params={"first_index": 1})
    for key in ("mean", "var"):
        np.testing.assert_array_equal(tail[key], whole[key][1:])
    grid = np.broadcast_to(np.linspace(0, 2 * np.pi, NX, dtype=np.float32), (B, NT, NX))  # float32(2π) > 2π
    out = served.predict({**inputs, "target_x": grid, "mass": mass})
    g = trapezoid_weights(grid, (0.0, 2 * np.pi), periodic=True)
    np.testing.assert_allclose(np.einsum("bti,bti->bt", g, out["mean"]), mass, rtol=0, atol=1e-12)
    # the same grid as a JSON body carries it (each float32 number's float64 value, past 2π by 1.7e-7): the same
    # answer under the default update (before, only constraint "none" took it: the quadrature's slack was float64's)
    as_json = served.predict({**inputs, "target_x": grid.astype(np.float64).tolist(), "mass": mass})
    for key in ("mean", "var"):
        np.testing.assert_array_equal(as_json[key], out[key])


def test_a_large_served_call_is_predicted_in_parts_and_an_oversized_one_refused(store: str, monkeypatch) -> None:
    """A call whose S·B·nt·nx latent-draw entries pass :data:`~physml.serving.SERVED_ENTRIES` is predicted a few
    functions at a time, in whole batches of the constrain stage (:func:`~physml.experiments.probconserv.
    predict_batches`), so its answer is the one call's to the bit (the paper profile's test split: S = 100 on
    201 × 201 is predicted 32 functions, two batches of 16, at a time). Where one batch's draws alone pass the
    bound the parts are smaller: the same draws (each function's come from its own index), the float32 network
    rounding differently at another batch size (~1e-7 relative, measured once; asserted to 1e-5). One function
    that alone needs more draws or covariance entries (nt·nx²) is refused, naming the param or the input,
    before anything is predicted."""
    assert serving._rows_per_part(100, 201, 201) == 32
    paper = load_params(ROOT / "params.yaml").with_profile("paper")
    anp = build_model(probconserv.model_config("stefan", "anp", paper))
    features = serving._check_features(anp, 100, 201 * 201)  # the network's part: one batch of 16
    assert serving._rows_per_part(100, 201, 201, features) == probconserv.prediction_batch(201, 201) == 16
    _, served = _register("heat", "anp", "probconserv", ANP_CONFIG, n_samples=4)
    inputs = _black_box_inputs()
    mass = np.random.default_rng(9).normal(size=(B, NT))
    real = probconserv.predict_batches
    parts, batches = [], []

    def recorded(net, arrays, *args, **kwargs):
        parts.append(len(arrays["target_x"]))
        for batch in real(net, arrays, *args, **kwargs):
            batches.append(batch.functions.stop - batch.functions.start)
            yield batch

    with monkeypatch.context() as patch:  # not monkeypatch.undo(): it would also undo the store fixture
        patch.setattr(probconserv, "predict_batches", recorded)
        six = {key: np.concatenate([value, value[::-1]]) for key, value in {**inputs, "mass": mass}.items()}
        patch.setattr(probconserv, "PREDICT_COV_ENTRIES", 2 * NT * NX * NX)  # the stage's batches: 2 functions
        whole = served.predict(six, params={"n_samples": NX})
        assert (parts, batches) == ([6], [2, 2, 2])
        patch.setattr(serving, "SERVED_ENTRIES", 3 * NT * NX * NX)  # NX draws of 3 functions: parts of 2
        parts.clear(), batches.clear()
        in_parts = served.predict(six, params={"n_samples": NX})
        assert (parts, batches) == ([2, 2, 2], [2, 2, 2])
        for key in ("mean", "var"):
            np.testing.assert_array_equal(in_parts[key], whole[key])
        patch.setattr(probconserv, "PREDICT_COV_ENTRIES", 2**27)  # the stage's batch: all 3; the parts: 2 and 1
        patch.setattr(serving, "SERVED_ENTRIES", 2**27)
        whole = served.predict({**inputs, "mass": mass}, params={"n_samples": NX})
        patch.setattr(serving, "SERVED_ENTRIES", 2 * NT * NX * NX)
        parts.clear(), batches.clear()
        in_parts = served.predict({**inputs, "mass": mass}, params={"n_samples": NX})
        assert parts == [2, 1]
        np.testing.assert_allclose(in_parts["mean"], whole["mean"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(in_parts["var"], whole["var"], rtol=1e-5, atol=1e-9)
        assert np.abs(in_parts["mean"] - whole["mean"]).max() < 1e-3 * np.abs(whole["mean"] - served.predict(
            {**inputs, "mass": mass}, params={"n_samples": NX, "seed": 1})["mean"]).max()  # far below another draw
    huge = serving.SERVED_ENTRIES // (NT * NX) + 1
    with pytest.raises(ServingInputError, match=rf"params.n_samples × nt × nx = {huge} × {NT} × {NX} exceeds "
                                                rf"{serving.SERVED_ENTRIES} entries .* at most {huge - 1} draws"):
        served.predict({**inputs, "mass": mass}, params={"n_samples": huge})
    # an ensemble's components are its members: n_samples is not used, so it is not what is refused
    ensemble = {"case": "heat", "model": "ensemble", "members": 3, "hidden": 8, "layers": 2,
                **{k: ANP_CONFIG[k] for k in ("t_range", "x_range", "periodic")}}
    _, served_ensemble = _register("heat", "ensemble", "probconserv", ensemble)
    served_ensemble.predict({**inputs, "mass": mass}, params={"n_samples": huge})
    narrow = {**inputs, "target_x": inputs["target_x"][:, :, :2], "mass": mass}  # nx = 2 < 3 members
    with monkeypatch.context() as patch:
        patch.setattr(serving, "SERVED_ENTRIES", NT * 2 * 2 + 2)  # the covariances fit; 3 members × NT × 2 do not
        with pytest.raises(ServingInputError, match=rf"the ensemble's 3 members × nt × nx = 3 × {NT} × 2 exceed "
                                                    rf"{NT * 4 + 2} entries .* send at most 1 time\(s\) per call"):
            served_ensemble.predict(narrow)
    nx = 4100  # 8 × 4100² > 2**27
    wide = {**inputs, "target_x": np.broadcast_to(np.linspace(0, 2 * np.pi, nx), (B, 8, nx)),
            "target_t": inputs["target_t"][:, :1].repeat(8, axis=1)}
    with pytest.raises(ServingInputError, match=r"input 'target_x' of nt × nx = 8 × 4100 needs nt × nx² = 134480000 "
                                                r"covariance entries per function"):
        served.predict(wide, params={"constraint": "none"})


def test_served_black_box_inputs_and_params_are_checked_by_name(store: str) -> None:
    _, served = _register("heat", "anp", "probconserv", ANP_CONFIG)
    inputs = _black_box_inputs()
    with pytest.raises((ValueError, MlflowException), match=r"missing input\(s\) \['mass'\].*'constraint': 'none'"):
        served.predict(inputs)
    with pytest.raises((ValueError, MlflowException), match=r"unknown input\(s\) \['u'\]"):
        served.predict({**inputs, "u": np.zeros(3)}, params={"constraint": "none"})
    with pytest.raises((ValueError, MlflowException), match=r"mass must have shape \(B, nt\)"):
        served.predict({**inputs, "mass": np.zeros((B, NT + 1))})
    with pytest.raises((ValueError, MlflowException), match=r"params.constraint must be one of"):
        served.predict({**inputs, "mass": np.zeros((B, NT))}, params={"constraint": "softc"})
    with pytest.raises((ValueError, MlflowException), match=r"params.n_samples must be an integer >= 1"):
        served.predict(inputs, params={"constraint": "none", "n_samples": 0})
    with pytest.raises((ValueError, MlflowException), match=r"target_x"):
        served.predict({**inputs, "target_x": inputs["target_x"][:, :, ::-1]}, params={"constraint": "hardc"})
    with pytest.raises(ValueError, match=r"input 'mass' contains NaN or inf"):
        served.predict({**inputs, "mass": np.full((B, NT), np.nan)})
    # numbers only: a string, a boolean or a complex number is the caller's mistake, not a value to convert
    for bad, kind in ((np.full((B, NT), "0.5"), "str"), (np.ones((B, NT), dtype=bool), "bool"),
                      (np.ones((B, NT), dtype=complex), "complex128")):
        with pytest.raises(ServingInputError, match=rf"input 'mass' must be an array of real numbers, got {kind}"):
            served.predict({**inputs, "mass": bad})
    with pytest.raises(ServingInputError, match=r"input 'context_u' must be an array of real numbers, got object"):
        served.predict({**inputs, "context_u": [[1.0, None]] * B}, params={"constraint": "none"})
    with pytest.raises(ValueError, match=r"target_x must have shape \(B, nt, nx\) with B >= 1, got \(3, 2\)"):
        served.predict({**inputs, "target_x": inputs["target_x"][:, :, 0], "mass": np.zeros((B, NT))})
    with pytest.raises(ValueError, match=r"with B >= 1, got \(0, 2, 12\)"):
        served.predict({k: v[:0] for k, v in inputs.items()}, params={"constraint": "none"})
    # shapes that do not fit together are the caller's, refused before anything is predicted (not "the model's
    # prediction is not a valid Gaussian"); empty axes too (nt = 0 or nx = 0 divided by zero, Nc = 0 gave NaN)
    for name, bad, pattern in [("context_x", inputs["context_x"][:, :3], r"context_t/x/u must share a shape"),
                               ("context_t", inputs["context_t"][:, :0], r"\(B, Nc\) with Nc >= 1"),
                               ("target_t", inputs["target_t"][:1], r"target_t \(B, nt\) with B = 3"),
                               ("target_x", inputs["target_x"][:, :, :0], r"nt, nx >= 1; got \(3, 2, 0\)")]:
        arrays = {**inputs, name: bad}
        if name == "context_t":
            arrays.update(context_x=bad, context_u=bad)
        with pytest.raises(ServingInputError, match=pattern) as caught:
            served.predict(arrays, params={"constraint": "none"})
        assert "valid Gaussian" not in str(caught.value), name
    with pytest.raises(ServingInputError, match=r"target_x must be .* nt, nx >= 1; got \(3, 0, 12\), \(3, 0\)"):
        served.predict({**inputs, "target_t": inputs["target_t"][:, :0], "target_x": inputs["target_x"][:, :0]},
                       params={"constraint": "none"})
    # outside the case's domain the network would extrapolate: refused by name and range
    late = inputs["target_t"].copy()
    late[1, 1] = 5.0
    with pytest.raises(ServingInputError, match=r"input 'target_t' must lie in the case's t domain \[0, 1\].*"
                                                r"1 value\(s\) do not \(first: index \(1, 1\), 5\)"):
        served.predict({**inputs, "target_t": late}, params={"constraint": "none"})
    with pytest.raises(ServingInputError, match=r"input 'context_x' must lie in the case's x domain \[0, 6.28319\]"):
        served.predict({**inputs, "context_x": inputs["context_x"] - 1.0}, params={"constraint": "none"})
    # an end rounded in float32 is the end
    ends = inputs["target_x"].copy()
    ends[:, :, -1] = float(np.float32(2 * np.pi))
    assert ends[0, 0, -1] > 2 * np.pi
    assert served.predict({**inputs, "target_x": ends}, params={"constraint": "none"})["mean"].shape == (B, NT, NX)


def test_a_served_black_box_bounds_the_network_working_memory_by_its_contexts_and_targets(store: str,
                                                                                           monkeypatch) -> None:
    """The network's own working entries per function (:data:`~physml.serving.SERVED_FEATURES`): its
    self-attention scores heads·Nc² (materialised: one function of 32 000 contexts took 15.5 GiB) and its
    hidden·Nc context features, and its (hidden + latent + 2)·nt·nx target features. A function that alone
    needs more is refused before anything is predicted, naming the inputs and the most they may hold (exactly:
    that many are answered); a call whose functions together need more is predicted in parts, to the
    one call's draws."""
    _, served = _register("heat", "anp", "probconserv", ANP_CONFIG, n_samples=4)  # hidden 8, latent 8, 2 heads
    inputs = _black_box_inputs()
    mass = np.random.default_rng(11).normal(size=(B, NT))
    most = math.isqrt(serving.SERVED_FEATURES // 2)  # 2 heads: heads·Nc² <= the bound (hidden 8·Nc far below)
    with pytest.raises(ServingInputError, match=rf"inputs 'context_t', 'context_x', 'context_u' of Nc = {most + 1} "
                                                rf"contexts per function need heads × Nc² = 2 × {most + 1}² = "
                                                rf"{2 * (most + 1)**2} self-attention entries, more than the "
                                                rf"{serving.SERVED_FEATURES} .* at most {most} contexts"):
        served.predict({**inputs, **{k: np.resize(inputs[k], (B, most + 1)) for k in ("context_t", "context_x",
                                                                                    "context_u")}, "mass": mass})
    targets = NT * NX * 18  # 24 targets of 8 + 8 + 2 features
    real = probconserv.predict_batches
    parts = []

    def recorded(net, arrays, *args, **kwargs):
        parts.append(len(arrays["target_x"]))
        yield from real(net, arrays, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(probconserv, "predict_batches", recorded)
        whole = served.predict({**inputs, "mass": mass})
        patch.setattr(serving, "SERVED_FEATURES", targets)  # one function per part
        in_parts = served.predict({**inputs, "mass": mass})
        assert parts == [3, 1, 1, 1]
        np.testing.assert_allclose(in_parts["mean"], whole["mean"], rtol=1e-5, atol=1e-7)
        g = trapezoid_weights(inputs["target_x"], (0.0, 2 * np.pi), periodic=True)
        np.testing.assert_allclose(np.einsum("bti,bti->bt", g, in_parts["mean"]), mass, rtol=0, atol=1e-12)
        more = {k: np.resize(inputs[k], (B, 15)) for k in ("context_t", "context_x", "context_u")}
        with pytest.raises(ServingInputError, match=rf"Nc = 15 contexts per function need heads × Nc² = 2 × 15² = "
                                                    rf"450 self-attention entries, more than the {targets} .* at most "
                                                    rf"14 contexts per function"):
            served.predict({**inputs, **more, "mass": mass})
        served.predict({**inputs, **{k: v[:, :14] for k, v in more.items()}, "mass": mass})  # the most it may send
        patch.setattr(serving, "SERVED_FEATURES", targets - 1)
        with pytest.raises(ServingInputError, match=rf"input 'target_x' of nt × nx = {NT * NX} targets per function "
                                                    rf"needs 18 features each, {targets} entries, more than the "
                                                    rf"{targets - 1} .* at most {NT * NX - 1} targets per function"):
            served.predict({**inputs, "mass": mass})
    ensemble = {"case": "heat", "model": "ensemble", "members": 2, "hidden": 8, "layers": 2,
                **{k: ANP_CONFIG[k] for k in ("t_range", "x_range", "periodic")}}
    _, served_ensemble = _register("heat", "ensemble", "probconserv", ensemble)
    with monkeypatch.context() as patch:  # no attention: a member's contexts cost hidden × Nc
        patch.setattr(serving, "SERVED_FEATURES", 8 * NC - 1)
        with pytest.raises(ServingInputError, match=rf"Nc = {NC} contexts per function need hidden × Nc = 8 × {NC} = "
                                                    rf"{8 * NC} feature entries.* at most {NC - 1} contexts"):
            served_ensemble.predict({**inputs, "mass": mass})


def test_a_served_operator_network_predicts_a_large_batch_in_parts(store: str, monkeypatch) -> None:
    """An operator network holds max(width, proj_width) channels at every grid point of a sample (a 1-D + time
    one answers nt steps per input point): a batch needing more than :data:`~physml.serving.SERVED_FEATURES`
    is predicted a few samples at a time (the boundary data held exactly; the output the whole batch's forward
    to round-off), a sample that alone needs more is refused naming ``u``, and boundary data for another
    number of samples or of another shape name themselves with the call's batch, not a part's."""
    net, served = _register("heat_neumann", "fno", "boon", NEUMANN_CONFIG)  # width 8, proj_width 8, nt 4
    rng = np.random.default_rng(5)
    nx = 20
    u, bc = rng.normal(size=(B, nx)), rng.normal(size=(B, 4, 2))
    per_sample = 8 * nx * 4
    with torch.no_grad():
        expected = net.double()(torch.as_tensor(u), torch.as_tensor(bc)).numpy()
    calls = []
    with monkeypatch.context() as patch:
        patch.setattr(serving, "SERVED_FEATURES", 2 * per_sample)
        patch.setattr(type(net), "__call__", lambda self, *a, **k: calls.append(len(a[0])) or torch.nn.Module.__call__(
            self, *a, **k))
        out = served.predict({"u": u, "bc": bc})["u"]
        assert calls == [2, 1]
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
        h = 1.0 / (nx - 1)
        left = (-1.5 * out[:, 0] + 2.0 * out[:, 1] - 0.5 * out[:, 2]) / h
        right = (1.5 * out[:, -1] - 2.0 * out[:, -2] + 0.5 * out[:, -3]) / h
        np.testing.assert_allclose(np.stack([left, right], axis=-1), bc, rtol=0, atol=1e-10)
        with pytest.raises(ServingInputError, match=r"input 'bc' \(grid axis 0\) must have shape \(3, 4, 2\) .*got "
                                                    r"\(3, 3, 2\)"):
            served.predict({"u": u, "bc": bc[:, :3]})
        with pytest.raises(ServingInputError, match=r"input 'bc' must hold one entry per sample of 'u' \(B = 3\), "
                                                    r"got shape \(2, 4, 2\)"):
            served.predict({"u": u, "bc": bc[:2]})
        patch.setattr(serving, "SERVED_FEATURES", per_sample - 1)
        with pytest.raises(ServingInputError, match=rf"input 'u' on a grid of {nx} × 4 points needs max\(width, "
                                                    rf"proj_width\) = 8 channels at each, {per_sample} entries per "
                                                    rf"sample, more than the {per_sample - 1} .* send a coarser grid"):
            served.predict({"u": u, "bc": bc})


def test_a_served_operator_in_parts_names_bad_inputs_with_the_whole_call(monkeypatch) -> None:
    """In parts, a wrongly shaped ``u`` or ``bc`` is named with the call's batch, not the part's (a plain FNO's ``u``;
    a one-axis ``bc``, whose shape prints as (k,)); an empty grid axis is the network's own refusal, not a
    division by zero; the time axis is counted with its padding."""
    plain = {"variant": "plain", "fno": {"n_space": 1, "nt": None, "width": 8, "modes": 4, "n_layers": 2,
                                         "proj_width": 8}}
    dirichlet = {"variant": "boon", "boundary": "dirichlet", "neumann_order": 2, "fno": plain["fno"]}
    padded = {"variant": "plain", "fno": {**NEUMANN_CONFIG["fno"], "time_padding": 2}}
    served_plain = serving.ServedNetwork(build_model(plain), plain)
    served_dirichlet = serving.ServedNetwork(build_model(dirichlet), dirichlet)
    u = np.random.default_rng(7).normal(size=(B, 20))
    with monkeypatch.context() as patch:
        patch.setattr(serving, "SERVED_FEATURES", 2 * 8 * 20)  # parts of 2 samples
        with pytest.raises(ServingInputError, match=r"u must have shape \(B, n0\), got \(3, 20, 5\)"):
            served_plain.predict({"u": np.repeat(u[..., None], 5, axis=-1)})
        with pytest.raises(ServingInputError,
                           match=r"input 'bc' \(grid axis 0\) must have shape \(3, 2\) .*got \(3,\)"):
            served_dirichlet.predict({"u": u, "bc": np.zeros(B)})
        patch.setattr(serving, "SERVED_FEATURES", 2 * 8 * 20 * (4 + 2))  # 4 steps and 2 of padding: parts of 2
        assert serving._operator_rows(build_model(padded), torch.zeros(B, 20)) == 2
    with pytest.raises(ServingInputError, match=r"grid axis 0 has 0 points; the dirichlet condition needs at least 3"):
        served_dirichlet.predict({"u": np.zeros((B, 0)), "bc": np.zeros((B, 2))})
    with pytest.raises(ServingInputError, match=r"grid axis 0 has n = 0 points"):
        served_plain.predict({"u": np.zeros((B, 0))})


def test_a_served_neumann_boon_network_holds_its_stencil_derivative(store: str) -> None:
    """1-D + time, Neumann: the order-2 one-sided stencil derivative of the served output equals the data at
    both ends and every time step, and the output is the network's own float64 forward."""
    net, served = _register("heat_neumann", "fno", "boon", NEUMANN_CONFIG)
    assert served.metadata.get_params_schema() is None  # an operator network takes no params
    rng = np.random.default_rng(3)
    nx = 20
    u, bc = rng.normal(size=(B, nx)), rng.normal(size=(B, 4, 2))  # (B, nx); (B, nt, 2)
    out = served.predict({"u": u, "bc": bc})["u"]  # (B, nx, nt)
    h = 1.0 / (nx - 1)
    left = (-1.5 * out[:, 0] + 2.0 * out[:, 1] - 0.5 * out[:, 2]) / h
    right = (1.5 * out[:, -1] - 2.0 * out[:, -2] + 0.5 * out[:, -3]) / h
    np.testing.assert_allclose(np.stack([left, right], axis=-1), bc, rtol=0, atol=1e-10)
    with torch.no_grad():
        expected = net.double()(torch.as_tensor(u), torch.as_tensor(bc)).numpy()
    np.testing.assert_array_equal(out, expected)
    with pytest.raises((ValueError, MlflowException), match=r"missing input\(s\) \['bc'\]"):
        served.predict({"u": u})


def test_a_served_cavity_network_takes_both_pairs_of_walls_by_name(store: str) -> None:
    """2-D + time, two channels, Dirichlet on x and y: ``bc_x`` (B, ny, nt, 2, c), ``bc_y`` (B, nx, nt, 2, c); the
    y-walls hold everywhere, the x-walls away from the corners (where the y-walls' data win)."""
    net, served = _register("cavity", "fno", "boon", CAVITY_CONFIG)
    rng = np.random.default_rng(4)
    nx, ny = 9, 8
    u = rng.normal(size=(B, nx, ny, 2))
    walls = {"bc_x": rng.normal(size=(B, ny, 4, 2, 2)), "bc_y": rng.normal(size=(B, nx, 4, 2, 2))}
    out = served.predict({"u": u, **walls})["u"]  # (B, nx, ny, nt, c)
    np.testing.assert_allclose(out[:, :, [0, -1]], walls["bc_y"].transpose(0, 1, 3, 2, 4), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[:, [0, -1], 1:-1], walls["bc_x"][:, 1:-1].transpose(0, 3, 1, 2, 4),
                               rtol=0, atol=1e-12)
    with torch.no_grad():
        expected = net.double()(torch.as_tensor(u), {0: torch.as_tensor(walls["bc_x"]),
                                                     1: torch.as_tensor(walls["bc_y"])}).numpy()
    np.testing.assert_array_equal(out, expected)
    with pytest.raises((ValueError, MlflowException), match=r"missing input\(s\) \['bc_y'\]"):
        served.predict({"u": u, "bc_x": walls["bc_x"]})
    with pytest.raises(ValueError, match=r"input 'bc_x' \(grid axis 0\) must have shape \(3, 8, 4, 2, 2\)"):
        served.predict({"u": u, "bc_x": walls["bc_x"][:, :-1], "bc_y": walls["bc_y"]})


def test_a_version_logged_before_pyfunc_models_becomes_one(store: str) -> None:
    """Weights logged bare (as before versions carried their configuration and MLmodel): not a pyfunc model;
    attach_model_config + attach_pyfunc make it one, once."""
    torch.manual_seed(0)
    net = build_model(NEUMANN_CONFIG)
    record = tracking.log_experiment("heat_neumann", "fno", "boon", "quick", metrics={"rel_l2": 0.1},
                                     state_dict=net.state_dict())
    assert record is not None
    uri = f"models:/{record.model_name}/1"
    with pytest.raises(MlflowException, match='Could not find an "MLmodel"'):
        mlflow.pyfunc.load_model(uri)
    assert tracking.attach_model_config(record.run_id, NEUMANN_CONFIG)
    assert tracking.attach_pyfunc(record.run_id, NEUMANN_CONFIG)
    assert not tracking.attach_pyfunc(record.run_id, NEUMANN_CONFIG)
    u, bc = np.ones((1, 20)), np.zeros((1, 4, 2))
    with torch.no_grad():
        expected = net.double()(torch.as_tensor(u), torch.as_tensor(bc)).numpy()
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(uri).predict({"u": u, "bc": bc})["u"], expected)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_physml_serve_names_what_is_not_there(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``physml serve`` refuses, naming the problem, before it starts a server: a model outside the case's matrix
    group, a SQLite store that does not exist (without making one), a version or alias not registered or a
    version number < 1, a version logged before versions were pyfunc models."""
    from physml import cli

    common = ["serve", "--case", "heat", "--params", str(ROOT / "params.yaml")]
    assert cli.main([*common, "--model", "fno"]) == 2
    assert "'fno' is not configured for heat" in capsys.readouterr().err
    db = Path(store.removeprefix("sqlite:///"))
    assert cli.main([*common, "--model", "anp"]) == 2  # a --root (or store) where nothing was tracked
    assert f"no MLflow store at {db}: nothing was tracked there" in capsys.readouterr().err
    assert not db.exists()  # and none is made there
    tracking.log_experiment("heat", "ensemble", "none", "quick", metrics={"mse": 1.0})
    assert cli.main([*common, "--model", "anp"]) == 2
    assert "'physml-heat-anp-quick' has no alias 'champion'" in capsys.readouterr().err
    tracking.log_experiment("heat", "anp", "probconserv", "quick", metrics={"mse": 1.0},
                            state_dict=build_model(ANP_CONFIG).state_dict())  # bare weights, no MLmodel
    assert cli.main([*common, "--model", "anp", "--version", "2"]) == 2
    err = capsys.readouterr().err
    assert "has no version '2' in" in err and "(versions: [1])" in err
    assert cli.main([*common, "--model", "anp", "--version", "1"]) == 2
    assert "version 1 of 'physml-heat-anp-quick' is not a pyfunc model" in capsys.readouterr().err
    assert cli.main([*common, "--model", "anp", "--version", "-1"]) == 2
    assert "--version must be a registered version number (>= 1), got -1" in capsys.readouterr().err


@pytest.mark.services
def test_physml_serve_answers_a_rest_call_as_the_model_does(store: str, tmp_path: Path) -> None:
    """``physml serve --case heat --model anp`` (``mlflow models serve`` of the champion, started with a bare
    PATH: the command puts its environment's bin folder first): a JSON call with inputs and params gets the
    in-process prediction (JSON floats round-trip exactly); a call without the mass gets a 400 whose stack
    trace names it."""
    _, served = _register("heat", "anp", "probconserv", ANP_CONFIG, n_samples=4, seed=3)
    tracking.promote_if_better("physml-heat-anp-quick", 1, "mse")
    port = _free_port()
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    with (tmp_path / "serve.log").open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "physml.cli", "serve", "--case", "heat", "--model", "anp",
                                   "--params", str(ROOT / "params.yaml"), "--port", str(port)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"physml serve did not come up:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.5)
        inputs = _black_box_inputs()
        mass = np.full((B, NT), 0.5)
        status, answer = _post(f"http://127.0.0.1:{port}/invocations",
                               {"inputs": {k: v.tolist() for k, v in {**inputs, "mass": mass}.items()},
                                "params": {"constraint": "probconserv", "n_samples": 6}})
        assert status == 200, answer
        expected = served.predict({**inputs, "mass": mass}, params={"n_samples": 6})
        for key in ("mean", "var"):
            np.testing.assert_array_equal(np.asarray(answer["predictions"][key]), expected[key])
        status, answer = _post(f"http://127.0.0.1:{port}/invocations",
                               {"inputs": {k: v.tolist() for k, v in inputs.items()}})
        assert status == 400 and "missing input(s) ['mass']" in answer["message"]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
