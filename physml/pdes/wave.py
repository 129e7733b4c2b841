"""The 1-D wave equation on a string with fixed ends, released from rest (BOON's wave case).

    u_tt = c² u_xx,  x ∈ [0, 1],  t ∈ [0, 1],
    u(0, t) = u(1, t) = 0,
    u(x, 0) = Σ_{n=1}^{4} a_n sin(nπx),  u_t(x, 0) = 0,

with the exact (d'Alembert / separation of variables) solution

    u(x, t) = Σ_{n=1}^{4} a_n sin(nπx) cos(nπct).

Source: Saad et al., ICLR 2023 list the wave equation among BOON's cases; this Dirichlet set-up is ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from physml.pdes.base import Parameter, Problem, VerificationRecord
from physml.pdes.numerics import check_t, check_x, observed_order, pinned_ends, residual_study

N_MODES = 4


class Wave(Problem):
    """Plucked string with fixed ends and its exact modal solution; see the module docstring."""

    name: ClassVar[str] = "wave"
    family: ClassVar[str] = "operator"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("c", 0.0, np.inf, "wave speed", (False, False)),
        *(Parameter(f"a{n}", -1.0, 1.0, f"amplitude of sin({n}πx) in the initial displacement") for n in range(1, N_MODES + 1)),
    )
    x_domain: ClassVar[tuple[float, float]] = (0.0, 1.0)
    t_domain: ClassVar[tuple[float, float]] = (0.0, 1.0)
    boundary: ClassVar[str] = "dirichlet"

    @staticmethod
    def _exact(p: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Σ a_n sin(nπx) cos(nπct), shape (len(t), len(x))."""
        u = np.zeros((t.size, x.size))
        for n in range(1, N_MODES + 1):
            u += p[f"a{n}"] * np.cos(n * np.pi * p["c"] * t)[:, None] * np.sin(n * np.pi * x)[None, :]
        return u

    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """u(t, x), float64 ``(len(t), len(x))``; at t = 0 the initial displacement; ends exactly 0."""
        p = self.check_params(params)
        x = check_x(x, self.x_domain)
        t = check_t(t, self.t_domain)
        return pinned_ends(self._exact(p, x, t), x, self.x_domain, self.boundary_data(p, t))

    def boundary_data(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """(u(0, t), u(1, t)) = (0, 0), shape ``(len(t), 2)``."""
        self.check_params(params)
        return np.zeros((np.asarray(t).size, 2))

    def verification(self) -> list[VerificationRecord]:
        """FD residual of u_tt − c² u_xx → 0 at order 2, and solve()'s extrapolated velocity at t = 0 → 0 at order 3."""
        p = {"c": 1.3, "a1": 0.8, "a2": -0.5, "a3": 0.3, "a4": -0.2}
        xs = np.linspace(0.05, 0.95, 19)
        ts = np.linspace(0.1, 0.9, 9)

        def u(dx: float, dt: float, times: np.ndarray = ts) -> np.ndarray:
            return self._exact(p, xs + dx, times + dt)

        def residual(h: float) -> float:
            u_tt = (u(0.0, h) - 2 * u(0.0, 0.0) + u(0.0, -h)) / h**2
            u_xx = (u(h, 0.0) - 2 * u(0.0, 0.0) + u(-h, 0.0)) / h**2
            return float(np.abs(u_tt - p["c"] ** 2 * u_xx).max())

        error, order = residual_study(residual, (0.02, 0.01))

        def velocity(h: float) -> float:
            """max |R(h)| over x, R(h) = 2 q(h/2) − q(h) with q(h) = (u(x, h) − u(x, 0)) / h of solve().

            Taylor in t: q(h) = u_t + h u_tt/2 + h² u_ttt/6 + O(h³), so R(h) = u_t − h² u_ttt/12 + O(h³). Released
            from rest, u is even in t (u_t = u_ttt = 0 at t = 0) and R vanishes like h³; any u_t(x, 0) ≠ 0
            makes it stall.
            """
            field = self.solve(p, xs, np.array([0.0, h / 2, h]))
            q_half, q_full = (field[1] - field[0]) / (h / 2), (field[2] - field[0]) / h
            return float(np.abs(2 * q_half - q_full).max())

        v_coarse, v_fine = velocity(0.01), velocity(0.005)
        return [
            VerificationRecord(self.name, "central-difference residual of u_tt - c² u_xx (h=0.02→0.01)",
                               "exact Σ a_n sin(nπx) cos(nπct), c=1.3", error, order, 2.0),
            VerificationRecord(self.name, "initial velocity of solve(): Richardson 2q(h/2) - q(h), q(h) = (u(x,h) - u(x,0))/h "
                               "(h=0.01→0.005)", "released from rest: u even in t, so it vanishes like h³", v_fine,
                               observed_order(v_coarse, v_fine, 0.01, 0.005), 3.0),
        ]
