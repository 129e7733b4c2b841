"""Porous medium equation, a "medium" GPME case of ProbConserv (Hansen et al., ICML 2023).

    u_t = (u^m u_x)_x,  x ∈ [0, 1],  t ∈ [0, 1],  m ≥ 1
    exact travelling front: u(t, x) = (m·max(t − x, 0))^{1/m}   (front at x = t, speed 1)

Since u^m = m(t − x) on the support, u^m u_x = −u, so the flux F = −u^m u_x equals u; the boundary
flux enters at x = 0 as F = (m t)^{1/m} and the mass is M(t) = m^{1/m} t^{1+1/m} / (1 + 1/m)
(the reference code's ``mass_pme``; for t > 1 the front has left the domain and the formula below
subtracts what flowed out at x = 1).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from physml.pdes._exact1d import ExactProblem1D, conservation_record, mass_record, residual_order_record
from physml.pdes.base import Parameter, VerificationRecord


class PorousMedium(ExactProblem1D):
    """u_t = (u^m u_x)_x on [0, 1] with the exact front solution u = (m·max(t − x, 0))^{1/m}."""

    name = "pme"
    family = "probconserv"
    parameters = (Parameter("m", 1.0, 50.0, "degree m in u_t = (u^m u_x)_x (diffusivity D(u) = u^m)"),)
    x_domain = (0.0, 1.0)
    t_domain = (0.0, 1.0)
    boundary = "dirichlet"
    conservative = True
    nonnegative = True

    @staticmethod
    def _field(p: Mapping[str, float], tt: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """u(t, x) = (m·max(t − x, 0))^{1/m}."""
        m = p["m"]
        return (m * np.maximum(tt - xx, 0.0)) ** (1.0 / m)

    def front_position(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """The edge of the support, x_front(t) = t (u > 0 exactly for x < t), shape ``(len(t),)``."""
        self.check_params(params)
        return np.asarray(t, dtype=np.float64).copy()

    def boundary_flux(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """F = −u^m u_x = (m·max(t − x, 0))^{1/m} at x = 0 and x = 1, shape ``(len(t), 2)``: u itself there
        (:meth:`boundary_data`), as everywhere for this solution."""
        return self.boundary_data(params, t)

    def initial_mass(self, params: Mapping[str, float]) -> float:
        """u(0, x) = 0 on [0, 1], so M(0) = 0."""
        self.check_params(params)
        return 0.0

    def mass(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """M(t) = m^{1/m} [t^{1+1/m} − max(t − 1, 0)^{1+1/m}] / (1 + 1/m), shape ``(len(t),)``."""
        m = self.check_params(params)["m"]
        t = np.asarray(t, dtype=np.float64)
        a = 1.0 + 1.0 / m
        return m ** (1.0 / m) * (t**a - np.maximum(t - 1.0, 0.0) ** a) / a

    def _breaks(self, t: float) -> tuple[float, ...]:
        return (t,)

    def verification(self) -> list[VerificationRecord]:
        """Conservation and mass for m ∈ {1, 3, 6, 50}; O(h²) FD residual behind the front."""
        records = []
        times = np.linspace(0.05, 0.95, 10)
        for m in (1.0, 3.0, 6.0, 50.0):
            p = {"m": m}
            records.append(conservation_record(self, p, times, self._breaks, delta=1e-4, tolerance=1e-8))
            records.append(mass_record(self, p, times, self._breaks, tolerance=1e-11))

        p = {"m": 3.0}
        ts, xs = np.meshgrid(np.linspace(0.5, 0.9, 5), np.linspace(0.05, 0.3, 6), indexing="ij")
        m = p["m"]

        def u(dt: float, dx: float) -> np.ndarray:
            return self._field(p, ts + dt, xs + dx)

        def w(dx: float) -> np.ndarray:
            return u(0, dx) ** (m + 1)

        def residual(h: float) -> np.ndarray:
            # (u^m u_x)_x = (u^{m+1})_xx / (m + 1)
            u_t = (u(h, 0) - u(-h, 0)) / (2 * h)
            return u_t - (w(h) - 2 * w(0) + w(-h)) / (h**2 * (m + 1))

        records.append(residual_order_record(self, p, residual, h=2e-2, region="behind the front x < t - 0.2", tolerance=1e-3))
        return records
