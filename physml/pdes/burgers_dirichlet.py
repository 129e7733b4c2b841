"""Viscous Burgers' equation with homogeneous Dirichlet ends (BOON, 1-D single step / multi step).

    u_t + (u²/2)_x = ν u_xx,  x ∈ [0, 1],  t ∈ [0, 1],
    u(0, t) = u(1, t) = 0,
    u(x, 0) = Σ_{n=1}^{4} c_n sin(nπx).

Source: Saad et al., ICLR 2023 (Burgers with Dirichlet data, ν = 0.1, operator u₀ ↦ u(T)); the random
initial data as four sine coefficients is ours, and so both ends are 0 for every sample (BOON's Dirichlet
correction takes per-sample, per-time values, which stokes2 and wave exercise). Reference solver: method of lines with second-order
central differences of the conservative flux and of the diffusion, integrated in time by LSODA with a
banded Jacobian and tight tolerances (time error far below the O(h²) space error). Verified against the
Cole–Hopf solution for u₀ = A sin(πx) (Cole 1951; Hopf 1950):

    u = 2πν Σ n a_n e^{−n²π²νt} sin(nπx) / (a_0 + Σ a_n e^{−n²π²νt} cos(nπx)),
    a_0 = I_0(R), a_n = 2 I_n(R), R = A / (2πν)   (I_n: modified Bessel functions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from scipy import special
from scipy.integrate import odeint

from physml.pdes.base import Parameter, Problem, VerificationRecord
from physml.pdes.numerics import check_t, check_x, evaluate_on, observed_order

N_MODES = 4
COLE_HOPF_MAX_R = 12.0


def burgers_dirichlet_mol(u0: np.ndarray, nu: float, t: np.ndarray, rtol: float = 1e-9, atol: float = 1e-11) -> np.ndarray:
    """Method-of-lines solution of u_t + (u²/2)_x = ν u_xx on a uniform vertex grid of [0, 1], u = 0 at both ends.

    Semi-discretisation (second order): du_i/dt = ν (u_{i+1} − 2u_i + u_{i−1})/h² − (u_{i+1}² − u_{i−1}²)/(4h)
    for the interior points; time: LSODA (scipy ``odeint``) with the exact tridiagonal Jacobian.
    Shapes: ``u0`` (M+1,) with u0[0] = u0[M] = 0 imposed, ``t`` (nt,) times ≥ 0 in any order; returns
    (nt, M+1) float64 with the end columns exactly 0.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    m = u0.size - 1
    if m < 2:
        raise ValueError(f"u0 needs at least 3 grid points, got {u0.size}")
    h = 1.0 / m
    diff = nu / h**2

    def rhs(v: np.ndarray, _t: float) -> np.ndarray:
        w = np.concatenate(([0.0], v, [0.0]))
        return diff * (w[2:] - 2.0 * w[1:-1] + w[:-2]) - (w[2:] ** 2 - w[:-2] ** 2) / (4.0 * h)

    def jac(v: np.ndarray, _t: float) -> np.ndarray:
        band = np.empty((3, v.size))
        band[0] = diff - v / (2.0 * h)  # ∂f_{j−1}/∂v_j
        band[1] = -2.0 * diff  # ∂f_j/∂v_j
        band[2] = diff + v / (2.0 * h)  # ∂f_{j+1}/∂v_j
        return band

    times, inverse = np.unique(np.asarray(t, dtype=np.float64), return_inverse=True)
    starts_at_zero = times[0] == 0.0
    grid_times = times if starts_at_zero else np.concatenate(([0.0], times))
    out = np.zeros((grid_times.size, m + 1))
    if grid_times.size > 1:
        y, info = odeint(rhs, u0[1:-1], grid_times, Dfun=jac, ml=1, mu=1, rtol=rtol, atol=atol, full_output=True, mxstep=100000)
        if info["message"] != "Integration successful.":
            raise RuntimeError(f"burgers_dirichlet: time integration failed: {info['message']}")
        out[:, 1:-1] = y
    else:
        out[0, 1:-1] = u0[1:-1]
    if not starts_at_zero:
        out = out[1:]
    return out[inverse.ravel()]


def cole_hopf_sine(amplitude: float, nu: float, x: np.ndarray, t: np.ndarray, n_terms: int = 400) -> np.ndarray:
    """Exact Cole–Hopf solution for u₀ = A sin(πx), u(0) = u(1) = 0 (formula in the module docstring).

    Uses exponentially scaled Bessel functions (the common factor e^{−R} cancels). Shape (len(t), len(x)).
    Valid for |R| = |A|/(2πν) ≤ :data:`COLE_HOPF_MAX_R`: beyond it the denominator cancels near x = 1 in
    float64 (against a 4096-interval solve, at t = 0.25 and 1: 1.4e-6 at R = 12, 1.2e-3 at R = 16, a
    division by zero at R = 20, whatever ``n_terms``), so a larger R → ValueError.
    """
    r = amplitude / (2.0 * np.pi * nu)
    if not abs(r) <= COLE_HOPF_MAX_R:
        raise ValueError(f"cole_hopf_sine: R = A/(2πν) = {r:.3g} is outside [-{COLE_HOPF_MAX_R}, {COLE_HOPF_MAX_R}], "
                         "where the series cancels in float64; use burgers_dirichlet_mol")
    n = np.arange(1, n_terms + 1)
    a0 = special.ive(0, r)
    an = 2.0 * special.ive(n, r)
    decay = an[None, :] * np.exp(-(n[None, :] ** 2) * np.pi**2 * nu * np.asarray(t, dtype=np.float64)[:, None])
    phase = np.pi * np.outer(n, x)
    numerator = 2.0 * np.pi * nu * (decay * n[None, :]) @ np.sin(phase)
    denominator = a0 + decay @ np.cos(phase)
    return numerator / denominator


class ViscousBurgersDirichlet(Problem):
    """Viscous Burgers with zero Dirichlet ends and a four-mode sine initial field; see the module docstring.

    ``min_intervals``: the solver grid has at least this many intervals, and at least max|u₀|/ν so that
    the cell Péclet number |u| h / ν stays ≤ 1 (no wiggles from the central advection stencil). A ν so
    small that this needs more than :attr:`max_intervals` (about 10 s of LSODA at the cap) is refused.
    """

    max_intervals: ClassVar[int] = 20_000

    name: ClassVar[str] = "burgers_dirichlet"
    family: ClassVar[str] = "operator"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("nu", 0.0, np.inf, "viscosity (reference 0.1)", (False, False)),
        *(Parameter(f"c{n}", -1.0, 1.0, f"coefficient of sin({n}πx) in the initial field") for n in range(1, N_MODES + 1)),
    )
    x_domain: ClassVar[tuple[float, float]] = (0.0, 1.0)
    t_domain: ClassVar[tuple[float, float]] = (0.0, 1.0)
    boundary: ClassVar[str] = "dirichlet"

    def __init__(self, min_intervals: int = 256) -> None:
        if min_intervals < 2:
            raise ValueError(f"min_intervals must be >= 2, got {min_intervals}")
        self.min_intervals = int(min_intervals)

    @staticmethod
    def initial_field(p: Mapping[str, float], x: np.ndarray) -> np.ndarray:
        """u₀(x) = Σ c_n sin(nπx), shape (len(x),)."""
        return sum(p[f"c{n}"] * np.sin(n * np.pi * x) for n in range(1, N_MODES + 1))

    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """u(t, x), float64 ``(len(t), len(x))``; row ``i`` with ``t[i] = 0`` is u₀; ends exactly 0."""
        p = self.check_params(params)
        x = check_x(x, self.x_domain)
        t = check_t(t, self.t_domain)
        bound = sum(abs(p[f"c{n}"]) for n in range(1, N_MODES + 1))
        intervals = self._intervals(bound, p["nu"])
        if intervals > self.max_intervals:
            raise ValueError(f"{self.name}.{self._too_many(intervals, bound, p['nu'], 'these coefficients')}")

        def on_grid(grid: np.ndarray) -> np.ndarray:
            return burgers_dirichlet_mol(self.initial_field(p, grid), p["nu"], t)

        u = evaluate_on(x, self.x_domain, intervals, on_grid)
        u[:, (x == self.x_domain[0]) | (x == self.x_domain[1])] = 0.0
        return u

    def _intervals(self, bound: float, nu: float) -> int:
        """Solver intervals for max|u₀| ≤ ``bound`` = Σ|c_n| at viscosity ``nu``: cell Péclet number ≤ 1."""
        return max(self.min_intervals, math.ceil(bound / nu))

    def _too_many(self, intervals: int, bound: float, nu: float, coefficients: str) -> str:
        return (f"nu = {nu:g} needs {intervals} solver intervals (Σ|c_n| / ν = {bound:g} / ν, for a cell Péclet "
                f"number ≤ 1) and the solver takes at most {self.max_intervals}: allowed nu >= "
                f"{bound / self.max_intervals:.3g} for {coefficients}")

    def check_parameter_box(self, box: Mapping[str, tuple[float, float]]) -> list[str]:
        """The smallest ν of the box against the largest Σ|c_n| it allows (:meth:`solve`'s interval cap)."""
        bound = sum(max(abs(box[f"c{n}"][0]), abs(box[f"c{n}"][1])) for n in range(1, N_MODES + 1))
        nu = box["nu"][0]
        intervals = self._intervals(bound, nu)
        return [] if intervals <= self.max_intervals else [self._too_many(intervals, bound, nu, "the c_n ranges' largest Σ|c_n|")]

    def boundary_data(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """(u(0, t), u(1, t)) = (0, 0), shape ``(len(t), 2)``."""
        self.check_params(params)
        return np.zeros((np.asarray(t).size, 2))

    def verification(self) -> list[VerificationRecord]:
        """Second-order convergence of the method of lines to the Cole–Hopf solution (A = 1, ν = 0.05)."""
        amplitude, nu = 1.0, 0.05
        t = np.array([0.5, 1.0])
        errors, spacings = [], []
        for m in (64, 128):
            grid = np.linspace(0.0, 1.0, m + 1)
            u = burgers_dirichlet_mol(amplitude * np.sin(np.pi * grid), nu, t)
            errors.append(float(np.abs(u - cole_hopf_sine(amplitude, nu, grid, t)).max()))
            spacings.append(1.0 / m)
        return [
            VerificationRecord(
                case=self.name,
                check="central-difference method of lines + LSODA, max error at t=0.5, 1 (M=64→128)",
                reference="Cole–Hopf exact solution for u0 = sin(πx), ν = 0.05",
                error=errors[-1],
                order=observed_order(errors[0], errors[1], spacings[0], spacings[1]),
                expected_order=2.0,
            )
        ]
