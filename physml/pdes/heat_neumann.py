"""Heat equation with Neumann data: insulated left end, periodically heated right end (BOON, 1-D + time).

    u_t = k u_xx,  x ∈ [0, 1],  t ∈ [0, 2],
    u_x(0, t) = 0                (insulated),
    u_x(1, t) = U sin(π t)       (heat flux −k u_x = −k U sin(πt) < 0 for U sin(πt) > 0: heat flows IN at x = 1),
    u(x, 0) = cos(ω π x).

Source: Saad et al., "Guiding continuous operator learning through physics-based boundary constraints",
ICLR 2023 (Neumann heat case: ω ~ U[2.01, 3.99], k = 0.01, U = 5, 25 outputs to t = 2). No closed form:
the reference solution is the second-order finite-difference semi-discretisation integrated exactly in
time (:func:`physml.pdes.numerics.heat_neumann_dct`), verified against the exact solution
u = e^{−k a² t} cos(a x) of the same equation with u_x(1, t) = −a sin(a) e^{−k a² t}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from physml.pdes.base import Parameter, Problem, VerificationRecord
from physml.pdes.numerics import ExpTerm, check_t, check_x, evaluate_on, heat_neumann_dct, observed_order, trapezoid_mass


class HeatNeumann(Problem):
    """Insulated-left, heated-right heat equation; see the module docstring for the equation and source.

    ``min_intervals`` is the finest spatial resolution the solver uses at least (a requested uniform
    grid is refined by an integer factor up to it and subsampled exactly; other ``x`` are interpolated);
    a high wavenumber ω raises it to :attr:`intervals_per_omega` · ω, which keeps ω π h ≤ π/256, so the
    initial mode's error stays below (π/256)²/12 · max_t k(ωπ)²t e^{−k(ωπ)²t} ≤ 5e-6 whatever k is
    (measured at ω = 50, 200, 256, k = 1e-5: 4e-6, 5e-6, 5e-6; at the fixed 2048 intervals ω = 50 was
    1.5e-4 off and ω = 1000 6e-2). ω is capped at 256 (65 536 intervals, 0.2 s per solve).
    """

    intervals_per_omega: ClassVar[int] = 256

    name: ClassVar[str] = "heat_neumann"
    family: ClassVar[str] = "operator"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("omega", 0.0, 256.0, "wavenumber of the initial field cos(ω π x)"),
        Parameter("k", 0.0, np.inf, "thermal diffusivity (reference 0.01)", (False, False)),
        Parameter("U", -np.inf, np.inf, "amplitude of the right-end gradient u_x(1,t) = U sin(πt) (reference 5)", (False, False)),
    )
    x_domain: ClassVar[tuple[float, float]] = (0.0, 1.0)
    t_domain: ClassVar[tuple[float, float]] = (0.0, 2.0)
    boundary: ClassVar[str] = "neumann"
    conservative: ClassVar[bool] = True

    def __init__(self, min_intervals: int = 2048) -> None:
        if min_intervals < 2:
            raise ValueError(f"min_intervals must be >= 2, got {min_intervals}")
        self.min_intervals = int(min_intervals)

    @staticmethod
    def _right_terms(p: Mapping[str, float]) -> list[ExpTerm]:
        """u_x(1, t) = U sin(πt) = Re(−i U e^{iπt})."""
        return [ExpTerm(-1j * p["U"], 1j * np.pi)]

    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """u(t, x), float64 ``(len(t), len(x))``; row ``i`` with ``t[i] = 0`` is the initial field cos(ωπx)."""
        p = self.check_params(params)
        x = check_x(x, self.x_domain)
        t = check_t(t, self.t_domain)
        length = self.x_domain[1] - self.x_domain[0]

        def on_grid(grid: np.ndarray) -> np.ndarray:
            u0 = np.cos(p["omega"] * np.pi * grid)
            return heat_neumann_dct(u0, length, p["k"], t, right=self._right_terms(p))

        intervals = max(self.min_intervals, math.ceil(self.intervals_per_omega * p["omega"]))
        return evaluate_on(x, self.x_domain, intervals, on_grid)

    def boundary_data(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """(u_x(0, t), u_x(1, t)) = (0, U sin(πt)), shape ``(len(t), 2)``."""
        p = self.check_params(params)
        t = np.asarray(t, dtype=np.float64)
        return np.stack([np.zeros_like(t), p["U"] * np.sin(np.pi * t)], axis=1)

    def boundary_flux(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """Heat flux F = −k u_x at (x = 0, x = 1): (0, −k U sin(πt)), shape ``(len(t), 2)``.

        With the base-class convention d/dt ∫u = F(0) − F(1) = k u_x(1) − k u_x(0) = k U sin(πt).
        """
        p = self.check_params(params)
        return -p["k"] * self.boundary_data(p, t)

    def initial_mass(self, params: Mapping[str, float]) -> float:
        """∫₀¹ cos(ωπx) dx = sin(ωπ)/(ωπ) = sinc(ω)."""
        p = self.check_params(params)
        return float(np.sinc(p["omega"]))

    def mass(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """M(t) = sinc(ω) + k U (1 − cos(πt)) / π, shape ``(len(t),)`` (time integral of the net flux)."""
        p = self.check_params(params)
        t = np.asarray(t, dtype=np.float64)
        return np.sinc(p["omega"]) + p["k"] * p["U"] * (1.0 - np.cos(np.pi * t)) / np.pi

    def verification(self) -> list[VerificationRecord]:
        """Spatial convergence against an exact Neumann solution, and discrete conservation at reference values."""
        a, k, t_end = 2.5, 0.5, 0.5
        t = np.array([t_end])
        errors = []
        spacings = []
        for m in (32, 64):
            grid = np.linspace(0.0, 1.0, m + 1)
            u = heat_neumann_dct(np.cos(a * grid), 1.0, k, t, right=[ExpTerm(-a * np.sin(a), -k * a * a)])
            exact = np.exp(-k * a * a * t_end) * np.cos(a * grid)
            errors.append(float(np.abs(u[0] - exact).max()))
            spacings.append(1.0 / m)
        records = [
            VerificationRecord(
                case=self.name,
                check="ghost-point FD + exact time integration, max error at t=0.5 (M=32→64)",
                reference="exact u = exp(-k a^2 t) cos(a x), a=2.5, k=0.5, u_x(1,t) = -a sin(a) exp(-k a^2 t)",
                error=errors[-1],
                order=observed_order(errors[0], errors[1], spacings[0], spacings[1]),
                expected_order=2.0,
            )
        ]
        params = {"omega": 3.3, "k": 0.01, "U": 5.0}
        times = np.linspace(0.0, 2.0, 26)
        m = 1024  # at least intervals_per_omega · ω, so that the solver grid is this grid
        u = HeatNeumann(min_intervals=m).solve(params, np.linspace(0.0, 1.0, m + 1), times)
        discrete, exact = trapezoid_mass(u, 1.0 / m), self.mass(params, times)
        drift = float(np.abs((discrete - discrete[0]) - (exact - exact[0])).max())
        records.append(
            VerificationRecord(
                case=self.name,
                check="change of trapezoid mass of solve() on its own grid (M=1024) vs ∫ net flux (ω=3.3, k=0.01, U=5, t≤2)",
                reference="d/dt ∫u = k u_x(1) - k u_x(0) = k U sin(πt)",
                error=drift,
                tolerance=1e-12,
            )
        )
        return records
