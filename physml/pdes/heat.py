"""Periodic heat equation, the "easy" GPME case of ProbConserv (Hansen et al., ICML 2023).

    u_t = k u_xx,  x ∈ [0, 2π] periodic,  t ∈ [0, 1],  u(0, x) = sin x
    ⇒ u(t, x) = e^{−kt} sin x,  flux F = −k u_x,  total mass ∫u dx = 0 for all t.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from physml.pdes._exact1d import ExactProblem1D, residual_order_record, space_time_grid
from physml.pdes.base import Parameter, VerificationRecord


class Heat(ExactProblem1D):
    """u_t = k u_xx on the periodic interval [0, 2π] with u₀ = sin x (exact: u = e^{−kt} sin x)."""

    name = "heat"
    family = "probconserv"
    parameters = (Parameter("k", 0.0, np.inf, "diffusivity k in u_t = k u_xx", inclusive=(False, False)),)
    x_domain = (0.0, 2.0 * np.pi)
    t_domain = (0.0, 1.0)
    boundary = "periodic"
    conservative = True
    nonnegative = False

    @staticmethod
    def _field(p: Mapping[str, float], tt: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """u(t, x) = e^{−kt} sin x."""
        return np.exp(-p["k"] * tt) * np.sin(xx)

    def boundary_flux(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """F = −k u_x = −k e^{−kt} cos x at x = 0 and x = 2π (equal: periodic), shape ``(len(t), 2)``."""
        p = self.check_params(params)
        tt, xx = space_time_grid(self, np.array(self.x_domain), np.asarray(t, dtype=np.float64))
        return -p["k"] * np.exp(-p["k"] * tt) * np.cos(xx)

    def initial_mass(self, params: Mapping[str, float]) -> float:
        """∫₀^{2π} sin x dx = 0."""
        self.check_params(params)
        return 0.0

    def mass(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """M(t) = e^{−kt} ∫₀^{2π} sin x dx = 0, shape ``(len(t),)``."""
        self.check_params(params)
        return np.zeros(np.asarray(t).shape[0], dtype=np.float64)

    def verification(self) -> list[VerificationRecord]:
        """The boundary flux against −k u_x of the exact solution and the O(h²) FD residual of the PDE.

        No conservation or mass record: u = e^{−kt} sin x has zero mass and equal fluxes at both ends
        for every k, so those checks would hold for any wrong decay rate or flux sign.
        """
        records = []
        times = np.linspace(0.05, 0.95, 10)
        for k in (1.0, 5.0):
            p = {"k": k}
            tt, xx = np.meshgrid(times, np.array(self.x_domain), indexing="ij")

            def flux_residual(h: float, p: dict[str, float] = p, tt: np.ndarray = tt, xx: np.ndarray = xx) -> np.ndarray:
                u_x = (self._field(p, tt, xx + h) - self._field(p, tt, xx - h)) / (2 * h)
                return self.boundary_flux(p, times) + p["k"] * u_x

            records.append(residual_order_record(self, p, flux_residual, h=2e-2, region="boundary flux F = −k u_x at x = 0, 2π",
                                                 tolerance=1e-3))

        p = {"k": 3.0}
        ts, xs = np.meshgrid(np.linspace(0.1, 0.9, 9), np.linspace(0.5, 2 * np.pi - 0.5, 11), indexing="ij")

        def u(dt: float, dx: float) -> np.ndarray:
            return self._field(p, ts + dt, xs + dx)

        def residual(h: float) -> np.ndarray:
            u_t = (u(h, 0) - u(-h, 0)) / (2 * h)
            u_xx = (u(0, h) - 2 * u(0, 0) + u(0, -h)) / h**2
            return u_t - p["k"] * u_xx

        records.append(residual_order_record(self, p, residual, h=2e-2, region="interior", tolerance=1e-3))
        return records
