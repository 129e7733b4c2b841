"""Evaluation metrics for probabilistic and constrained PDE predictions (NumPy, float64).

Shape convention: fields are (..., nt, nx) — leading axes are samples/functions — unless a function
says otherwise. Every metric states its formula; sources are the ProbConserv article and reference
analysis (Hansen et al., ICML 2023; amazon-science/probconserv ``experiments/analyze.py``) and BOON
(Saad et al., ICLR 2023) for the relative L2 and boundary errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

Reduce = Literal["mean", "none"]

MIN_VAR = 1e-8
"""Variance floor of the log-likelihood, which matters for ProbConserv's zero variance along the constraint.
physml's own choice: the reference's analysis (``loglik``) has no floor; 1e-8 is the reference's clamp of
PhysNP's per-sample variance (``min_var_sample``), and the ANP's decoder variance is ≥ 1e-4 anyway."""


def _f64(name: str, x: object) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _same_shape(**arrays: np.ndarray) -> None:
    shapes = {k: v.shape for k, v in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"shapes must match: {shapes}")


def mse(pred: np.ndarray, true: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """Mean squared error mean((pred − true)²) over ``axis`` (all axes by default)."""
    p, t = _f64("pred", pred), _f64("true", true)
    _same_shape(pred=p, true=t)
    out = np.mean((p - t) ** 2, axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def per_value_key(metric: str, parameter: str, value: float) -> str:
    """The metrics-file key of ``metric`` taken over the test functions whose ``parameter`` equals ``value``,
    for a test set given as a list of values (params.yaml ``test: {values: [...]}``, e.g. stefan's
    p* ∈ {0.5, 0.6}, one of them outside the training range): ``per_value_key("mse", "p_star", 0.6)``
    is ``"mse_p_star_0.6"`` (12 significant digits, so distinct listed values get distinct keys)."""
    return f"{metric}_{parameter}_{value:.12g}"


def _check_reduce(reduce: str, allowed: tuple[str, ...]) -> None:
    if reduce not in allowed:
        raise ValueError(f"reduce must be one of {allowed}, got {reduce!r}")


def _broadcasts_into(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without widening it."""
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def relative_l2(pred: np.ndarray, true: np.ndarray, space_axes: int = 1, reduce: Reduce = "mean") -> np.ndarray | float:
    """Relative L2 error ‖pred − true‖₂ / ‖true‖₂ over the trailing ``space_axes`` axes.

    Computed per leading index (per sample and per time step of a (N, nt, nx) field), then averaged
    (``reduce="mean"``) or returned with the leading shape (``reduce="none"``). The reference's ``LpLoss``
    (Li et al. 2021, Saad et al. 2023) takes one ratio per sample over its whole flattened field: pass
    ``pred.reshape(N, -1)`` for that (physml's BOON evaluation does). The two differ where the field's norm
    varies over time: true [[0.1, 0.1], [1, 1]] with error [[0.1, 0.1], [0, 0]] is 0.5 per time step and
    0.0995 flattened. A sample/time whose true field is identically zero has no relative error: ValueError.
    """
    _check_reduce(reduce, ("mean", "none"))
    p, t = _f64("pred", pred), _f64("true", true)
    _same_shape(pred=p, true=t)
    if not 1 <= space_axes <= p.ndim:
        raise ValueError(f"space_axes must be in [1, {p.ndim}], got {space_axes}")
    axes = tuple(range(p.ndim - space_axes, p.ndim))
    num = np.sqrt(np.sum((p - t) ** 2, axis=axes))
    den = np.sqrt(np.sum(t**2, axis=axes))
    if np.any(den == 0):
        raise ValueError("true has an identically zero field at some sample/time; relative L2 is undefined there")
    rel = num / den
    return float(np.mean(rel)) if reduce == "mean" else rel


def conservation_error(mean: np.ndarray, G: np.ndarray, b: np.ndarray, reduce: Literal["none", "mean_abs"] = "none") -> (
    np.ndarray | float
):
    """Conservation error CE = G μ − b: quadrature of the predicted mean minus the true mass, per time slice.

    ``mean`` (..., nt, m), ``G`` (..., nt, 1, m) and ``b`` (..., nt, 1) as built by
    :func:`physml.constraints.conservation_constraint` (any (..., k, m) / (..., k) works; G's batch axes are
    mean's, each of size 1 or the same). ``reduce="none"``
    gives the signed error (..., nt, k); ``"mean_abs"`` the mean |CE| over functions and slices that
    physml's tables report (the reference's ``analyze_conservation`` averages the *signed* CE at one time of
    interest, where errors of opposite sign cancel). ProbConserv's CE is 0 up to round-off.
    """
    _check_reduce(reduce, ("none", "mean_abs"))
    mu, g, rhs = _f64("mean", mean), _f64("G", G), _f64("b", b)
    if g.ndim < 2 or g.shape[-1] != mu.shape[-1]:
        raise ValueError(f"G must have shape (..., k, {mu.shape[-1]}), got {g.shape}")
    # G has mean's axes plus k: a G without its k axis, (N, nt, m) against an (N, nt, m) mean, would otherwise
    # pass as nt rows per slice (when N = nt), each slice's quadrature compared with every slice's mass
    if g.ndim != mu.ndim + 1 or not _broadcasts_into(g.shape[:-2], mu.shape[:-1]):
        raise ValueError(f"G must have shape (..., k, {mu.shape[-1]}) with mean's batch axes {mu.shape[:-1]} "
                         f"(one axis more than mean, size 1 to share), got {g.shape}")
    quadrature = np.einsum("...kn,...n->...k", g, mu)  # G μ, (..., k)
    # b must not widen G μ: a (..., nt) b against (..., nt, 1) would compare every slice with every mass
    if rhs.ndim < 1 or rhs.shape[-1] != g.shape[-2] or not _broadcasts_into(rhs.shape, quadrature.shape):
        raise ValueError(f"b must have shape (..., k) = {quadrature.shape} (one value per row of G), "
                         f"got {rhs.shape}")
    ce = quadrature - rhs
    return float(np.mean(np.abs(ce))) if reduce == "mean_abs" else ce


def bound_violation(mean: np.ndarray, lower: float = 0.0) -> float:
    """max_j max(ℓ − μ_j, 0): how far the predicted mean falls below the lower bound ℓ the physics keeps u above
    (0 for a density), over every entry; 0 when no entry does."""
    mu = _f64("mean", mean)
    if not np.isfinite(lower):
        raise ValueError(f"lower must be finite, got {lower!r}")
    return float(np.max(lower - mu, initial=0.0))


@dataclass(frozen=True)
class BoundaryError:
    """Errors restricted to boundary points: ``max_abs`` = max |pred − true| over them, ``relative`` =
    ‖pred_B − true_B‖₂ / ‖true_B‖₂ over all of them (NaN when the boundary data are identically zero)."""

    max_abs: float
    relative: float


def boundary_error(pred: np.ndarray, true: np.ndarray, boundary: np.ndarray) -> BoundaryError:
    """Boundary error of ``pred`` against ``true`` (same shape (..., n)) on the points where ``boundary`` is True.

    ``boundary`` is a boolean mask broadcastable to the field shape (e.g. (nx,) with the two ends set) or
    an integer index array into the last axis. BOON's corrected operator has 0 here (Saad et al. 2023).
    A float array, or an integer array of 0s and 1s as long as the last axis (a mask in the wrong dtype,
    which would select points 0 and 1), → ValueError.
    """
    p, t = _f64("pred", pred), _f64("true", true)
    _same_shape(pred=p, true=t)
    mask = np.asarray(boundary)
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(f"boundary must be a boolean mask or integer indices, got dtype {mask.dtype}")
        if mask.ndim >= 1 and mask.shape[-1] == p.shape[-1] > 2 and np.isin(mask, (0, 1)).all():
            raise ValueError("boundary holds 0s and 1s along the whole last axis: a mask, not indices; "
                             "pass it as bool (boundary.astype(bool))")
        idx = mask.astype(np.int64).reshape(-1)
        if np.any(idx < -p.shape[-1]) or np.any(idx >= p.shape[-1]):
            raise ValueError(f"boundary indices must lie in [0, {p.shape[-1]}), got {idx.tolist()}")
        mask = np.zeros(p.shape[-1], dtype=bool)
        mask[idx] = True
    try:
        mask = np.broadcast_to(mask, p.shape)
    except ValueError as exc:
        raise ValueError(f"boundary mask of shape {np.shape(boundary)} does not broadcast to {p.shape}") from exc
    if not mask.any():
        raise ValueError("boundary selects no points")
    err = (p - t)[mask]
    scale = np.linalg.norm(t[mask])
    rel = float(np.linalg.norm(err) / scale) if scale > 0 else float("nan")
    return BoundaryError(max_abs=float(np.max(np.abs(err))), relative=rel)


def gaussian_log_likelihood(
    true: np.ndarray, mean: np.ndarray, var: np.ndarray, min_var: float = MIN_VAR, reduce: Reduce = "mean"
) -> np.ndarray | float:
    """Per-point Gaussian log-likelihood log N(y; μ, v) = −(y − μ)²/(2v) − ½ log v − ½ log 2π.

    ``var`` is the marginal (diagonal) predictive variance, floored at ``min_var`` (:data:`MIN_VAR`: the
    reference's ``loglik`` has no floor); averaged over all points (``reduce="mean"``) or returned pointwise.
    For a full covariance pass its diagonal.
    """
    _check_reduce(reduce, ("mean", "none"))
    y, mu, v = _f64("true", true), _f64("mean", mean), _f64("var", var)
    _same_shape(true=y, mean=mu, var=v)
    if np.any(v < 0):
        raise ValueError("var must be ≥ 0")
    if not min_var > 0:
        raise ValueError(f"min_var must be > 0, got {min_var}")
    v = np.maximum(v, min_var)
    ll = -0.5 * (y - mu) ** 2 / v - 0.5 * np.log(v) - 0.5 * np.log(2 * np.pi)
    return float(np.mean(ll)) if reduce == "mean" else ll


def gaussian_crps(true: np.ndarray, mean: np.ndarray, var: np.ndarray, reduce: Reduce = "mean") -> np.ndarray | float:
    """Continuous ranked probability score of N(μ, v) at y (Gneiting & Raftery 2007, JASA, Eq. 21), in units of u:

        CRPS = ∫ (Φ((x − μ)/σ) − 1{x ≥ y})² dx = σ [z (2 Φ(z) − 1) + 2 φ(z) − 1/√π],  z = (y − μ)/σ,  σ = √v,

    and |y − μ| where v = 0 (the limit). Lower is better; a proper score, minimised in expectation by the true
    distribution. Far outside its interval a point adds about |y − μ| − σ/√π, linear in the error, where the
    log-likelihood adds (y − μ)²/(2v), so a few targets with a tiny σ and a large error cannot carry the mean as
    they carry :func:`gaussian_log_likelihood`'s (no variance floor is needed). ``var`` is the marginal (diagonal)
    predictive variance; averaged over all points (``reduce="mean"``) or returned pointwise.
    """
    _check_reduce(reduce, ("mean", "none"))
    y, mu, v = _f64("true", true), _f64("mean", mean), _f64("var", var)
    _same_shape(true=y, mean=mu, var=v)
    if np.any(v < 0):
        raise ValueError("var must be ≥ 0")
    sigma = np.sqrt(v)
    err = y - mu
    spread = sigma > 0
    z = np.divide(err, sigma, out=np.zeros_like(err), where=spread)
    score = np.where(spread, sigma * (z * special.erf(z / np.sqrt(2.0)) + 2 * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
                                      - 1 / np.sqrt(np.pi)), np.abs(err))
    return float(np.mean(score)) if reduce == "mean" else score


def interval_coverage(true: np.ndarray, mean: np.ndarray, var: np.ndarray, level: float = 0.9) -> float:
    """Fraction of points with |y − μ| ≤ z σ, z = Φ⁻¹((1 + level)/2): the empirical coverage of the central
    ``level`` interval (0.5 → z ≈ 0.674, 0.9 → z ≈ 1.645). A calibrated model gives ≈ ``level``."""
    y, mu, v = _f64("true", true), _f64("mean", mean), _f64("var", var)
    _same_shape(true=y, mean=mu, var=v)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if np.any(v < 0):
        raise ValueError("var must be ≥ 0")
    z = float(special.ndtri(0.5 * (1 + level)))
    return float(np.mean(np.abs(y - mu) <= z * np.sqrt(v)))


def shock_positions(samples: np.ndarray, x: np.ndarray, level: float) -> np.ndarray:
    """Front position in each profile: where u first drops to ``level`` scanning from the left.

    ``samples`` (..., m) profiles of u on sorted ``x`` (m,). With i the first index where u_i ≤ level,
    the position is the linear interpolation of the crossing between x_{i−1} and x_i; x_0 if u_0 ≤ level;
    x_{m−1} if u never reaches the level. The reference takes the first grid point with u ≤ 0
    (``_estimate_shock_interval_for_one_f``), i.e. level 0 without interpolation; for the Stefan problem,
    whose exact u jumps from p* to 0 at the front, we recommend level = p*/2 (the middle of the jump),
    which is robust to sample noise around 0. Returns positions of shape (...).
    """
    u, xs = _f64("samples", samples), _f64("x", x)
    if not np.isfinite(level):
        raise ValueError(f"level must be a finite number, got {level!r}")
    if xs.ndim != 1 or xs.size != u.shape[-1] or xs.size < 1:
        raise ValueError(f"x must have shape ({u.shape[-1]},), got {xs.shape}")
    if np.any(np.diff(xs) < 0):
        raise ValueError("x must be sorted")
    below = u <= level
    i = np.argmax(below, axis=-1)
    found = np.any(below, axis=-1)
    i_prev = np.maximum(i - 1, 0)
    u_i = np.take_along_axis(u, i[..., None], -1)[..., 0]
    u_p = np.take_along_axis(u, i_prev[..., None], -1)[..., 0]
    denom = u_p - u_i
    frac = np.divide(u_p - level, denom, out=np.zeros_like(denom), where=denom > 0)
    pos = xs[i_prev] + np.clip(frac, 0.0, 1.0) * (xs[i] - xs[i_prev])
    return np.where(found, pos, xs[-1])


@dataclass(frozen=True)
class ShockPosterior:
    """Posterior of the front position from samples: mean, std, error of the mean vs the exact front,
    and whether the exact front lies in the central 90 % interval of the samples (their 5 % and 95 % quantiles).
    ``positions`` (n·…): every sample's front, for a histogram drawn on the plot's own bins."""

    positions: np.ndarray
    mean: float
    std: float
    error: float
    covers_90: bool


def shock_position_posterior(
    samples: np.ndarray, x: np.ndarray, level: float, true_front: float
) -> ShockPosterior:
    """Posterior of the shock position at one time from posterior samples (n, m) of u (Hansen et al. 2023, §4.2).

    positions = :func:`shock_positions`; mean/std over samples; ``error`` = mean − ``true_front`` (for the
    Stefan problem x*(t) = 2 z₁ √t, ``Stefan.front_position(params, t)``); ``covers_90``: q₀.₀₅ ≤ true_front
    ≤ q₀.₉₅ for the positions' quantiles q (a well-centred posterior covers the exact front in about 90 % of
    test functions; a narrow one beside it, in none).
    """
    xs = _f64("x", x)
    pos = shock_positions(samples, xs, level).reshape(-1)
    if not np.isfinite(true_front):
        raise ValueError("true_front must be finite")
    lo, hi = np.quantile(pos, [0.05, 0.95])
    return ShockPosterior(
        positions=pos,
        mean=float(np.mean(pos)),
        std=float(np.std(pos)),
        error=float(np.mean(pos) - true_front),
        covers_90=bool(lo <= true_front <= hi),
    )
