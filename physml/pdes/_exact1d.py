"""Shared machinery of the 1-D exact-solution cases (heat, pme, stefan, advection, burgers).

- :class:`ExactProblem1D` is their base: its ``solve`` checks parameters and grid and evaluates the
  case's closed form ``_field``.
- :func:`space_time_grid` validates ``(x, t)`` and broadcasts them to the ``(len(t), len(x))`` layout.
- :func:`quadrature_mass` integrates ``solve`` over the domain with composite Gauss–Legendre rules
  split at the solution's known kinks/jumps and graded geometrically towards them, so that a
  discontinuous or root-singular exact solution is still integrated to ~1e-13.
- :func:`conservation_record`, :func:`mass_record` and :func:`residual_order_record` turn the checks
  of the integral conservation law d/dt ∫u dx = F(x_L) − F(x_R) and of the PDE residual of an exact
  solution into :class:`VerificationRecord` rows.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from physml.pdes.base import Problem, VerificationRecord


def space_time_grid(problem: Problem, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate 1-D ``x`` (inside ``problem.x_domain``) and ``t`` (≥ ``t_domain[0]``).

    Returns ``(tt, xx)`` of shapes ``(len(t), 1)`` and ``(1, len(x))`` (float64) that broadcast to
    ``(len(t), len(x))``.
    """
    x_in = np.asarray(x)
    x = x_in.astype(np.float64)
    t = np.asarray(t, dtype=np.float64)
    for label, arr in (("x", x), ("t", t)):
        if arr.ndim != 1:
            raise ValueError(f"{problem.name}: {label} must be a 1-D array, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{problem.name}: {label} must be finite")
    lo, hi = problem.x_domain
    input_eps = np.finfo(x_in.dtype).eps if np.issubdtype(x_in.dtype, np.floating) else 0.0
    slack = max(1e-12, 4.0 * input_eps) * max(abs(lo), abs(hi), hi - lo)
    if x.size and (x.min() < lo - slack or x.max() > hi + slack):
        raise ValueError(f"{problem.name}: x must lie in the domain [{lo:g}, {hi:g}], got [{x.min():g}, {x.max():g}]")
    t0 = problem.t_domain[0]
    if t.size and t.min() < t0:
        raise ValueError(f"{problem.name}: t must be >= {t0:g} (the initial time), got {t.min():g}")
    return t[:, None], x[None, :]


class ExactProblem1D(Problem):
    """A 1-D problem with a closed-form solution u(t, x) = ``_field(p, tt, xx)``.

    :meth:`solve` validates the parameters (:meth:`Problem.check_params`) and the grid
    (:func:`space_time_grid`) and evaluates :meth:`_field`, which each case implements with its formula;
    the verification's finite-difference residuals call ``_field`` directly on shifted grids.
    """

    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """u(t, x) = ``_field(p, tt, xx)`` (the case's formula), float64 of shape ``(len(t), len(x))``."""
        p = self.check_params(params)
        tt, xx = space_time_grid(self, x, t)
        return self._field(p, tt, xx)

    def boundary_data(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """Dirichlet problems: the closed-form solution at the two ends, (u(t, x_L), u(t, x_R)), shape
        ``(len(t), 2)``: the values the exact solution holds there are the problem's Dirichlet data. Other
        boundaries: :meth:`Problem.boundary_data`."""
        if self.boundary != "dirichlet":
            return super().boundary_data(params, t)
        return self.solve(params, np.array(self.x_domain), np.asarray(t, dtype=np.float64))

    @abstractmethod
    def _field(self, p: Mapping[str, float], tt: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """u for checked parameters ``p`` at times ``tt`` and positions ``xx`` that broadcast together,
        e.g. ``(nt, 1)`` and ``(1, nx)`` → ``(nt, nx)``."""


@lru_cache(maxsize=1)
def _graded_panel_nodes(n_uniform: int = 16, grading: float = 0.25, levels: int = 25, order: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes/weights on [0, 1]: ``n_uniform`` panels plus geometric refinement (ratio
    ``grading``, ``levels`` deep) towards both ends, so endpoint singularities like s^α are resolved."""
    geometric = grading ** np.arange(1, levels + 1)
    edges = np.unique(np.concatenate([np.linspace(0.0, 1.0, n_uniform + 1), geometric / n_uniform, 1.0 - geometric / n_uniform]))
    gx, gw = np.polynomial.legendre.leggauss(order)
    left, width = edges[:-1, None], np.diff(edges)[:, None]
    nodes = left + 0.5 * width * (gx[None, :] + 1.0)
    weights = 0.5 * width * gw[None, :]
    return nodes.ravel(), weights.ravel()


def quadrature_mass(problem: Problem, params: Mapping[str, float], t: Sequence[float], breaks: Callable[[float], Sequence[float]]) -> np.ndarray:
    """∫_{x_L}^{x_R} u(t, x) dx for each ``t`` from ``problem.solve``, shape ``(len(t),)``.

    ``breaks(t)`` lists the interior points where u or u_x is not smooth (fronts, shocks, kinks);
    the domain is split there and each piece gets a graded composite Gauss–Legendre rule.
    """
    s, w = _graded_panel_nodes()
    lo, hi = problem.x_domain
    out = np.empty(len(t))
    for i, ti in enumerate(np.asarray(t, dtype=np.float64)):
        cuts = sorted({lo, hi, *(b for b in breaks(float(ti)) if lo < b < hi)})
        nodes = np.concatenate([a + (b - a) * s for a, b in zip(cuts[:-1], cuts[1:])])
        weights = np.concatenate([(b - a) * w for a, b in zip(cuts[:-1], cuts[1:])])
        nodes = np.clip(nodes, lo, hi)
        out[i] = float(problem.solve(params, nodes, np.array([ti]))[0] @ weights)
    return out


def numerical_mass_rate(
    problem: Problem, params: Mapping[str, float], t: np.ndarray, breaks: Callable[[float], Sequence[float]], delta: float
) -> np.ndarray:
    """d/dt ∫u dx by the fourth-order central difference of :func:`quadrature_mass`,

        M'(t) ≈ [M(t − 2δ) − 8 M(t − δ) + 8 M(t + δ) − M(t + 2δ)] / 12δ,

    shape ``(len(t),)``; the stencil must not straddle a kink of M (e.g. a front leaving the domain).
    """
    t = np.asarray(t, dtype=np.float64)
    m = {j: quadrature_mass(problem, params, t + j * delta, breaks) for j in (-2, -1, 1, 2)}
    return (m[-2] - 8.0 * m[-1] + 8.0 * m[1] - m[2]) / (12.0 * delta)


def _label(params: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in params.items())


def conservation_record(
    problem: Problem, params: Mapping[str, float], t: np.ndarray, breaks: Callable[[float], Sequence[float]], delta: float, tolerance: float
) -> VerificationRecord:
    """max_t |d/dt ∫u dx − (F_L − F_R)|: quadrature of ``solve`` against ``boundary_flux``."""
    rate = numerical_mass_rate(problem, params, t, breaks, delta)
    flux = problem.boundary_flux(params, np.asarray(t, dtype=np.float64))
    error = float(np.max(np.abs(rate - (flux[:, 0] - flux[:, 1]))))
    return VerificationRecord(
        case=problem.name,
        check=f"conservation d/dt∫u dx = F_L - F_R ({_label(params)}, {len(t)} times)",
        reference="boundary_flux vs central difference of quadrature of solve",
        error=error,
        tolerance=tolerance,
    )


def mass_record(
    problem: Problem, params: Mapping[str, float], t: np.ndarray, breaks: Callable[[float], Sequence[float]], tolerance: float
) -> VerificationRecord:
    """max_t |mass(t) − ∫ solve dx|: the closed-form mass against quadrature of the solution."""
    t = np.asarray(t, dtype=np.float64)
    error = float(np.max(np.abs(problem.mass(params, t) - quadrature_mass(problem, params, t, breaks))))
    return VerificationRecord(
        case=problem.name,
        check=f"closed-form mass M(t) ({_label(params)}, {len(t)} times)",
        reference="graded Gauss-Legendre quadrature of solve",
        error=error,
        tolerance=tolerance,
    )


def residual_order_record(
    problem: Problem, params: Mapping[str, float], residual: Callable[[float], np.ndarray], h: float, region: str, tolerance: float
) -> VerificationRecord:
    """Finite-difference PDE residual of the exact solution at steps h and h/2 and its observed order.

    ``residual(h)`` returns the residual at fixed sample points with central differences of step h
    in t and x; for an exact solution it is the truncation error, O(h²).
    """
    coarse = float(np.max(np.abs(residual(h))))
    fine = float(np.max(np.abs(residual(h / 2.0))))
    order = float(np.log2(coarse / fine)) if fine > 0.0 else None
    return VerificationRecord(
        case=problem.name,
        check=f"FD residual of the exact solution, {region} ({_label(params)}, h={h:g}, h/2)",
        reference="PDE (central differences, expected O(h^2))",
        error=fine,
        order=order,
        expected_order=2.0,
        tolerance=tolerance,
    )
