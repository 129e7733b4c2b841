"""Inviscid Burgers' equation with compressive Riemann-type data, a ProbConserv hyperbolic case
(Hansen et al., ICML 2023; the reference code's ``Burgers``).

    u_t + (u²/2)_x = 0,  a > 0,  x ∈ [−1, 1],  t ∈ [0, 1],
    u(0, x) = a for x ≤ −1,  −a x on [−1, 0],  0 for x > 0,   inflow u(t, −1) = a.

The ramp steepens along characteristics x = x₀(1 − a t) until they all meet at x = 0 when
t_b = 1/a; for t ≤ t_b

    u = a (x ≤ a t − 1),   u = a x / (a t − 1) (a t − 1 < x ≤ 0),   u = 0 (x > 0),

and afterwards a shock from (t_b, 0) moves at the Rankine–Hugoniot speed a/2: u = a for
x ≤ (a t − 1)/2, else 0. Flux F = u²/2; the inflow a²/2 gives M(t) = (a/2)(1 + a t) (the
reference code's ``mass_burgers``) until the shock leaves at t = 3/a, after which M = 2a.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from physml.pdes._exact1d import ExactProblem1D, conservation_record, mass_record, residual_order_record
from physml.pdes.base import Parameter, VerificationRecord


class InviscidBurgers(ExactProblem1D):
    """u_t + (u²/2)_x = 0 on [−1, 1]: a compression ramp that breaks into a shock at t = 1/a."""

    name = "burgers"
    family = "probconserv"
    parameters = (Parameter("a", 0.0, np.inf, "inflow state a (initial ramp u0 = -a x on [-1, 0])", inclusive=(False, False)),)
    x_domain = (-1.0, 1.0)
    t_domain = (0.0, 1.0)
    boundary = "dirichlet"
    conservative = True
    nonnegative = True

    @staticmethod
    def _field(p: Mapping[str, float], tt: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """The entropy solution u(t, x) (see module docstring)."""
        a = p["a"]
        tt, xx = np.broadcast_arrays(tt, xx)
        before = a * tt < 1.0
        edge = a * tt - 1.0
        ramp = a * xx / np.where(before, edge, -1.0)
        u_before = np.where(xx <= edge, a, np.where(xx < 0.0, ramp, 0.0))
        u_after = np.where(xx <= 0.5 * edge, a, 0.0)
        return np.where(before, u_before, u_after)

    def shock_position(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """x_s(t) = (a t − 1)/2 for t ≥ 1/a, NaN before the shock forms, shape ``(len(t),)``."""
        a = self.check_params(params)["a"]
        t = np.asarray(t, dtype=np.float64)
        return np.where(a * t >= 1.0, 0.5 * (a * t - 1.0), np.nan)

    def boundary_flux(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """F = u²/2 at x = −1 (the inflow, a²/2) and x = 1 (a²/2 once the shock has left), shape ``(len(t), 2)``."""
        return 0.5 * self.boundary_data(params, t) ** 2

    def initial_mass(self, params: Mapping[str, float]) -> float:
        """∫_{−1}^{0} (−a x) dx = a/2."""
        return 0.5 * self.check_params(params)["a"]

    def mass(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """M(t) = (a/2)(1 + min(a t, 3)), shape ``(len(t),)``."""
        a = self.check_params(params)["a"]
        return 0.5 * a * (1.0 + np.minimum(a * np.asarray(t, dtype=np.float64), 3.0))

    def _breaks(self, params: Mapping[str, float], t: float) -> tuple[float, ...]:
        a = params["a"]
        return (a * t - 1.0, 0.0) if a * t < 1.0 else (0.5 * (a * t - 1.0),)

    def verification(self) -> list[VerificationRecord]:
        """Conservation and mass before and after the shock (a ∈ {1, 2, 4}); O(h²) residual in the ramp."""
        records = []
        delta = 1e-4
        for a in (1.0, 2.0, 4.0):
            p = {"a": a}
            times = np.linspace(0.05, 0.95, 10)
            times = times[np.abs(times - 3.0 / a) > 3 * delta]

            def breaks(s: float, p: dict[str, float] = p) -> tuple[float, ...]:
                return self._breaks(p, s)

            records.append(conservation_record(self, p, times, breaks, delta=delta, tolerance=1e-8))
            records.append(mass_record(self, p, times, breaks, tolerance=1e-12))

        p = {"a": 1.5}
        ts = np.linspace(0.1, 0.5, 5)[:, None]
        xs = np.linspace(0.2, 0.8, 7)[None, :] * (p["a"] * ts - 1.0)

        def u(dt: float, dx: float) -> np.ndarray:
            return self._field(p, ts + dt, xs + dx)

        def residual(h: float) -> np.ndarray:
            u_t = (u(h, 0) - u(-h, 0)) / (2 * h)
            return u_t + (u(0, h) ** 2 - u(0, -h) ** 2) / (4 * h)

        records.append(residual_order_record(self, p, residual, h=4e-3, region="compression ramp before breaking", tolerance=2e-3))
        return records
