"""ProbConserv experiments: train the black boxes, apply the constraints, evaluate (Hansen et al., ICML 2023).

One experiment is ``case × model`` (model ∈ {anp, ensemble}) with every constraint of
``params.matrix.probconserv.constraints``:

- ``none``: the unconstrained black box N(μ, Σ) (``plain.pt``);
- ``softc``: its twin trained with the conservation penalty λ·mean (G μ − b)² added to the loss
  (λ = ``params.models.softc.penalty``; ``softc.pt``), used without an update;
- ``hardc``: μ' = μ − Gᵀ (G Gᵀ)⁻¹ (G μ − b) on the plain prediction, variance unchanged;
- ``probconserv``: μ' = μ − Σ Gᵀ (G Σ Gᵀ)⁻¹ (G μ − b), Σ' = Σ − Σ Gᵀ (G Σ Gᵀ)⁻¹ G Σ (Eq. 5, σ_G = 0),
  with Σ the model's per-slice predictive covariance (the law-of-total-variance mixture of the ANP's
  latent samples or the ensemble's members, plus the diagonal decoder noise);
- ``probconserv_mixture``: the plain black box's components (latent draws, members) N(μ_s, diag σ_s²) each
  updated as above (σ_G = 0) and then mixed (:func:`conditioned_mixture`): the paper's ProbConserv-ANP;
- ``probconserv_nonnegative``: as ``probconserv_mixture``, on cases whose physics keeps u ≥ 0
  (``Problem.nonnegative``: pme, stefan, advection, burgers) each component's most probable u on
  {G u = b, u ≥ 0} (:func:`physml.constraints.clamp_to_bound`; the points held at 0 keep their variance, the
  rest is conditioned on the mass), then mixed: the mass exact and no negative density; where no point reaches
  0, and on signed cases (heat), it is ``probconserv_mixture``. The reference's optional non-negativity post-step, made part of the update;
- ``probconserv_trained``: the reference's "physnp" network: a twin trained through the constrained likelihood
  (``probconserv_trained.pt``; :func:`physml.models.anp.target_nll`), whose components (latent draws, members)
  N(μ_s, diag σ_s²) are each updated as above (σ_G = 0) and then mixed (:func:`conditioned_mixture`).

G is the trapezoid quadrature row of one time slice and b = M(t) the exact mass
(:func:`physml.constraints.conservation_constraint`), one constraint per slice.

Where this departs from the reference (``../shared/reference/probconserv.md``):

- ``probconserv`` is the update applied once, after training, to the plain black box's predictive
  covariance (the mixture's moments). The reference's evaluated "ProbConserv-ANP" (``physnp_limit``, every
  case) also starts from the plain ANP: it trains a "physnp" network through the constrained likelihood but,
  at evaluation, loads the plain ANP's weights into it (``anp_state_dict: ${methods.anp.state_dict}`` in its
  experiment configs) and updates each latent draw N(μ_s, diag σ_s²), then mixes the draws. So the paper's
  numbers are the plain ANP's, conditioned per component: ``probconserv_mixture`` here. ``probconserv``
  conditions the mixture as one Gaussian instead, so its correction follows the full predictive covariance
  (where the draws disagree, as well as the decoder's noise); the two agree when the draws do.
- ``probconserv_trained`` is the network the reference trains and then does not evaluate, with two
  differences: its constraint noise σ_G² is fixed at 0 (the reference learns the precision σ_G⁻² from 1e2,
  and its loss has no lower bound in it), and both black boxes get it (the reference: the ANP).
- the Stefan shock-position posterior is read at each test function's last target time (t ≈ 0.1, the end of
  the domain) and averaged over all test functions, at two levels (:data:`SHOCK_LEVELS`); the reference
  reads it at t = 0.05 for one chosen function, at level 0.
- ``softc``'s penalty takes the network's mean on a uniform grid of
  :data:`physml.models.anp.SOFTC_POINTS` positions per training time (no labels are needed there), not on the
  training targets (10 random positions per slice). On those the exact solution itself misses b by about the
  plain ANP's conservation error on the test grid, mean |G u − b| = 0.10 (heat), 0.029 (pme), 0.041 (stefan),
  0.0098 (advection), 0.19 (burgers) on the quick training split, so a penalty there pulled toward a biased
  target (before 2026-11-30); on the grid: 3.5e-17, 8.2e-4, 2.4e-3, 7.5e-4, 0.011.

Files:

    model_dir/plain.pt, softc.pt,          checkpoints of physml.training.fit (best validation epoch)
      probconserv_trained.pt
    model_dir/train_summary.json           best val, epochs per network; data fingerprint
    model_dir.seconds.json                 wall-clock per network, beside the folder (untracked)
    pred_dir/predictions.h5                attrs: data_version, checkpoints (what made it);
                                           /<constraint>/mean, var (N, nt, nx), mass_var (N, nt) = G Σ Gᵀ;
                                           stefan: samples (N, S, nx) of u at each function's last target
                                           time, and cov there
    out_dir/<constraint>.json              flat {metric: float} (DVC metrics)
    out_dir/figures/*.png                  mass over time; Stefan profiles and shock-position histograms
    study_dir/seed_<s>/plain.pt            seed study: the plain network trained with seed s (:func:`seed_study`)
    out_dir/seeds.json                     seed study: test MSE per seed of the post hoc constraints
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from physml import pdes
from physml.atomic import atomic_path, move_contents, staging_dir, write_json
from physml.config import CONSTRAINTS, ParamsModel
from physml.constraints import (clamp_to_bound, condition, conservation_constraint, hardc, most_probable_on_bound,
                                probconserv)
from physml.data.reader import SplitDataset
from physml.experiments import PREDICTIONS_FILE, checkpoints_digest, data_version, rerun
from physml.experiments.seeds import finite_error, seed_folder, seed_summary
from physml.metrics import (
    bound_violation,
    conservation_error,
    gaussian_crps,
    gaussian_log_likelihood,
    interval_coverage,
    mse,
    per_value_key,
    shock_position_posterior,
)
from physml.models import Predictive, build_model, mixture
from physml.models.anp import check_shapes, function_seeds
from physml.models.predictive import sample_gaussian
from physml.threads import torch_threads
from physml.training import (TrainConfig, code_version, fit, load_checkpoint, model_loss, resumable, seed_everything,
                             write_wall_clock)

MODELS = ("anp", "ensemble")
TRAINED = "probconserv_trained"
"""The constraint whose network is trained through the constrained likelihood (its checkpoint's stem too)."""
PER_COMPONENT = "probconserv_mixture"
"""The constraint that updates each component of the plain network, then mixes (the paper's ProbConserv-ANP)."""
NONNEGATIVE = "probconserv_nonnegative"
"""The per-component update that also keeps u ≥ 0 where the case's physics does (:func:`lower_bound`)."""
CONDITIONED = (PER_COMPONENT, NONNEGATIVE, TRAINED)
"""Constraints whose predictive is built already conditioned, component by component (Σ' singular along G,
but for probconserv_nonnegative's held points, which keep their variance)."""
POST_HOC = ("none", "hardc", "probconserv", PER_COMPONENT, NONNEGATIVE)
"""Constraints made from the plain network alone (the seed study's: softc and probconserv_trained are networks
of their own, trained with the project seed only)."""
BATCH_KEYS = ("context_t", "context_x", "context_u", "target_t", "target_x", "target_u", "mass")
SUMMARY = "train_summary.json"
N_POSTERIOR_SAMPLES = 500
"""Samples of u at the last target time per test function (Stefan shock-position posterior)."""
PREDICT_BATCH = 64
"""At most this many test functions per ``predict`` call."""
PREDICT_COV_ENTRIES = 2**27
"""Budget of covariance entries (B·nt·nx², ~1 GiB in float64) per ``predict`` call; bounds memory on the
paper's 201 × 201 test grid."""


# ---- shared helpers ---------------------------------------------------------------------------
def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"model: {model!r} is not a ProbConserv black box; allowed: {', '.join(MODELS)}")


def _problem(case: str) -> Any:
    problem = pdes.get(case)
    if problem.family != "probconserv":
        raise ValueError(f"case: {case!r} is a {problem.family} case; the ProbConserv experiments take "
                         f"{', '.join(n for n in pdes.names() if pdes.get(n).family == 'probconserv')}")
    return problem


def _split(data_dir: Path, split: str, case: str, profile: str) -> Path:
    path = Path(data_dir) / f"{split}.h5"
    if not path.is_file():
        raise ValueError(f"no {split} split {path}; run {rerun('generate', case, profile)} first")
    return path


def _load_split(data_dir: Path, split: str, case: str, profile: str) -> dict[str, np.ndarray]:
    """Every per-sample array of one split in memory (float64), with the parameter names; checks its case."""
    with SplitDataset(_split(data_dir, split, case, profile)) as ds:
        if ds.attrs.get("case") != case:
            raise ValueError(f"data_dir: {ds.path} holds case {ds.attrs.get('case')!r}, expected {case!r}")
        out = {k: np.asarray(ds[k][...], dtype=np.float64) for k in (*BATCH_KEYS, "params")}
        out["parameter_names"] = np.asarray(ds.parameter_names)
    return out


class _InMemory(Dataset):
    """A split held in memory as float32 tensors; item i = {key: tensor of function i} (BATCH_KEYS)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.tensors = {k: torch.as_tensor(arrays[k], dtype=torch.float32) for k in BATCH_KEYS}
        self.n = int(self.tensors["target_u"].shape[0])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def model_config(case: str, model: str, params: ParamsModel, softc: bool = False,
                 constrained: bool = False) -> dict[str, Any]:
    """The json-able config that rebuilds the network (``physml.models.build_model``) for the active profile.

    ``softc``: the SoftC twin, physics_weight = ``params.models.softc.penalty`` (the ANP's is model "softc").
    ``constrained``: the twin trained through the constrained likelihood (``constrained_likelihood``, σ_G² =
    the model's ``constraint_noise_var``).
    """
    if softc and constrained:
        raise ValueError("model_config: softc and constrained are two different twins; ask for one")
    _check_model(model)
    problem = _problem(case)
    s = params.model_settings(model, case)
    common = {"case": case, "hidden": s.hidden, "min_std": s.min_std, "t_range": list(problem.t_domain),
              "x_range": list(problem.x_domain), "periodic": problem.boundary == "periodic"}
    if model == "anp":
        cfg = {**common, "model": "anp", "latent": s.latent, "heads": s.heads}
    else:
        cfg = {**common, "model": "ensemble", "members": s.members, "layers": s.layers}
    if softc:
        penalty = params.models.softc.penalty
        if not penalty > 0:
            raise ValueError(f"models.softc.penalty: must be > 0 to train a SoftC model, got {penalty}")
        cfg.update(model="softc" if model == "anp" else "ensemble", physics_weight=float(penalty))
    if constrained:
        cfg.update(constrained_likelihood=True, constraint_noise_var=s.constraint_noise_var)
    return cfg


def _train_config(case: str, model: str, params: ParamsModel, seed: int) -> TrainConfig:
    t = params.model_settings(model, case).train
    return TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                       lr_step=t.lr_step, lr_gamma=t.lr_gamma, grad_clip=t.grad_clip, seed=seed, device="auto")


# ---- train --------------------------------------------------------------------------------------
def train(case: str, model: str, params: ParamsModel, data_dir: Path, out_dir: Path, progress: bool = True,
          seed: int | None = None, plain_only: bool = False) -> Path:
    """Train ``plain.pt`` and the twins of the matrix's constraints: ``softc.pt`` ("softc") and
    ``probconserv_trained.pt`` ("probconserv_trained"), each through one ``fit``; with ``plain_only`` the plain
    network alone (the seed study's). ``seed`` (default ``params.seed``) seeds the initial weights and the
    batch order.

    Loss per function: the model's NLL (ANP: + KL, Kim et al. 2019 Eq. 4); SoftC adds λ (G μ − b)²; the
    trained ProbConserv twin replaces the NLL by the constrained one (:func:`physml.models.anp.target_nll`).
    Every network starts from the same seed, so they differ only by the objective.
    Writes ``out_dir/train_summary.json`` = {"plain"|"softc"|"probconserv_trained": {best_val, best_epoch, epochs, parameters},
    "data_fingerprint", "model"} (wall-clock seconds beside the folder: :func:`physml.training.write_wall_clock`)
    and returns ``out_dir``. A checkpoint of the same data and settings is resumed (an interrupted run
    continues); any other is retrained from scratch (:func:`physml.training.resumable`).
    """
    _check_model(model)
    _problem(case)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    fp = data_version(data_dir, case, params.profile)
    train_arrays = _load_split(data_dir, "train", case, params.profile)
    val_arrays = _load_split(data_dir, "val", case, params.profile)
    tc = _train_config(case, model, params, params.seed if seed is None else seed)
    summary_path = out_dir / SUMMARY
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path.unlink(missing_ok=True)

    jobs = [("plain", model_config(case, model, params))]
    constraints = [] if plain_only else params.matrix.probconserv.constraints
    for name, cfg in (("softc", {"softc": True}), (TRAINED, {"constrained": True})):
        if name in constraints:
            jobs.append((name, model_config(case, model, params, **cfg)))
        else:
            (out_dir / f"{name}.pt").unlink(missing_ok=True)

    summary: dict[str, Any] = {"case": case, "model": model, "data_fingerprint": fp,
                               "softc_penalty": float(params.models.softc.penalty)}
    seconds: dict[str, float] = {}
    train_ds, val_ds = _InMemory(train_arrays), _InMemory(val_arrays)
    with torch_threads():
        for name, cfg in jobs:
            path = out_dir / f"{name}.pt"
            started = time.perf_counter()
            seed_everything(tc.seed)  # the initial weights too, not only fit()'s batch order
            net = build_model(cfg)
            resume = resumable(path, cfg, tc, fp, code=code_version(net, model_loss))
            result = fit(net, model_loss, train_ds, val_ds, tc, path, cfg, resume=resume, progress=progress,
                         data_version=fp)
            seconds[name] = time.perf_counter() - started
            summary[name] = {
                "best_val": float(result.best_val),
                "best_epoch": int(result.best_epoch),
                "epochs": int(tc.epochs),
                "parameters": int(sum(p.numel() for p in net.parameters())),
            }
    write_json(summary_path, summary)
    write_wall_clock(out_dir, seconds)
    return out_dir


# ---- constrain ----------------------------------------------------------------------------------
def conservation_system(case: str, arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(G, b) of every test function: G (N, nt, 1, nx) trapezoid rows, b (N, nt, 1) = M(t) (Eq. 3)."""
    problem = _problem(case)
    names = [str(n) for n in arrays["parameter_names"]]
    gs, bs = [], []
    for i in range(arrays["target_u"].shape[0]):
        p = dict(zip(names, (float(v) for v in arrays["params"][i]), strict=True))
        g, b = conservation_constraint(problem, p, arrays["target_t"][i], arrays["target_x"][i])
        gs.append(g)
        bs.append(b)
    return np.stack(gs), np.stack(bs)


def _load_model(path: Path, case: str, model: str, profile: str) -> torch.nn.Module:
    """The best weights of a checkpoint; ValueError if it belongs to another case or model family."""
    if not path.is_file():
        raise ValueError(f"no checkpoint {path}; run {rerun('train', case, profile, model)} first")
    net, cfg, _ = load_checkpoint(path, build_model, map_location="cpu", expect_case=case)
    family = "ensemble" if cfg.get("model") == "ensemble" else "anp"
    if family != model:
        raise ValueError(f"checkpoint {path} holds a {cfg.get('model')!r} network; expected a {model!r} model")
    return net


def lower_bound(case: str) -> float | None:
    """The lower bound the physics of ``case`` keeps u above: 0 for a nonnegative problem (a density), else None."""
    return 0.0 if _problem(case).nonnegative else None


def conditioned_mixture(means: torch.Tensor, variances: torch.Tensor, G: np.ndarray, b: np.ndarray,
                        lower: float | None = None) -> Predictive:
    """The mixture of the components N(μ_s, diag σ_s²), each conditioned on G u = b (σ_G = 0) first; with a
    ``lower`` bound, each on G u = b and u ≥ ``lower`` (:func:`~physml.constraints.clamp_to_bound`: the points at
    the bound in the component's most probable u are held there, the rest is conditioned). A held point keeps
    its prior variance σ_s² in Σ'_s: the conditioned Gaussian gives it none, which claims the field is exactly
    ``lower`` there, and where the truth is a little above it the log-likelihood collapsed (quick burgers
    ensemble: −482 against the per-component update's 0.85). The mean still holds G μ' = b exactly; G Σ' Gᵀ is
    then the mean over components of Σ over their held points of g² σ², not 0.

    μ'_s and Σ'_s = diag σ_s² − W_sᵀ W_s from :func:`~physml.constraints.probconserv` of component s (Eq. 5,
    as a rank-k downdate), then the law of total variance: μ' = (1/S) Σ_s μ'_s,
    Σ' = (1/S) Σ_s Σ'_s + (1/S) Σ_s (μ'_s − μ')(μ'_s − μ')ᵀ. Every μ'_s has the mass b, so G μ' = b and,
    without a bound, G Σ' Gᵀ = 0 up to round-off. The downdates are summed in one product, so the cost is about the plain
    mixture's, not S dense updates. Shapes: means, variances (S, B, nt, nx); G (B, nt, 1, nx); b (B, nt, 1).
    Returns float64 tensors with cov.
    """
    prior_var = variances  # a held point's variance stays its component's (docstring)
    if lower is not None:
        means, variances = clamp_to_bound(means, variances, torch.as_tensor(G), torch.as_tensor(b), lower)
    conditioned, factors = probconserv(means, variances, G, b, noise_var=0.0, factor=True)
    within = torch.einsum("s...ki,s...kj->...ij", factors, factors)  # Σ_s W_sᵀ W_s, built into Σ' in place
    del factors
    within.div_(-means.shape[0])
    diagonal = within.diagonal(dim1=-2, dim2=-1)
    diagonal.add_(prior_var.double().mean(0)).clamp_(min=0.0)  # v − Σ W² ≥ 0 but for round-off
    return mixture(conditioned, None, full_cov=True, within_cov=within)


class PredictedBatch(NamedTuple):
    """One batch of functions of :func:`predict_batches`."""

    functions: slice
    mixed: Predictive | None
    conditioned: dict[str, Predictive]
    last: tuple[np.ndarray, np.ndarray] | None
    """The components' means and variances μ_s, σ_s² at the last target time, each float64 (S, B, nx), when asked
    for (``last``); else None."""


def prediction_batch(nt: int, nx: int) -> int:
    """How many functions :func:`predict_batches` predicts at once on targets of nt × nx: at most
    :data:`PREDICT_BATCH`, and as many as :data:`PREDICT_COV_ENTRIES` covariance entries (nt·nx² each) allow,
    at least 1."""
    return max(1, min(PREDICT_BATCH, PREDICT_COV_ENTRIES // (nt * nx * nx)))


def predict_batches(net: torch.nn.Module, arrays: Mapping[str, np.ndarray], n_samples: int, seed: int,
                    path: Path | str, G: np.ndarray | None = None, b: np.ndarray | None = None, mixed: bool = True,
                    updates: Mapping[str, float | None] | None = None, first_index: int = 0, last: bool = False,
                    ) -> Iterator[PredictedBatch]:
    """The model's predictive at the targets of ``arrays`` (context_t/x/u (N, Nc), target_t (N, nt), target_x
    (N, nt, nx)), one batch of functions at a time, as a :class:`PredictedBatch`
    ``(functions, mixed, conditioned, last)``, each predictive a float64 numpy Predictive with mean/var
    (B, nt, nx) and cov (B, nt, nx, nx), at most :data:`PREDICT_COV_ENTRIES` covariance entries per batch;
    ``mixed`` the mixture N(μ, Σ_slice) of the network's components (when ``mixed``, else None), ``conditioned``
    one predictive per entry ``name: lower`` of ``updates``: the mixture of the components each conditioned on
    the test split's ``G`` (N, nt, 1, nx), ``b`` (N, nt, 1), and kept above ``lower`` unless it is None
    (:func:`conditioned_mixture`); with ``last``, the components themselves at the last target time (Stefan's
    non-negative posterior draws, :func:`_nonnegative_samples`). All come from one call of the network per
    batch. Each function's latent draws are seeded by ``seed`` and its index in the split, ``first_index`` + its
    row (:func:`~physml.models.anp.function_seeds`), so the batching does not move the draws (the float32
    network's rounding may move, ~1e-7 relative at another batch size: :func:`prediction_batch` fixes it for a
    grid, so the same functions give the same bits). Any NaN/inf or
    negative variance → ValueError naming the checkpoint (``path``) and the functions; inputs whose shapes do not
    fit together → ValueError naming them (:func:`~physml.models.anp.check_shapes`), before anything is predicted."""
    updates = dict(updates or {})
    if updates and (G is None or b is None):
        raise ValueError(f"the per-component updates {sorted(updates)} need G and b")
    check_shapes({key: np.shape(arrays[key]) for key in ("context_t", "context_x", "context_u", "target_t",
                                                          "target_x")})
    n, nt, nx = arrays["target_x"].shape
    batch = prediction_batch(nt, nx)
    for lo in range(0, n, batch):
        sl = slice(lo, min(lo + batch, n))
        inputs = [arrays[k][sl] for k in ("context_t", "context_x", "context_u", "target_t", "target_x")]
        seeds = function_seeds(seed, range(first_index + sl.start, first_index + sl.stop))
        try:
            means, variances = net.predict_components(*inputs, n_samples=n_samples, seed=seeds)
            plain = mixture(means, variances, full_cov=True).to_numpy() if mixed else None
            by_bound: dict[float | None, Predictive] = {}  # e.g. heat: no bound, so one mixture serves both
            for lower in set(updates.values()):
                by_bound[lower] = conditioned_mixture(means, variances, G[sl], b[sl], lower).to_numpy()
            conditioned = {name: by_bound[lower] for name, lower in updates.items()}
            at_last = ((means[:, :, -1].double().numpy().copy(), variances[:, :, -1].double().numpy().copy())
                       if last else None)
            del by_bound
            del means, variances
        except ValueError as exc:
            raise ValueError(f"{path}: the model's prediction for test functions [{sl.start}, {sl.stop}) "
                             f"is not a valid Gaussian ({exc})") from exc
        yield PredictedBatch(sl, plain, conditioned, at_last)
        del plain, conditioned, at_last  # before the next batch is predicted: one batch's covariances alive at most


def _applies(constraint: str, case: str) -> bool:
    """False for probconserv_nonnegative on a case whose u changes sign (no :func:`lower_bound`), where it is
    probconserv_mixture under another name: its file is written (the matrix is the same for every case), but
    the figures, the seed study and the report's bars leave the duplicate out."""
    return constraint != NONNEGATIVE or lower_bound(case) is not None


def latent_draws(params: ParamsModel, case: str, model: str) -> int:
    """How many latent draws S a ``model``'s predictive on ``case`` averages over: the ANP's
    ``n_latent_samples`` (its predictive is the mixture of S Gaussians, one per draw of z), and 1 for the
    ensemble, whose members are its components and draw nothing. The constrain stage, the seed study and a
    served network (:mod:`physml.serving`) all predict with it, so they give the same numbers."""
    return params.model_settings("anp", case).n_latent_samples if model == "anp" else 1


def plain_updates(case: str, constraints: list[str]) -> dict[str, float | None]:
    """The per-component updates of the plain network that ``constraints`` ask for: name → lower bound."""
    wanted = {PER_COMPONENT: None, NONNEGATIVE: lower_bound(case)}
    return {name: lower for name, lower in wanted.items() if name in constraints}


def _one_predictive(batch: PredictedBatch) -> Predictive:
    """The one predictive a twin's batch of :func:`predict_batches` holds: its conditioned mixture if it was
    asked for one, else its mixture."""
    return next(iter(batch.conditioned.values())) if batch.conditioned else batch.mixed


def _final_slice_samples(mean: np.ndarray, cov: np.ndarray, n: int, seed: int, G: np.ndarray | None = None,
                         b: np.ndarray | None = None, conditioned: bool = False) -> np.ndarray:
    """n draws of u at each function's last target time: mean (N, nx), cov (N, nx, nx) → (N, n, nx).

    With a constraint (G (N, 1, nx), b (N, 1)), so that every sample satisfies G u' = b to round-off:

    - N(mean, cov) a prior (``conditioned`` false): its draws are conditioned pathwise (Matheron's rule:
      u' = u − Σ Gᵀ (G Σ Gᵀ)⁻¹ (G u − b) is distributed as the conditioned Gaussian N(μ', Σ')), with one gain
      per function shared by its draws (:func:`condition` with ``cov`` (N, 1, nx, nx));
    - N(mean, cov) already conditioned (``conditioned``: G μ = b, a per-component mixture's): its draws are
      projected onto {G u = b} orthogonally, u' = u − Gᵀ (G Gᵀ)⁻¹ (G u − b) (:func:`condition` with Σ = I).
      Where Σ Gᵀ = 0 (probconserv_mixture, the trained twin) the draws lie there in exact arithmetic and miss it
      by about √round-off (drawn through Σ^½ of a singular Σ), so the projection is the identity on the
      distribution's support.

    probconserv_nonnegative's draws are not these: :func:`_nonnegative_samples`.
    """
    rng = np.random.default_rng(seed)
    draws = np.swapaxes(sample_gaussian(mean, cov, n, rng), 0, 1)
    if G is None or b is None:
        return draws
    metric = np.ones((1, 1, draws.shape[-1])) if conditioned else cov[:, None]
    on_constraint, _ = condition(draws, metric, G[:, None], b[:, None])
    return np.asarray(on_constraint)


def _nonnegative_samples(means: np.ndarray, variances: np.ndarray, G: np.ndarray, b: np.ndarray, lower: float,
                         n: int, seed: int) -> np.ndarray:
    """n draws of u at each function's last target time for probconserv_nonnegative, every one ≥ ``lower`` and on
    {gᵀu = b}: means, variances (S, N, nx) the plain network's components N(μ_s, diag σ_s²) there; G (N, 1, nx),
    b (N, 1) → (N, n, nx).

    Perturb-and-MAP per component: draw j of a function picks a component s uniformly (the mixture's weights),
    perturbs its mean, ũ = μ_s + σ_s ε with ε ~ N(0, I), and returns the most probable u of N(ũ, diag σ_s²) on
    {gᵀu = b, u ≥ ℓ} (:func:`~physml.constraints.most_probable_on_bound`), the map that takes μ_s itself to the
    component's mean in the predictions file. Where no point of a draw reaches ℓ the map is Matheron's rule,
    u = ũ − σ_s² g (gᵀũ − b) / (gᵀ σ_s² g), so the draw is an exact one of the component conditioned on
    gᵀu = b (probconserv_mixture's); where points do, it is a draw of the perturbed MAP, which sits at ℓ exactly
    there (the jump to the dry region of a front), not of the Gaussian truncated to u ≥ ℓ. The Gaussian draws
    of the stored N(μ', Σ') (:func:`_final_slice_samples`) gave the held points their prior variance, so they dipped
    below ℓ, which the constraint exists to rule out.
    """
    rng = np.random.default_rng(seed)
    n_components, n_functions, _ = means.shape
    pick = rng.integers(n_components, size=(n_functions, n))
    rows = np.arange(n_functions)[:, None]
    mu, var = means[pick, rows], variances[pick, rows]  # (N, n, nx): each draw's component
    perturbed = mu + np.sqrt(var) * rng.standard_normal(mu.shape)
    return most_probable_on_bound(torch.from_numpy(perturbed), torch.from_numpy(var),
                                  torch.from_numpy(G[:, None]), torch.from_numpy(b[:, None]), lower).numpy()


def constrained(name: str, plain: Predictive, twins: Mapping[str, Predictive], G: np.ndarray,
                b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (B, nt, nx), cov (B, nt, nx, nx)) of constraint ``name`` for one batch of :func:`predict_batches`
    (as :func:`constrain` writes it; ``physml.serving`` serves it): the plain
    model's predictive (none), a twin network's or a per-component one (softc; probconserv_trained,
    probconserv_mixture and probconserv_nonnegative, already conditioned), the mean
    projected (hardc) or the exact update (probconserv) of the plain model's, on that batch's G (B, nt, 1, nx),
    b (B, nt, 1)."""
    if name == "none":
        return plain.mean, plain.cov
    if name in twins:
        return twins[name].mean, twins[name].cov
    if name == "hardc":
        mean, cov = hardc(plain.mean, plain.cov, G, b)
    elif name == "probconserv":
        mean, cov = probconserv(plain.mean, plain.cov, G, b, noise_var=0.0)
    else:
        raise ValueError(f"matrix.probconserv.constraints: unknown constraint {name!r}; allowed: "
                         f"{', '.join(CONSTRAINTS['probconserv'])}")
    return np.asarray(mean), np.asarray(cov)


def constrain(case: str, model: str, params: ParamsModel, data_dir: Path, model_dir: Path, out_dir: Path) -> Path:
    """Predict the test split and apply every constraint of the matrix; write ``out_dir/predictions.h5``.

    Per constraint c the file holds ``/c/mean`` and ``/c/var`` (N, nt, nx) (var = the marginal variance;
    for ProbConserv diag Σ'), ``/c/mass_var`` (N, nt), the variance G Σ Gᵀ of each slice's quadrature mass
    (with the covariances between points: 0 up to round-off after ProbConserv's update; for
    probconserv_nonnegative the held points' variance), and for cases
    with a front (stefan) ``/c/cov_last`` (N, nx, nx) and
    ``/c/samples`` (N, S, nx): S draws of u at each function's last target time from N(μ, Σ) (ProbConserv: the
    prior's draws conditioned pathwise; the per-component mixtures, probconserv_mixture and the trained twin:
    draws of their N(μ', Σ') through Σ'^½, projected onto {G u = b}; probconserv_nonnegative: each component's
    draws put through its bounded map, :func:`_nonnegative_samples`, so they are ≥ 0 too; every draw of any of
    them conserves mass to round-off). Written to a temporary file and renamed.
    """
    _check_model(model)
    _problem(case)
    constraints = list(params.matrix.probconserv.constraints)
    arrays = _load_split(data_dir, "test", case, params.profile)
    G, b = conservation_system(case, arrays)
    n_samples = latent_draws(params, case, model)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    # one batch of functions at a time: the full covariances of every function and time slice would not fit
    # in memory at the paper's sizes (pme: 150 × 201 × 201² floats, 9.7 GB per array); only what is written
    # is kept, and for a front the last slice's mean and covariance, which the posterior draws need
    parts: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in constraints}
    plain_last: dict[str, list[np.ndarray]] = {"mean": [], "cov": [], "component_mean": [], "component_var": []}
    with torch_threads():
        # the plain network's components serve its mixture and, each conditioned, the per-component updates
        plain_batches = predict_batches(_load_model(model_dir / "plain.pt", case, model, params.profile), arrays, n_samples,
                                        params.seed, model_dir / "plain.pt", G, b,
                                        updates=plain_updates(case, constraints), last=case == "stefan")
        twin_batches = {}
        for name, updates in (("softc", {}), (TRAINED, {TRAINED: None})):
            if name in constraints:
                path = model_dir / f"{name}.pt"
                twin_batches[name] = predict_batches(_load_model(path, case, model, params.profile), arrays, n_samples, params.seed,
                                                     path, G, b, mixed=not updates, updates=updates)
        for sl, plain, conditioned, components in plain_batches:
            twins = {name: _one_predictive(next(batches)) for name, batches in twin_batches.items()}
            twins.update(conditioned)
            if case == "stefan":
                plain_last["mean"].append(plain.mean[:, -1].copy())  # copies: a view would keep the batch's Σ
                plain_last["cov"].append(plain.cov[:, -1].copy())
                plain_last["component_mean"].append(components[0])
                plain_last["component_var"].append(components[1])
            for name in constraints:
                mean, cov = constrained(name, plain, twins, G[sl], b[sl])
                arrs = {"mean": mean, "var": np.clip(np.diagonal(cov, axis1=-2, axis2=-1), 0.0, None),
                        "mass_var": np.clip(np.einsum("ntkx,ntxy,ntky->nt", G[sl], cov, G[sl]), 0.0, None)}
                if case == "stefan":
                    arrs["cov_last"] = cov[:, -1]
                for key, value in arrs.items():
                    parts[name].setdefault(key, []).append(np.array(value))
                del mean, cov, arrs, value  # value: the last one may be a view of a network's Σ
            del plain, conditioned, twins, components  # the batch's covariances go before the next one is predicted
    results = {name: {key: np.concatenate(values) for key, values in arrs.items()} for name, arrs in parts.items()}
    del parts
    if case == "stefan":
        last_mean, last_cov = np.concatenate(plain_last["mean"]), np.concatenate(plain_last["cov"])
        for name, arrs in results.items():
            if name == "probconserv":  # the prior's draws conditioned pathwise: every draw conserves mass
                arrs["samples"] = _final_slice_samples(last_mean, last_cov, N_POSTERIOR_SAMPLES, params.seed,
                                                       G[:, -1], b[:, -1])
            elif name == NONNEGATIVE:  # each component's draws through its bounded map: ≥ 0 and on the mass
                arrs["samples"] = _nonnegative_samples(
                    np.concatenate(plain_last["component_mean"], axis=1),
                    np.concatenate(plain_last["component_var"], axis=1), G[:, -1], b[:, -1], lower_bound(case),
                    N_POSTERIOR_SAMPLES, params.seed)
            else:  # draws of the constraint's own N(μ, Σ); a conditioned one's put back on its support
                system = (G[:, -1], b[:, -1]) if name in CONDITIONED else (None, None)
                arrs["samples"] = _final_slice_samples(arrs["mean"][:, -1], arrs["cov_last"], N_POSTERIOR_SAMPLES,
                                                       params.seed, *system, conditioned=name in CONDITIONED)

    final = out_dir / PREDICTIONS_FILE
    with atomic_path(final) as tmp, h5py.File(tmp, "w") as fh:
        fh.attrs.update({"case": case, "model": model, "constraints": constraints, "profile": params.profile,
                         "n_latent_samples": n_samples, "seed": params.seed,
                         "data_version": data_version(data_dir, case, params.profile),
                         "checkpoints": checkpoints_digest(model_dir)})
        for name, arrs in results.items():
            grp = fh.create_group(name)
            for key, value in arrs.items():
                grp.create_dataset(key, data=value, track_times=False)
    return final


# ---- evaluate -----------------------------------------------------------------------------------
def _read_predictions(pred_dir: Path, case: str, model: str, constraints: list[str],
                      profile: str) -> dict[str, dict[str, np.ndarray]]:
    path = Path(pred_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise ValueError(f"no predictions {path}; run {rerun('constrain', case, profile, model)} first")
    out: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as fh:
        if fh.attrs.get("case") != case or fh.attrs.get("model") != model:
            raise ValueError(f"{path} holds {fh.attrs.get('case')!r} × {fh.attrs.get('model')!r}, expected {case!r} × {model!r}")
        missing = [c for c in constraints if c not in fh]
        if missing:
            raise ValueError(f"{path} has no predictions for constraint(s) {missing}; run "
                             f"{rerun('constrain', case, profile, model)}")
        for c in constraints:
            out[c] = {k: np.asarray(v[...]) for k, v in fh[c].items()}
            if "mass_var" not in out[c]:
                raise ValueError(f"{path} has no /{c}/mass_var (written by an older constrain stage); re-run it")
    return out


SHOCK_LEVELS: dict[str, float] = {"": 0.5, "_level0": 0.0}
"""Metric-name suffix → the level, as a fraction of p*, at which a sampled profile's front is read:
p*/2, the middle of the exact jump from p* to 0 (the project's estimator: robust to noise around 0), and
0, the reference's (the first grid point where u ≤ 0, here interpolated), which tracks where a smeared
profile's tail reaches zero. A posterior can be centred by one and not the other, so both are reported."""


def _shock(case: str, arrays: Mapping[str, np.ndarray], samples: np.ndarray, level: float) -> dict[str, Any]:
    """Per test function i: the shock-position posterior at its last target time t_i from the S samples
    (read at u = ``level``·p*; :func:`physml.metrics.shock_positions`) against the exact front
    x*(t_i) = 2 z₁ √t_i."""
    problem = _problem(case)
    names = [str(n) for n in arrays["parameter_names"]]
    rows = []
    for i in range(samples.shape[0]):
        p = dict(zip(names, (float(v) for v in arrays["params"][i]), strict=True))
        t_last = arrays["target_t"][i, -1]
        front = float(problem.front_position(p, np.array([t_last]))[0])
        post = shock_position_posterior(samples[i], arrays["target_x"][i, -1], level * p["p_star"], front)
        rows.append((post, front))
    return {"posteriors": rows}


def _test_value_groups(params: ParamsModel, case: str,
                       arrays: Mapping[str, np.ndarray]) -> dict[tuple[str, float], np.ndarray]:
    """For each parameter whose test set is a list of values: (parameter, value) → the indices of the test
    functions drawn with that value. A test function matching none of its parameter's values → ValueError
    (data of other settings)."""
    names = [str(n) for n in arrays["parameter_names"]]
    groups: dict[tuple[str, float], np.ndarray] = {}
    for pname, spec in params.case(case).parameters.items():
        values = spec.split_spec("test")
        if not isinstance(values, list):
            continue
        drawn = arrays["params"][:, names.index(pname)]
        matched = np.zeros(drawn.shape, dtype=bool)
        for value in values:
            hits = np.isclose(drawn, value, rtol=1e-12, atol=0.0)
            matched |= hits
            groups[(pname, value)] = np.flatnonzero(hits)
        if not matched.all():
            raise ValueError(f"{case}: test functions with {pname} = {sorted(set(drawn[~matched].tolist()))} match "
                             f"none of cases.{case}.parameters.{pname}.test.values {values}; regenerate the data")
    return groups


def _per_value_mse(groups: Mapping[tuple[str, float], np.ndarray], mean: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """``mse_<parameter>_<value>`` (:func:`~physml.metrics.per_value_key`) over the test functions of each group
    of :func:`_test_value_groups`; mean and true (N, nt, nx)."""
    return {per_value_key("mse", pname, value): float(mse(mean[idx], true[idx]))
            for (pname, value), idx in groups.items() if idx.size}


def _per_value_coverage(groups: Mapping[tuple[str, float], np.ndarray], mean: np.ndarray, var: np.ndarray,
                        true: np.ndarray, lower: float | None) -> dict[str, float]:
    """``coverage_90_<parameter>_<value>`` over the test functions of each group of :func:`_test_value_groups`
    and, with a ``lower`` bound, ``coverage_90_above_bound_<parameter>_<value>`` over their targets whose exact u
    is above it (where there are any): a value outside the training range asks the black box to extrapolate,
    and the pooled coverage does not say whether its σ widens there. mean, var, true (N, nt, nx)."""
    out: dict[str, float] = {}
    for (pname, value), idx in groups.items():
        if not idx.size:
            continue
        t, m, v = true[idx], mean[idx], var[idx]
        out[per_value_key("coverage_90", pname, value)] = float(interval_coverage(t, m, v, 0.9))
        if (above := _coverage_above_bound(t, m, v, lower)) is not None:
            out[per_value_key("coverage_90_above_bound", pname, value)] = above
    return out


def _coverage_above_bound(true: np.ndarray, mean: np.ndarray, var: np.ndarray, lower: float | None) -> float | None:
    """The 90 % coverage over the targets whose exact u lies strictly above ``lower``: a bounded case's dry targets
    (u = lower exactly) are easy to cover and would pad it. None without a bound or without such targets; true,
    mean, var of one shape."""
    if lower is None or not (above := true > lower).any():
        return None
    return float(interval_coverage(true[above], mean[above], var[above], 0.9))


def _metrics(true: np.ndarray, pred: Mapping[str, np.ndarray], G: np.ndarray, b: np.ndarray,
             lower: float | None = None) -> dict[str, float]:
    """The metrics file of one constraint; ``bound_violation`` and ``coverage_90_above_bound`` only where the
    physics bounds u (``lower``), the latter only where some target lies above the bound."""
    mean, var = pred["mean"], pred["var"]
    bound = {} if lower is None else {"bound_violation": bound_violation(mean, lower)}
    if (above := _coverage_above_bound(true, mean, var, lower)) is not None:
        bound["coverage_90_above_bound"] = above
    return bound | {
        "mse": float(mse(mean, true)),
        "mse_final_time": float(mse(mean[:, -1], true[:, -1])),
        "conservation_error": float(conservation_error(mean, G, b, reduce="mean_abs")),
        "conservation_error_truth": float(conservation_error(true, G, b, reduce="mean_abs")),
        "log_likelihood": float(gaussian_log_likelihood(true, mean, var)),
        "crps": float(gaussian_crps(true, mean, var)),
        "coverage_50": float(interval_coverage(true, mean, var, 0.5)),
        "coverage_90": float(interval_coverage(true, mean, var, 0.9)),
    }


def _figures(case: str, model: str, arrays: Mapping[str, np.ndarray], preds: Mapping[str, Mapping[str, np.ndarray]],
             G: np.ndarray, b: np.ndarray, shocks: Mapping[str, Any], fig_dir: Path) -> list[Path]:
    """Mass over time (test function 0; heat: the article's Fig. 1 — true, ANP, SoftC, ProbConserv), and for
    stefan the profiles at the last target time and the shock-position histograms of test function 0; one
    line or panel per constraint that :func:`_applies` to ``case``."""
    from physml import plots

    problem = _problem(case)
    i = 0
    order = [c for c in ("none", "softc", "probconserv", PER_COMPONENT, NONNEGATIVE, TRAINED, "hardc")
             if c in preds and _applies(c, case)]
    mass_methods = [c for c in order if c != "hardc"] or order
    written = []
    mass = {}
    for c in mass_methods:
        m = np.einsum("tkn,tn->tk", G[i], preds[c]["mean"][i])[:, 0]
        sd = np.sqrt(preds[c]["mass_var"][i])  # √(G Σ Gᵀ), covariances included
        mass[c] = (m, sd)
    written.append(plots.mass_over_time(arrays["target_t"][i], b[i, :, 0], mass, fig_dir / "mass_over_time.png",
                                        title=f"{case}: total mass, test function {i}", model=model))
    if case == "stefan":
        names = [str(n) for n in arrays["parameter_names"]]
        p = dict(zip(names, (float(v) for v in arrays["params"][i]), strict=True))
        t_last = float(arrays["target_t"][i, -1])
        x = arrays["target_x"][i, -1]
        x_fine = np.linspace(*problem.x_domain, 400)
        u_fine = problem.solve(p, x_fine, np.array([t_last]))[0]
        prof = {c: (preds[c]["mean"][i, -1], np.sqrt(preds[c]["var"][i, -1])) for c in order}
        written.append(plots.profiles_with_bands(
            x_fine, u_fine, x, arrays["target_u"][i, -1], prof, fig_dir / "stefan_profiles.png",
            title=f"stefan p* = {p['p_star']:g}, t = {t_last:.4f} (±2σ)", model=model))
        post = {c: shocks[c]["posteriors"][i][0].positions for c in order}
        front = shocks[order[0]]["posteriors"][i][1]
        written.append(plots.shock_histograms(post, front, fig_dir / "shock_position.png",
                                              title=f"shock-position posterior (u = p*/2), p* = {p['p_star']:g}, "
                                                    f"t = {t_last:.4f}", model=model))
    return written


def evaluate(case: str, model: str, params: ParamsModel, data_dir: Path, pred_dir: Path, out_dir: Path) -> dict[str, dict[str, float]]:
    """Metrics of every constraint on the test split; writes ``out_dir/<constraint>.json`` and ``out_dir/figures``.

    Metrics (Hansen et al. 2023, §4): ``mse`` of the mean over all targets and ``mse_final_time`` at the
    last target time; for a parameter whose test set is a list of values, ``mse_<parameter>_<value>``,
    ``coverage_90_<parameter>_<value>`` and (with a bound) ``coverage_90_above_bound_<parameter>_<value>`` over
    the functions of each value (:func:`~physml.metrics.per_value_key`, :func:`_per_value_coverage`); ``conservation_error`` = mean |G μ − b|
    over functions and times; ``log_likelihood`` = mean log N(u; μ, max(var, 1e-8)); ``crps`` = mean continuous
    ranked probability score of N(μ, var) (:func:`~physml.metrics.gaussian_crps`: linear in a target's error where
    the log-likelihood is quadratic over var, so a few targets far outside a tiny σ do not carry it);
    ``coverage_50``/``coverage_90`` = fraction of targets inside the central 50 %/90 % interval;
    ``coverage_90_above_bound`` the same over the targets whose exact u is above the physics' bound only (cases
    with one, :func:`lower_bound`): where the exact u sits at the bound (0 ahead of a front), the decoder's σ
    floor covers it almost always, so there ``coverage_90`` can read higher than the coverage where u varies;
    ``conservation_error_truth`` = mean |G u − b| of the exact solution u at the
    targets, the quadrature's own error on this grid (the same for every constraint: an exact update drives
    ``conservation_error`` to round-off relative to this trapezoid rule, and a model is not wrong by less than
    this). Stefan adds the shock-position posterior at each function's last target time,
    averaged over functions: ``shock_mean``, ``shock_std``, ``shock_true`` (exact x*), ``shock_bias`` (mean
    signed error of the posterior mean), ``shock_abs_error`` (mean |posterior mean − x*|) and
    ``shock_coverage_90`` (fraction of functions whose x* lies in the posterior's central 90 % interval),
    with the front read at u = p*/2, and the same five with the suffix ``_level0`` read at u = 0
    (:data:`SHOCK_LEVELS`).
    Everything is computed before anything is written; files are replaced atomically.
    """
    _check_model(model)
    _problem(case)
    constraints = list(params.matrix.probconserv.constraints)
    arrays = _load_split(data_dir, "test", case, params.profile)
    preds = _read_predictions(pred_dir, case, model, constraints, params.profile)
    true = arrays["target_u"]
    for c, p in preds.items():
        if p["mean"].shape != true.shape or p["var"].shape != true.shape:
            raise ValueError(f"predictions for {c!r} have shape {p['mean'].shape}, the test targets {true.shape}; "
                             f"run {rerun('constrain', case, params.profile, model)}")
    G, b = conservation_system(case, arrays)
    groups = _test_value_groups(params, case, arrays)
    results: dict[str, dict[str, float]] = {}
    shocks: dict[str, Any] = {}
    for c in constraints:
        results[c] = _metrics(true, preds[c], G, b, lower_bound(case))
        results[c].update(_per_value_mse(groups, preds[c]["mean"], true))
        results[c].update(_per_value_coverage(groups, preds[c]["mean"], preds[c]["var"], true, lower_bound(case)))
        if case == "stefan":
            for suffix, level in SHOCK_LEVELS.items():
                found = _shock(case, arrays, preds[c]["samples"], level)
                if not suffix:
                    shocks[c] = found  # the figures show the project's estimator
                posts = found["posteriors"]
                err = np.array([po.error for po, _ in posts])
                results[c].update({
                    f"shock_mean{suffix}": float(np.mean([po.mean for po, _ in posts])),
                    f"shock_std{suffix}": float(np.mean([po.std for po, _ in posts])),
                    f"shock_bias{suffix}": float(np.mean(err)),
                    f"shock_abs_error{suffix}": float(np.mean(np.abs(err))),
                    f"shock_coverage_90{suffix}": float(np.mean([po.covers_90 for po, _ in posts])),
                })
            results[c]["shock_true"] = float(np.mean([f for _, f in posts]))
            # how far the posterior draws (not only the mean) fall below the bound the physics keeps
            results[c]["draw_bound_violation"] = bound_violation(preds[c]["samples"], lower_bound(case))
        bad = [k for k, v in results[c].items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"{case} × {model} × {c}: non-finite metric(s) {bad}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with staging_dir(out_dir / "evaluate") as staging:
        _figures(case, model, arrays, preds, G, b, shocks, staging / "figures")
        for c, m in results.items():
            write_json(staging / f"{c}.json", m)
        move_contents(staging, out_dir)
    return results


# ---- seed study ---------------------------------------------------------------------------------


def _post_hoc_means(net: torch.nn.Module, case: str, arrays: Mapping[str, np.ndarray], n_samples: int, seed: int,
                    path: Path, G: np.ndarray, b: np.ndarray, constraints: list[str]) -> dict[str, np.ndarray]:
    """The predictive mean (N, nt, nx) of each post hoc constraint (:data:`POST_HOC`) of the plain network
    ``net`` on the test split, batch by batch as :func:`constrain` computes it (:func:`predict_batches`,
    :func:`constrained`); ``seed`` seeds the latent draws."""
    means: dict[str, list[np.ndarray]] = {c: [] for c in constraints}
    for sl, plain, conditioned, _ in predict_batches(net, arrays, n_samples, seed, path, G, b,
                                                     updates=plain_updates(case, constraints)):
        for c in constraints:
            means[c].append(np.array(constrained(c, plain, conditioned, G[sl], b[sl])[0]))
        del plain, conditioned  # the batch's covariances go before the next batch is predicted
    return {c: np.concatenate(v) for c, v in means.items()}


def seed_study(case: str, model: str, params: ParamsModel, data_dir: Path, model_dir: Path, study_dir: Path,
               out_path: Path, progress: bool = True) -> dict[str, Any]:
    """Test MSE of every post hoc constraint (:data:`POST_HOC`) over the seeds of ``matrix.probconserv.seeds``
    → ``out_path`` (json).

    The MSE of one trained black box moves with its seed (initial weights, batch order, latent draws), so a
    ratio none ÷ probconserv of one training is one draw of it. Seeds s_1 … s_n
    (:meth:`ParamsModel.study_seeds`): the first is the project seed, whose plain network is the main
    training's (``model_dir``), with the latent draws of :func:`constrain`, so its MSEs are evaluate's; every
    other seed trains the plain network exactly as :func:`train` does, with that seed, into
    ``study_dir/seed_<s>/`` (resumable), and draws its latent samples with it. softc and probconserv_trained
    are left out: each is a network of its own, trained with the project seed only. Writes and returns::

        {"case", "model", "seeds": [s_1, …, s_n],
         "mse": {constraint: [e_1, …, e_n]},          # e_i: the MSE of evaluate, for seed s_i
         "mse_mean": {constraint: mean_i e_i},
         "mse_spread": {constraint: sample standard deviation of e_i (0 for n = 1)},
         "mse_per_value": {mse_<p>_<v>: {constraint: [e_1, …, e_n]}},  # a test set drawn at listed values
         "probconserv_ahead": #{i : e_i(probconserv) <= e_i(none)}}  # when both are constraints
    """
    _check_model(model)
    _problem(case)
    data_dir, model_dir, study_dir = Path(data_dir), Path(model_dir), Path(study_dir)
    if not (model_dir / "plain.pt").is_file():
        raise ValueError(f"{model_dir}: no plain network of the project seed; run "
                         f"{rerun('train', case, params.profile, model)} first")
    constraints = [c for c in params.matrix.probconserv.constraints if c in POST_HOC and _applies(c, case)]
    seeds = params.study_seeds("probconserv")
    arrays = _load_split(data_dir, "test", case, params.profile)
    true = arrays["target_u"]
    G, b = conservation_system(case, arrays)
    groups = _test_value_groups(params, case, arrays)
    n_samples = latent_draws(params, case, model)
    study_dir.mkdir(parents=True, exist_ok=True)
    errors: dict[str, list[float]] = {c: [] for c in constraints}
    per_value: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        seed_dir = seed_folder(seed, params.seed, model_dir, study_dir)
        if seed != params.seed:
            train(case, model, params, data_dir, seed_dir, progress, seed=seed, plain_only=True)
        path = seed_dir / "plain.pt"
        with torch_threads():
            means = _post_hoc_means(_load_model(path, case, model, params.profile), case, arrays, n_samples, seed, path, G, b,
                                    constraints)
        for c, mean in means.items():
            errors[c].append(finite_error(mse(mean, true), "mse", f"{case} × {model} × {c}, seed {seed}", out_path))
            for key, value in _per_value_mse(groups, mean, true).items():
                per_value.setdefault(key, {k: [] for k in constraints})[c].append(value)
    result = seed_summary(case, model, seeds, "mse", errors, ahead="probconserv")
    if per_value:
        result["mse_per_value"] = per_value
    write_json(out_path, result)
    return result
