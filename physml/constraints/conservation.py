"""The integral conservation law as a linear constraint G u = b on the target grid (ProbConserv).

For a 1-D conservation law u_t + F(u)_x = 0 on [x_L, x_R] the total mass obeys

    ∫_{x_L}^{x_R} u(t, x) dx = M(t) = M(t₀) + ∫_{t₀}^{t} [F(s, x_L) − F(s, x_R)] ds

(Hansen et al., ICML 2023, Eq. 3). On the sorted target positions x_1 ≤ … ≤ x_m of one time slice the
integral is a quadrature Σ_j w_j u_j, so each time slice contributes one row G = w and b = M(t).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from physml.pdes.base import Problem

Ends = Literal["extend", "reference"]


def trapezoid_weights(
    x: np.ndarray,
    domain: tuple[float, float],
    ends: Ends = "extend",
    periodic: bool = False,
) -> np.ndarray:
    """Quadrature weights w (shape (..., m)) with Σ_j w_j u(x_j) ≈ ∫_{x_L}^{x_R} u dx, for sorted x (..., m).

    Interior: the trapezoid rule on the (irregular) points, w_j = (x_{j+1} − x_{j−1}) / 2, and
    w_1 = (x_2 − x_1)/2, w_m = (x_m − x_{m−1})/2 (the reference code's ``_get_riemman_delta``,
    amazon-science/probconserv, ``riemann_type="trapezoid"``).

    The pieces of the domain outside [x_1, x_m]:

    - ``ends="reference"``: ignored, as in the reference code — the weights integrate over [x_1, x_m]
      only, so Σ w = x_m − x_1 < x_R − x_L and the constraint is biased by the mass in the end pieces.
    - ``ends="extend"`` (default): u is held constant from x_1 down to x_L and from x_m up to x_R
      (w_1 += x_1 − x_L, w_m += x_R − x_m), so Σ w = x_R − x_L and constants integrate exactly. For a
      ``periodic`` domain the gap (x_R − x_m) + (x_1 − x_L) is instead one trapezoid panel across the
      wrap (half of it added to w_1 and half to w_m), which is the periodic trapezoid rule — spectrally
      accurate for smooth periodic u.
    """
    x_in = np.asarray(x)
    x = x_in.astype(np.float64)
    lo, hi = float(domain[0]), float(domain[1])
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"target_x must have shape (..., m) with m ≥ 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("target_x contains NaN or inf")
    if ends not in ("extend", "reference"):
        raise ValueError(f"ends must be 'extend' or 'reference', got {ends!r}")
    if not hi > lo:
        raise ValueError(f"domain must satisfy x_L < x_R, got {domain}")
    # an end point rounded in the input's precision (float32(2π) = 2π + 1.7e-7) lies on the end: clip it there
    input_eps = np.finfo(x_in.dtype).eps if np.issubdtype(x_in.dtype, np.floating) else 0.0
    slack = max(1e-12, 4.0 * input_eps) * max(abs(lo), abs(hi), hi - lo)
    if np.any(x < lo - slack) or np.any(x > hi + slack):
        raise ValueError(f"target_x must lie in the domain [{lo:.17g}, {hi:.17g}] (to {slack:.2g}); got range "
                         f"[{x.min():.17g}, {x.max():.17g}]")
    x = np.clip(x, lo, hi)
    dx = np.diff(x, axis=-1)
    if np.any(dx < 0):
        raise ValueError("target_x must be sorted (non-decreasing) along its last axis within each time slice")
    zero = np.zeros(x.shape[:-1] + (1,))
    w = 0.5 * (np.concatenate([dx, zero], axis=-1) + np.concatenate([zero, dx], axis=-1))
    if ends == "extend":
        left, right = x[..., 0] - lo, hi - x[..., -1]
        if periodic:
            gap = 0.5 * (left + right)
            w[..., 0] += gap
            w[..., -1] += gap
        else:
            w[..., 0] += left
            w[..., -1] += right
    return w


def conservation_constraint(
    problem: Problem,
    params: Mapping[str, float],
    target_t: np.ndarray,
    target_x: np.ndarray,
    ends: Ends = "extend",
) -> tuple[np.ndarray, np.ndarray]:
    """The conservation law of ``problem`` on one function's target grid, as (G, b) per time slice.

    ``target_t``: (nt,) times in the problem's t-domain; ``target_x``: (m,) positions shared by all
    slices or (nt, m), each row sorted. Returns ``G`` of shape (nt, 1, m) — the quadrature weights of
    :func:`trapezoid_weights` (``periodic`` when ``problem.boundary == "periodic"``) — and ``b`` of shape
    (nt, 1) — the exact mass ``problem.mass(params, t)`` = M(t₀) + ∫ [F(x_L) − F(x_R)] ds.
    Feed them to :func:`physml.constraints.condition` with mean (nt, m).
    """
    if not problem.conservative:
        raise ValueError(f"problem {problem.name!r} has no integral conservation law (conservative=False)")
    if problem.spatial_dims != 1:
        raise ValueError(f"conservation_constraint supports 1-D problems; {problem.name!r} has {problem.spatial_dims}")
    t = np.asarray(target_t, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"target_t must have shape (nt,) with nt ≥ 1, got {t.shape}")
    t0, t1 = problem.t_domain
    if not np.all(np.isfinite(t)) or np.any(t < t0) or np.any(t > t1):
        raise ValueError(f"target_t must be finite and lie in the t-domain [{t0:g}, {t1:g}]")
    x = np.asarray(target_x)  # its own precision: trapezoid_weights takes an end rounded in it as the end
    if x.ndim == 1:
        x = np.broadcast_to(x, (t.size, x.size))
    elif x.ndim != 2 or x.shape[0] != t.size:
        raise ValueError(f"target_x must have shape (m,) or (nt, m) with nt = {t.size}, got {x.shape}")
    w = trapezoid_weights(x, problem.x_domain, ends=ends, periodic=problem.boundary == "periodic")
    b = np.asarray(problem.mass(params, t), dtype=np.float64).reshape(t.size, 1)
    return w[:, None, :], b
