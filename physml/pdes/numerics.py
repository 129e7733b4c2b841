"""Shared numerics for the 1-D operator (BOON) cases: grids, input checks, a DCT-based heat solver.

Everything here works on vertex-centred uniform grids ``x_i = x_L + i h``, ``i = 0..M``, ``h = L / M``,
so that the two boundary points are grid points (that is where BOON imposes its conditions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft
from scipy.interpolate import CubicSpline

GridSolver = Callable[[np.ndarray], np.ndarray]
"""A solver on a uniform vertex grid: ``grid (M+1,) -> u (len(t), M+1)`` (the times are bound in)."""


def check_x(x: np.ndarray, domain: tuple[float, float]) -> np.ndarray:
    """``x`` as a finite float64 vector inside ``domain``; ValueError naming ``x`` otherwise."""
    arr = np.asarray(x, dtype=np.float64)
    lo, hi = domain
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array of positions in [{lo:g}, {hi:g}], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < lo or arr.max() > hi:
        raise ValueError(f"x must lie in the domain [{lo:g}, {hi:g}]; got values in [{arr.min():g}, {arr.max():g}]")
    return arr


def check_t(t: np.ndarray, domain: tuple[float, float]) -> np.ndarray:
    """``t`` as a finite float64 vector of times ``>= t0``; ValueError naming ``t`` otherwise.

    Times beyond the nominal end of the domain are allowed (the solvers are valid for all t ≥ t0).
    """
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"t must be a non-empty 1-D array of times >= {domain[0]:g}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < domain[0]:
        raise ValueError(f"t must be finite and >= {domain[0]:g}; got minimum {arr.min():g}")
    return arr


def uniform_refinement(x: np.ndarray, domain: tuple[float, float], min_intervals: int) -> tuple[np.ndarray, int] | None:
    """If ``x`` is the uniform vertex grid of ``domain`` (n ≥ 2 points, both ends included), return a
    refinement of it with ``M = r (n − 1) ≥ min_intervals`` intervals and the stride ``r`` (so that
    ``fine[::r] == x``); otherwise ``None``.
    """
    n = x.size
    lo, hi = domain
    if n < 2 or x[0] != lo or x[-1] != hi:
        return None
    if not np.allclose(x, np.linspace(lo, hi, n), rtol=0.0, atol=1e-12 * (hi - lo)):
        return None
    stride = max(1, math.ceil(min_intervals / (n - 1)))
    return np.linspace(lo, hi, stride * (n - 1) + 1), stride


def evaluate_on(x: np.ndarray, domain: tuple[float, float], min_intervals: int, grid_solver: GridSolver) -> np.ndarray:
    """Run a uniform-grid solver so that its values at ``x`` come out, shape ``(len(t), len(x))``.

    A uniform ``x`` spanning the domain is refined by an integer factor and subsampled (the returned
    values are the solver's own grid values); any other ``x`` is served by a cubic spline through a grid
    of ``min_intervals`` intervals (spline error O(h⁴), below the solvers' O(h²)).
    """
    refined = uniform_refinement(x, domain, min_intervals)
    if refined is not None:
        fine, stride = refined
        return np.ascontiguousarray(grid_solver(fine)[:, ::stride])
    fine = np.linspace(domain[0], domain[1], min_intervals + 1)
    values = grid_solver(fine)
    return CubicSpline(fine, values, axis=1)(x)


def observed_order(e_coarse: float, e_fine: float, h_coarse: float, h_fine: float) -> float:
    """Observed convergence order log(e_coarse / e_fine) / log(h_coarse / h_fine)."""
    return float(math.log(e_coarse / e_fine) / math.log(h_coarse / h_fine))


@dataclass(frozen=True)
class ExpTerm:
    """One term ``Re(amplitude · exp(rate · t))`` of a boundary datum; ``sin(πt) = Re(−i e^{iπt})``."""

    amplitude: complex
    rate: complex


def _duhamel(mu: np.ndarray, rate: complex, t: np.ndarray) -> np.ndarray:
    """E(μ, s, t) = ∫₀ᵗ e^{μ(t−τ)} e^{sτ} dτ = (e^{st} − e^{μt}) / (s − μ), shape ``(len(t), len(μ))``.

    Near s = μ the quotient is replaced by its series e^{μt} t (1 + z/2 + z²/6 + z³/24), z = (s − μ) t.
    """
    tt = t[:, None]
    d = rate - mu[None, :]
    z = d * tt
    small = np.abs(z) < 1e-4
    d_safe = np.where(small, 1.0, d)
    direct = (np.exp(rate * tt) - np.exp(mu[None, :] * tt)) / d_safe
    series = np.exp(mu[None, :] * tt) * tt * (1.0 + z / 2.0 + z**2 / 6.0 + z**3 / 24.0)
    return np.where(small, series, direct)


def heat_neumann_dct(
    u0: np.ndarray,
    length: float,
    k: float,
    t: np.ndarray,
    left: Sequence[ExpTerm] = (),
    right: Sequence[ExpTerm] = (),
) -> np.ndarray:
    """Solve u_t = k u_xx on a uniform vertex grid with Neumann data u_x(x_L) = g_L(t), u_x(x_R) = g_R(t).

    Space: the second-order ghost-point discretisation (u_{−1} = u_1 − 2h g_L, u_{M+1} = u_{M−1} + 2h g_R),

        du/dt = k (A u + (2/h) (g_R e_M − g_L e_0)),

    whose matrix A is diagonalised by the type-I DCT: eigenvectors cos(π j i / M), eigenvalues
    λ_j = −(4/h²) sin²(π j / (2M)). Time: each mode is integrated exactly (Duhamel's formula) for data
    g = Σ Re(G e^{st}) given as :class:`ExpTerm` lists, so the only error is the O(h²) of the stencil.
    Mode j = 0 is the trapezoid-rule mass, which therefore obeys d/dt ∫u = k (g_R − g_L) to round-off.

    Shapes: ``u0`` (M+1,) initial values on the grid, ``t`` (nt,) times ≥ 0 measured from the initial
    time; returns (nt, M+1) float64.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    m = u0.size - 1
    if m < 1:
        raise ValueError(f"u0 needs at least 2 grid points, got {u0.size}")
    h = length / m
    j = np.arange(m + 1)
    mu = -k * (4.0 / h**2) * np.sin(np.pi * j / (2.0 * m)) ** 2
    u0_hat = fft.dct(u0, type=1)
    u_hat = np.exp(mu[None, :] * t[:, None]) * u0_hat[None, :]
    sign = np.where(j % 2 == 0, 1.0, -1.0)
    for term in right:
        u_hat += (k * 2.0 / h) * sign[None, :] * np.real(term.amplitude * _duhamel(mu, term.rate, t))
    for term in left:
        u_hat -= (k * 2.0 / h) * np.real(term.amplitude * _duhamel(mu, term.rate, t))
    return fft.idct(u_hat, type=1, axis=1)


def trapezoid_mass(u: np.ndarray, h: float) -> np.ndarray:
    """Trapezoid-rule integral of each row of ``u`` (shape (nt, M+1)) on a grid of spacing ``h``."""
    return h * (u.sum(axis=1) - 0.5 * (u[:, 0] + u[:, -1]))


def pinned_ends(u: np.ndarray, x: np.ndarray, domain: tuple[float, float], values: np.ndarray) -> np.ndarray:
    """Write the Dirichlet ``values`` (shape (nt, 2)) into the columns of ``u`` where ``x`` is an end point.

    Closed forms such as sin(nπx) give ~1e-16 instead of 0 at x = 1; this makes the boundary exact.
    """
    u = np.array(u, dtype=np.float64, copy=True)
    u[:, x == domain[0]] = values[:, :1]
    u[:, x == domain[1]] = values[:, 1:]
    return u


def residual_study(residual: Callable[[float], float], steps: tuple[float, float]) -> tuple[float, float]:
    """Finite-difference residual of a closed-form solution at two step sizes (coarse, fine).

    ``residual(h)`` returns max |PDE residual| with derivatives replaced by O(h²) central differences;
    for an exact solution it vanishes like h², for a wrong one it stalls. Returns (error at the fine
    step, observed order).
    """
    e_coarse, e_fine = residual(steps[0]), residual(steps[1])
    return e_fine, observed_order(e_coarse, e_fine, steps[0], steps[1])
