"""Linear advection of a step, a ProbConserv hyperbolic case (Hansen et al., ICML 2023;
the reference code's ``LinearAdvection``).

    u_t + (a u)_x = 0,  a > 0,  x ∈ [0, 1],  t ∈ [0, 1],  u(0, x) = 1{x ≤ 1/2},  inflow u(t, 0) = 1
    ⇒ u(t, x) = 1{x − a t ≤ 1/2},  flux F = a u,  M(t) = min(1/2 + a t, 1)

(the mass grows with the inflow a until the step leaves the domain at t = 1/(2a)).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from physml.pdes._exact1d import ExactProblem1D, conservation_record, mass_record
from physml.pdes.base import Parameter, VerificationRecord


class Advection(ExactProblem1D):
    """u_t + a u_x = 0 on [0, 1] with the step u₀ = 1{x ≤ 1/2} carried to the right at speed a."""

    name = "advection"
    family = "probconserv"
    parameters = (Parameter("a", 0.0, np.inf, "velocity a in u_t + a u_x = 0 (a > 0: x = 0 is the inflow)", inclusive=(False, False)),)
    x_domain = (0.0, 1.0)
    t_domain = (0.0, 1.0)
    boundary = "dirichlet"
    conservative = True
    nonnegative = True
    step = 0.5
    """Position of the step in the initial data."""

    def _field(self, p: Mapping[str, float], tt: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """u(t, x) = 1{x − a t ≤ 1/2}."""
        return (xx - p["a"] * tt <= self.step).astype(np.float64)

    def front_position(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """Position of the step, 1/2 + a t (beyond x = 1 once it has left), shape ``(len(t),)``."""
        p = self.check_params(params)
        return self.step + p["a"] * np.asarray(t, dtype=np.float64)

    def boundary_flux(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """F = a u at x = 0 (always a: the inflow) and x = 1 (a once the step has left), shape ``(len(t), 2)``."""
        return self.check_params(params)["a"] * self.boundary_data(params, t)

    def initial_mass(self, params: Mapping[str, float]) -> float:
        """∫₀¹ 1{x ≤ 1/2} dx = 1/2."""
        self.check_params(params)
        return self.step

    def mass(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """M(t) = min(1/2 + a t, 1) (the reference code's ``mass_advection``), shape ``(len(t),)``."""
        return np.minimum(self.front_position(params, t), self.x_domain[1])

    def verification(self) -> list[VerificationRecord]:
        """Conservation through the inflow/outflow fluxes and the closed-form mass for a ∈ {1, 3, 5}."""
        records = []
        delta = 1e-4
        for a in (1.0, 3.0, 5.0):
            p = {"a": a}
            times = np.linspace(0.05, 0.95, 10)
            exit_time = (self.x_domain[1] - self.step) / a
            times = times[np.abs(times - exit_time) > 3 * delta]

            def breaks(s: float, p: dict[str, float] = p) -> tuple[float, ...]:
                return tuple(self.front_position(p, np.array([s])))

            records.append(conservation_record(self, p, times, breaks, delta=delta, tolerance=1e-9))
            records.append(mass_record(self, p, times, breaks, tolerance=1e-12))
        return records
