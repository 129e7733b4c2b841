"""Stokes' second problem on a finite strip: viscous fluid above an oscillating wall (BOON, 1-D + time).

    u_t = ν u_xx,  x ∈ [0, 1],  t ∈ [0, 1.2],
    u(0, t) = U cos(ω t)                    (the wall),
    u(1, t) = U e^{−κ} cos(ω t − κ)          (the exact solution's value, so the strip is consistent),
    u(x, 0) = U e^{−κx} cos(κ x),

with the exact solution (Stokes 1851; e.g. Schlichting, Boundary-Layer Theory, §5.3)

    u(x, t) = U e^{−κx} cos(ω t − κ x),  κ = √(ω / (2ν)).

Source of the setting: Saad et al., ICLR 2023 (Dirichlet multi-step case, ν = 0.1, 25 outputs to
t = 1.2); the ranges of ω and U are params.yaml's choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from physml.pdes.base import Parameter, Problem, VerificationRecord
from physml.pdes.numerics import check_t, check_x, observed_order, pinned_ends, residual_study


class StokesSecondProblem(Problem):
    """Oscillating-wall diffusion with its exact solution; see the module docstring."""

    name: ClassVar[str] = "stokes2"
    family: ClassVar[str] = "operator"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("omega", 0.0, np.inf, "angular frequency of the wall", (False, False)),
        Parameter("nu", 0.0, np.inf, "kinematic viscosity (reference 0.1)", (False, False)),
        Parameter("U", -np.inf, np.inf, "wall velocity amplitude", (False, False)),
    )
    x_domain: ClassVar[tuple[float, float]] = (0.0, 1.0)
    t_domain: ClassVar[tuple[float, float]] = (0.0, 1.2)
    boundary: ClassVar[str] = "dirichlet"

    @staticmethod
    def _exact(p: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """U e^{−κx} cos(ωt − κx), κ = √(ω/(2ν)); shape (len(t), len(x))."""
        kappa = np.sqrt(p["omega"] / (2.0 * p["nu"]))
        return p["U"] * np.exp(-kappa * x)[None, :] * np.cos(p["omega"] * t[:, None] - kappa * x[None, :])

    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """u(t, x), float64 ``(len(t), len(x))``; at t = 0 the initial field U e^{−κx} cos(κx)."""
        p = self.check_params(params)
        x = check_x(x, self.x_domain)
        t = check_t(t, self.t_domain)
        return pinned_ends(self._exact(p, x, t), x, self.x_domain, self.boundary_data(p, t))

    def boundary_data(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """(u(0, t), u(1, t)) = (U cos ωt, U e^{−κ} cos(ωt − κ)), shape ``(len(t), 2)``."""
        p = self.check_params(params)
        t = np.asarray(t, dtype=np.float64)
        return self._exact(p, np.array(self.x_domain), t)

    def verification(self) -> list[VerificationRecord]:
        """FD residual of u_t − ν u_xx → 0 at order 2 (the formula solves the PDE); solve() meets the wall datum at order 2."""
        p = {"omega": 3.5, "nu": 0.1, "U": 2.0}
        xs = np.linspace(0.05, 0.95, 19)
        ts = np.linspace(0.1, 1.1, 11)

        def residual(h: float) -> float:
            def u(dx: float, dt: float) -> np.ndarray:
                return self._exact(p, xs + dx, ts + dt)

            u_t = (u(0.0, h) - u(0.0, -h)) / (2 * h)
            u_xx = (u(h, 0.0) - 2 * u(0.0, 0.0) + u(-h, 0.0)) / h**2
            return float(np.abs(u_t - p["nu"] * u_xx).max())

        error, order = residual_study(residual, (0.02, 0.01))
        t = np.linspace(0.0, 1.2, 26)

        def wall(h: float) -> float:
            """max_t |2u(h, t) − u(2h, t) − U cos(ωt)|: solve()'s interior extrapolated to the wall (O(h²)),
            so the pinned end column plays no part."""
            u = self.solve(p, np.array([h, 2 * h]), t)
            return float(np.abs(2 * u[:, 0] - u[:, 1] - p["U"] * np.cos(p["omega"] * t)).max())

        w_coarse, w_fine = wall(0.02), wall(0.01)
        return [
            VerificationRecord(self.name, "central-difference residual of u_t - ν u_xx (h=0.02→0.01)",
                               "exact U exp(-κx) cos(ωt - κx), ω=3.5, ν=0.1, U=2", error, order, 2.0),
            VerificationRecord(self.name, "wall value of solve() extrapolated from x = h, 2h (h=0.02→0.01), 26 times to t=1.2",
                               "Dirichlet wall datum U cos(ωt)", w_fine, observed_order(w_coarse, w_fine, 0.02, 0.01), 2.0),
        ]
