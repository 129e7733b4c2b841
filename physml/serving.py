"""A registered network as an MLflow ``python_function`` model: what ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` load from a version of ``physml-<case>-<model>-<profile>``.

Each version's ``model/`` folder holds the weights (``state_dict.pth``), the configuration the network is
built from (``model_config.json``) and an ``MLmodel`` file whose ``python_function`` flavour names this
module as its loader (written by :mod:`physml.tracking`). :func:`_load_pyfunc` rebuilds the network and
returns a :class:`ServedNetwork`, whose :meth:`~ServedNetwork.predict` takes a dict of arrays (in a REST
call to ``mlflow models serve``: ``{"inputs": {name: nested lists}, "params": {...}}``) and returns one.
It needs physml importable where it runs (``--env-manager local`` in physml's environment).

**Black boxes** (ANP, deep ensemble: ProbConserv's family). Inputs, float arrays:

- ``context_t``, ``context_x``, ``context_u`` (B, Nc): the observed points of each of B functions;
- ``target_t`` (B, nt), ``target_x`` (B, nt, nx): where to predict, each slice's positions sorted;
- every time and position inside the case's domain (the network's ``t_range`` × ``x_range``, where it was
  trained; outside it is refused, not extrapolated), Nc, nt, nx ≥ 1;
- ``mass`` (B, nt): the conserved quantity b = ∫ u(t, x) dx over the case's domain at each target time,
  M(t) of the conservation law (e.g. ``physml.pdes.get(case).mass(pde_params, t)``).

Params: ``constraint`` (default ``probconserv``) the update applied to the predictive N(μ, Σ) of the
network's mixture, on G u = b with G the trapezoid weights of each slice
(:func:`physml.constraints.conservation.trapezoid_weights`) and b = ``mass``:

- ``probconserv``: the exact Gaussian update of the mixture's moments, μ' = μ − Σ Gᵀ (G Σ Gᵀ)⁻¹ (G μ − b),
  Σ' = Σ − Σ Gᵀ (G Σ Gᵀ)⁻¹ G Σ (Hansen et al. 2023, Eq. 5), Σ the full covariance of each slice;
- ``probconserv_mixture``: each latent draw / member updated, then mixed (the paper's ProbConserv-ANP);
- ``probconserv_nonnegative``: as ``probconserv_mixture``, each draw also kept ≥ 0 where the case's physics
  keeps u ≥ 0 (:func:`physml.constraints.clamp_to_bound`);
- ``hardc``: μ projected onto {G u = b} in the Euclidean metric, the variance left as it is;
- ``none``: the plain predictive; ``mass`` is not needed.

So by default a served black box conserves mass to round-off, as the pipeline's ``probconserv`` runs do;
the unconstrained predictive is asked for by name. ``n_samples`` (the ANP's latent draws) and ``seed``
default to what the pipeline predicted with; the i-th function of a call draws from
:func:`physml.models.anp.function_seeds` (seed, ``first_index`` + i) (``first_index`` default 0), so an ANP's
answer for a function does not depend on what else the call holds, and functions i … j of the test split
sent with ``first_index`` = i get the pipeline's draws. The computation is the constrain stage's own
(:func:`physml.experiments.probconserv.predict_batches` and ``constrained``, in its batches), so the whole test
split in one call gives the predictions file's mean and variance to the bit. A call is held to
:data:`SERVED_ENTRIES` entries of draws and covariances and :data:`SERVED_FEATURES` of the network's own
working tensors at a time: larger ones are predicted in parts, and a function that alone needs more
(``n_samples`` × nt × nx or nt × nx², heads × Nc² or the features of its contexts or targets) is refused with
the most it may ask. Returns ``mean`` and ``var``
(B, nt, nx), float64. MLflow drops a param it does not know (a misspelt one) with only a warning in the
server's log, so the default update applies.

**Operator networks** (FNO, BOON). Inputs: ``u`` (B, *space[, c_in]) the initial condition as
:meth:`physml.models.FNO.forward` takes it; a BOON network also takes its boundary data as
:meth:`physml.models.BOONFNO.forward` does: ``bc`` for one bounded axis ((B, 2) single step,
(B, nt, 2) with time), ``bc_x`` and ``bc_y`` for the cavity's walls ((B, ny, nt, 2, c_out),
(B, nx, nt, 2, c_out)); periodic conditions take none. Returns ``u`` (B, *space[, nt][, c_out]) computed in
float64, so the condition holds to ~1e-12 as in the pipeline's evaluation; a batch larger than
:data:`SERVED_FEATURES` allows is predicted a few samples at a time (the same numbers to round-off, ~1e-17).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from physml.constraints.conservation import trapezoid_weights
from physml.models import build_model
from physml.models.anp import ComponentMixture, check_shapes
from physml.models.boon import BoundaryFNO
from physml.models.ensemble import DeepEnsemble
from physml.tracking import MODEL_CONFIG_FILE

#: The updates a served black box applies (see the module docstring); the first is the default.
CONSTRAINTS = ("probconserv", "probconserv_mixture", "probconserv_nonnegative", "hardc", "none")
BLACK_BOX_INPUTS = ("context_t", "context_x", "context_u", "target_t", "target_x")
#: Most entries a served black box holds at once of its mixture's components (S·B·nt·nx: the ANP's draws, the
#: ensemble's members) and of each covariance (B·nt·nx², the plain and the updated one alive together;
#: ~1 GiB in float64): a call asking for more is predicted a few functions at a time, in whole
#: batches of the constrain stage where they fit (the same bits; else the same draws, the float32 network
#: rounding differently at another batch size, ~1e-7 relative), and one whose single function needs more is
#: refused.
SERVED_ENTRIES = 2**27
#: Most entries of the network's own largest working tensors a served call holds at once (1 GiB in a black
#: box's float32, 2 GiB in an operator's float64): a black box's self-attention scores over the contexts,
#: heads·Nc² per function (materialised: 15.5 GiB and 98 s for one function of 32 000 contexts, 4 heads,
#: measured 2026-12-02), its features at the contexts, hidden·Nc, and at the targets, (hidden + latent + 2)·nt·nx
#: per function (the decoder's input; the ensemble's members: hidden + 2); an operator's channels over its
#: grid, max(width, proj_width) per grid point of each sample, the time axis counted with its padding,
#: nt + time_padding steps (a 1-D + time network answers nt steps for each input point). The cross-attention of
#: the targets to the contexts is not counted: torch's fused kernel does not materialise its scores (Nc = 1000
#: against 100 at 201 × 201 targets added 20 MiB, where the scores would take 0.6 GiB). Parts as for
#: :data:`SERVED_ENTRIES`; the paper profile's constrain batch fits (16 functions of 201 × 201 targets, 100
#: contexts: 1.7 × 10⁸).
SERVED_FEATURES = 2**28
_AXIS_NAMES = ("x", "y")


class ServingInputError(MlflowException, ValueError):
    """A bad input or param of a served network: a ValueError in process; over REST a 400 whose ``message`` is
    this one, after MLflow's "Failed to predict data '…'" (the scoring server shows an MlflowException's own
    message, any other error's only in its stack trace)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def prediction_params(model_config: Mapping[str, Any], n_samples: int, seed: int) -> dict[str, Any]:
    """The params a served network takes, each with its default: for a black box ``constraint``
    (:data:`CONSTRAINTS`), ``n_samples`` and ``seed`` (the pipeline's) and ``first_index`` (0); an operator
    network takes none."""
    if is_operator(model_config):
        return {}
    return {"constraint": CONSTRAINTS[0], "n_samples": int(n_samples), "seed": int(seed), "first_index": 0}


def is_operator(model_config: Mapping[str, Any]) -> bool:
    """Whether ``model_config`` builds an operator network (FNO, BOON) rather than a black box."""
    return "variant" in model_config


class ServedNetwork:
    """A network and its configuration behind MLflow's pyfunc ``predict(data, params)``."""

    def __init__(self, net: torch.nn.Module, model_config: Mapping[str, Any],
                 defaults: Mapping[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.config = dict(model_config)
        self.defaults = dict(defaults or {})
        if is_operator(self.config):
            self.net = self.net.double()  # the pipeline evaluates operators in float64

    def predict(self, data: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Inputs, params and outputs as in the module docstring; :class:`ServingInputError` (a ValueError)
        naming a missing, unknown or badly shaped input or a bad param."""
        try:
            if not isinstance(data, Mapping):
                raise ValueError(f"the input must be a mapping from input names to arrays, got {type(data).__name__}")
            settings = {**self.defaults, **(params or {})}
            if is_operator(self.config):
                return {"u": self._operator(data)}
            return self._black_box(data, settings)
        except ServingInputError:
            raise
        except ValueError as exc:
            raise ServingInputError(str(exc)) from exc

    # ---- black boxes --------------------------------------------------------------------------------
    def _black_box(self, data: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The predictive of the pipeline's constrain stage for these inputs: the same batches, seeds and updates
        (:func:`physml.experiments.probconserv.predict_batches`, :func:`~physml.experiments.probconserv.constrained`),
        the variance the diagonal of the constraint's covariance, clipped at 0 as the predictions file's."""
        from physml.experiments.probconserv import constrained, plain_updates, predict_batches

        constraint = settings.get("constraint", CONSTRAINTS[0])
        if constraint not in CONSTRAINTS:
            raise ValueError(f"params.constraint must be one of {CONSTRAINTS}, got {constraint!r}")
        _check_names(data, BLACK_BOX_INPUTS + (("mass",) if constraint != "none" else ()), optional=("mass",))
        n_samples = _int_param(settings, "n_samples", 1, lowest=1)
        seed = _int_param(settings, "seed", 0, lowest=0)
        first = _int_param(settings, "first_index", 0, lowest=0)
        arrays = {key: _float_array(data, key) for key in BLACK_BOX_INPUTS}
        target_x = arrays["target_x"]
        if target_x.ndim != 3 or target_x.shape[0] == 0:
            raise ValueError(f"target_x must have shape (B, nt, nx) with B >= 1, got {target_x.shape}")
        check_shapes({key: value.shape for key, value in arrays.items()})
        _check_domain(arrays, self.config)
        if not isinstance(self.net, ComponentMixture):
            raise ValueError(f"model_config {self.config} builds a {type(self.net).__name__}, which has no predictive")
        # the mixture's components: the ANP's n_samples latent draws, the ensemble's members (n_samples unused)
        members = len(self.net.members) if isinstance(self.net, DeepEnsemble) else None
        _check_size(members or n_samples, *target_x.shape[1:], members=members is not None)
        features = _check_features(self.net, arrays["context_t"].shape[1], target_x.shape[1] * target_x.shape[2])
        G = b = None
        if constraint != "none":
            mass = _float_array(data, "mass")
            if mass.shape != target_x.shape[:2]:
                raise ValueError(f"mass must have shape (B, nt) = {target_x.shape[:2]}, the first two axes of "
                                 f"target_x; got {mass.shape}")
            # _check_domain took an end rounded in float32 as the end; the quadrature takes it there too, whether
            # it came as float32 (in process) or as its float64 value (a JSON body)
            lo, hi = (float(v) for v in self.config["x_range"])
            weights = trapezoid_weights(np.clip(target_x, lo, hi), (lo, hi), periodic=bool(self.config["periodic"]))
            G, b = weights[:, :, None, :], mass[:, :, None]  # one row per slice: (B, nt, 1, nx), (B, nt, 1)
        updates = plain_updates(self.config["case"], [constraint])
        if updates.get(constraint) is not None:
            _check_reachable(mass, G[:, :, 0], updates[constraint], constraint)
        means, variances = [], []
        n, nt, nx = target_x.shape
        rows = _rows_per_part(members or n_samples, nt, nx, features)
        for start in range(0, n, rows):
            part = slice(start, min(start + rows, n))
            G_part, b_part = (None, None) if G is None else (G[part], b[part])
            for sl, plain, conditioned, _ in predict_batches(self.net, {k: v[part] for k, v in arrays.items()},
                                                             n_samples, seed, "the served network", G_part, b_part,
                                                             updates=updates, first_index=first + start):
                mean, cov = (plain.mean, plain.cov) if G is None else constrained(constraint, plain, conditioned,
                                                                                    G_part[sl], b_part[sl])
                means.append(np.array(mean))
                variances.append(np.clip(np.diagonal(cov, axis1=-2, axis2=-1), 0.0, None))
        return {"mean": np.concatenate(means), "var": np.concatenate(variances)}

    # ---- operator networks ----------------------------------------------------------------------------
    def _operator(self, data: Mapping[str, Any]) -> np.ndarray:
        net = self.net
        bounded = isinstance(net, BoundaryFNO) and net.boundary != "periodic"
        names = () if not bounded else ("bc",) if len(net.axes) == 1 else tuple(f"bc_{_AXIS_NAMES[a]}" for a in net.axes)
        _check_names(data, ("u",) + names)
        u = torch.as_tensor(_float_array(data, "u"))
        if u.dim() == 0 or u.shape[0] == 0:
            raise ValueError(f"u must hold at least one sample (B, ...), got shape {tuple(u.shape)}")
        bc = [torch.as_tensor(_float_array(data, name)) for name in names]
        for name, g in zip(names, bc):
            if g.dim() == 0 or g.shape[0] != u.shape[0]:
                raise ValueError(f"input {name!r} must hold one entry per sample of 'u' (B = {u.shape[0]}), got shape "
                                 f"{tuple(g.shape)}")
        rows = _operator_rows(net, u)
        parts = []
        with torch.no_grad():
            for start in range(0, len(u), rows):
                part = slice(start, start + rows)
                given = [g[part] for g in bc]
                try:
                    parts.append(net(u[part]) if not bounded else
                                 net(u[part], given[0] if len(given) == 1 else dict(zip(net.axes, given))))
                except ValueError as exc:  # the network names the part's batch and grid axes; the caller sent names
                    # a shape in the message starts with the batch: the part's, (k, …) or (k,), is the call's
                    message = re.sub(rf"\({len(u[part])}(, |,\))", rf"({len(u)}\1", str(exc))
                    for axis, name in zip(net.axes if bounded else (), names):
                        message = message.replace(f"bc for grid axis {axis}", f"input {name!r} (grid axis {axis})")
                    raise ValueError(message) from exc
        return torch.cat(parts).numpy()


def _check_domain(arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> None:
    """ValueError naming the first input whose times or positions lie outside the case's domain, ``t_range`` ×
    ``x_range`` of the network's config, the inputs it was trained on (it scales them to [−1, 1] there): outside
    it the network would extrapolate and answer as if it knew. An end rounded in float32 is the end (a slack of
    1e-6 of the range)."""
    for name, axis in (("context_t", "t"), ("target_t", "t"), ("context_x", "x"), ("target_x", "x")):
        lo, hi = (float(v) for v in config[f"{axis}_range"])
        slack = 1e-6 * (hi - lo)
        outside = np.argwhere((arrays[name] < lo - slack) | (arrays[name] > hi + slack))
        if outside.size:
            where = tuple(int(k) for k in outside[0])
            raise ValueError(f"input {name!r} must lie in the case's {axis} domain [{lo:g}, {hi:g}], where the network "
                             f"was trained; {len(outside)} value(s) do not (first: index {where}, "
                             f"{arrays[name][where]:.6g})")


def _rows_per_part(components: int, nt: int, nx: int, features: int = 0) -> int:
    """How many functions a part of a served call holds: as many as :data:`SERVED_ENTRIES` allows of S·nt·nx
    component entries each (S = ``components``: latent draws or ensemble members) and :data:`SERVED_FEATURES`
    of ``features`` network entries each (:func:`_check_features`), rounded down to a whole number of the
    constrain stage's batches (:func:`physml.experiments.probconserv.prediction_batch`, which bounds the
    covariances), so that the parts' batches are the one call's and the answer its bits; fewer than one batch
    only when one batch alone passes a bound."""
    from physml.experiments.probconserv import prediction_batch

    batch = prediction_batch(nt, nx)
    rows = max(1, min(SERVED_ENTRIES // (components * nt * nx), SERVED_FEATURES // max(features, 1)))
    return rows // batch * batch if rows >= batch else rows


def _check_features(net: torch.nn.Module, nc: int, targets: int) -> int:
    """The network's working entries for one function of ``nc`` contexts and ``targets`` = nt·nx targets, the
    largest of its self-attention scores heads·Nc², its context features hidden·Nc and its target features
    (:data:`SERVED_FEATURES`); ValueError naming the inputs and the most they may hold where one function
    alone needs more than :data:`SERVED_FEATURES`."""
    if isinstance(net, DeepEnsemble):
        hidden, target_width, heads = net.config.hidden, net.config.hidden + 2, 0
    else:
        c = net.config
        hidden, target_width = c.hidden, c.hidden + c.latent + 2
        heads = c.heads if c.attention_layers else 0
    contexts = max(hidden * nc, heads * nc * nc)
    if contexts > SERVED_FEATURES:
        most = min(SERVED_FEATURES // hidden, math.isqrt(SERVED_FEATURES // heads) if heads else SERVED_FEATURES)
        need = (f"heads × Nc² = {heads} × {nc}² = {heads * nc * nc} self-attention" if heads * nc > hidden
                else f"hidden × Nc = {hidden} × {nc} = {hidden * nc} feature")
        raise ValueError(f"inputs 'context_t', 'context_x', 'context_u' of Nc = {nc} contexts per function need "
                         f"{need} entries, more than the {SERVED_FEATURES} a served network holds; send at most "
                         f"{most} contexts per function")
    if target_width * targets > SERVED_FEATURES:
        raise ValueError(f"input 'target_x' of nt × nx = {targets} targets per function needs {target_width} "
                         f"features each, {target_width * targets} entries, more than the {SERVED_FEATURES} a "
                         f"served network holds; send at most {SERVED_FEATURES // target_width} targets per function")
    return max(contexts, target_width * targets)


def _operator_rows(net: torch.nn.Module, u: torch.Tensor) -> int:
    """How many samples of ``u`` an operator network predicts at once: :data:`SERVED_FEATURES` over
    max(width, proj_width) × the grid points of one sample (space, then nt + time_padding steps); ValueError
    naming ``u`` where one sample alone needs more. A ``u`` of the wrong shape is left to the network to name."""
    fno = net.fno if isinstance(net, BoundaryFNO) else net
    space = tuple(u.shape[1:1 + fno.n_space])
    steps = 1 if fno.nt is None else fno.nt + fno.time_padding
    per_sample = max(fno.width, fno.proj_width) * math.prod(space) * steps
    if per_sample == 0:  # an empty grid axis: one part, which the network refuses by name
        return len(u)
    if per_sample > SERVED_FEATURES:
        grid = " × ".join(str(n) for n in space + ((steps,) if fno.nt is not None else ()))
        raise ValueError(f"input 'u' on a grid of {grid} points needs max(width, proj_width) = "
                         f"{max(fno.width, fno.proj_width)} channels at each, {per_sample} entries per sample, more "
                         f"than the {SERVED_FEATURES} a served network holds; send a coarser grid")
    return max(1, SERVED_FEATURES // per_sample)


def _check_size(components: int, nt: int, nx: int, members: bool = False) -> None:
    """ValueError naming what makes one function's predictive larger than :data:`SERVED_ENTRIES`: its nt·nx²
    covariance entries (``target_x``'s slices) or its S·nt·nx component entries, S = ``components``: the
    ANP's latent draws (``params.n_samples``) or, with ``members``, the ensemble's members."""
    if nt * nx * nx > SERVED_ENTRIES:
        raise ValueError(f"input 'target_x' of nt × nx = {nt} × {nx} needs nt × nx² = {nt * nx * nx} covariance entries "
                         f"per function, more than the {SERVED_ENTRIES} a served network holds; send fewer times or "
                         f"positions per call")
    if components * nt * nx > SERVED_ENTRIES and members:
        raise ValueError(f"the ensemble's {components} members × nt × nx = {components} × {nt} × {nx} exceed "
                         f"{SERVED_ENTRIES} entries per function, the most a served network holds; send at most "
                         f"{SERVED_ENTRIES // (components * nx)} time(s) per call")
    if components * nt * nx > SERVED_ENTRIES:
        raise ValueError(f"params.n_samples × nt × nx = {components} × {nt} × {nx} exceeds {SERVED_ENTRIES} entries "
                         f"per function, the most a served network holds; ask for at most "
                         f"{SERVED_ENTRIES // (nt * nx)} draws at this grid")


def _check_reachable(mass: np.ndarray, weights: np.ndarray, lower: float, constraint: str) -> None:
    """ValueError naming input ``mass`` where a slice's mass (B, nt) is below ℓ Σ_j g_j, the least mass a
    u ≥ ℓ can have on its quadrature weights g (B, nt, nx): no u that ``constraint`` may return has it. The
    test is exact at ℓ = 0 (a mass of −1e-17 is refused), and the function it names is the row of this call."""
    total = weights.sum(-1)
    least = lower * total
    short = np.argwhere(mass < least - 1e-12 * abs(lower) * total)
    if short.size:
        i, t = (int(k) for k in short[0])
        raise ValueError(f"input 'mass' is below the least mass a u ≥ {lower:g} can have in {len(short)} slice(s) "
                         f"(first: row {i}, time {t}: mass {mass[i, t]:.6g} < {least[i, t]:.6g}); "
                         f"params.constraint {constraint!r} keeps u ≥ {lower:g}")


def _float_array(data: Mapping[str, Any], name: str) -> np.ndarray:
    """``data[name]`` as a float64 array; ValueError naming ``name`` if it is not an array of real numbers
    (integers or floats: strings, booleans and complex numbers are refused, not converted) or not finite."""
    try:
        given = np.asarray(data[name])
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ValueError(f"input {name!r} must be an array of numbers ({exc})") from None
    if given.dtype.kind not in "iuf":
        raise ValueError(f"input {name!r} must be an array of real numbers, got {given.dtype.name} values")
    array = given.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"input {name!r} contains NaN or inf")
    return array


def _int_param(settings: Mapping[str, Any], name: str, default: int, lowest: int) -> int:
    """``settings[name]`` (else ``default``) as an int; ValueError naming the param if it is not one ≥ ``lowest``."""
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
        raise ValueError(f"params.{name} must be an integer >= {lowest}, got {value!r}")
    return int(value)


def _check_names(data: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """ValueError naming the inputs ``data`` lacks or does not take."""
    missing = [k for k in required if k not in data]
    unknown = sorted(set(data) - set(required) - set(optional))
    if missing:
        extra = (" (params.constraint, by default 'probconserv', conditions on the mass of each target slice; "
                 "params={'constraint': 'none'} gives the unconstrained predictive)") if missing == ["mass"] else ""
        raise ValueError(f"missing input(s) {missing}; this network takes {list(required)}{extra}")
    if unknown:
        raise ValueError(f"unknown input(s) {unknown}; this network takes {list(required)}")


def load_network(folder: Path | str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network of a version's ``model/`` folder, built by :func:`physml.models.build_model` from its
    ``model_config.json`` with the weights of its ``state_dict.pth`` loaded (on the CPU, in eval mode), and
    that configuration; ValueError if the folder holds no configuration."""
    import mlflow.pytorch

    folder = Path(folder)
    config_file = folder / MODEL_CONFIG_FILE
    if not config_file.is_file():
        raise ValueError(f"{folder} holds no {MODEL_CONFIG_FILE}, so its network cannot be rebuilt")
    config = json.loads(config_file.read_text())
    net = build_model(config)
    net.load_state_dict(mlflow.pytorch.load_state_dict(str(folder), map_location="cpu"))
    return net.eval(), config


def load_served(folder: Path | str, defaults: Mapping[str, Any] | None = None) -> ServedNetwork:
    """The :class:`ServedNetwork` of a version's ``model/`` folder (:func:`load_network`); ``defaults``: the
    params' defaults (the pyfunc flavour's config)."""
    net, config = load_network(folder)
    return ServedNetwork(net, config, defaults)


def _load_pyfunc(path: str, model_config: Mapping[str, Any] | None = None) -> ServedNetwork:
    """MLflow's pyfunc loader hook: ``path`` is the ``model/`` folder, ``model_config`` the flavour's ``config``
    (the params' defaults)."""
    return load_served(path, model_config)


__all__ = ["BLACK_BOX_INPUTS", "CONSTRAINTS", "ServedNetwork", "ServingInputError", "is_operator", "load_network", "load_served",
           "prediction_params"]
