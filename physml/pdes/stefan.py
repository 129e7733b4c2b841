"""One-phase Stefan problem as a degenerate nonlinear diffusion, the ProbConserv "hard" case
(Hansen et al., ICML 2023: the "hard" GPME variant; the reference code's ``Stefan`` class).

    u_t = (k(u) u_x)_x,  k(u) = 1 if u ≥ p* else 0,  u(t, 0) = 1,  u(0, x) = 0,  x ∈ [0, 1],  t ∈ [0, 0.1]

Similarity solution (Neumann's solution of the one-phase Stefan problem): with the front
x*(t) = 2 z₁ √t,

    u(t, x) = 1 − (1 − p*) erf(x / 2√t) / erf(z₁)   for x ≤ x*(t),   u = 0 beyond,

where z₁ solves the Stefan (Rankine–Hugoniot) condition p* dx*/dt = −u_x(t, x*⁻), i.e.
(1 − p*) e^{−z²} / (√π erf z) = p* z   (z₁ ≈ 0.6201 for p* = 0.5). The flux F = −k(u) u_x enters at
x = 0 as (1 − p*) / (erf(z₁) √(π t)), so M(t) = 2 (1 − p*) √(t/π) / erf(z₁) while the front is inside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np
from scipy import optimize, special

from physml.pdes._exact1d import ExactProblem1D, conservation_record, mass_record, residual_order_record, space_time_grid
from physml.pdes.base import Parameter, VerificationRecord


def _stefan_condition(z: float, p_star: float) -> float:
    """p* z erf(z) e^{z²} − (1 − p*)/√π: the Stefan condition times erf(z) e^{z²}, zero at z₁."""
    return p_star * z * special.erf(z) * np.exp(z * z) - (1.0 - p_star) / np.sqrt(np.pi)


@lru_cache(maxsize=256)
def similarity_root(p_star: float) -> float:
    """z₁(p*) > 0 solving (1 − p*) e^{−z²} / (√π erf z) = p* z, by Brent's method (cached).

    The left side minus the right decreases from +∞ (z → 0⁺) to −∞, so the root is unique; the
    bracket is widened from [0, 1] until it changes sign.
    """
    if not 0.0 < p_star < 1.0:
        raise ValueError(f"stefan.p_star = {p_star!r} is outside its allowed range (0, 1)")
    hi = 1.0
    while _stefan_condition(hi, p_star) <= 0.0:
        hi *= 2.0
    return float(optimize.brentq(_stefan_condition, 0.0, hi, args=(p_star,), xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200))


class Stefan(ExactProblem1D):
    """Degenerate diffusion with k(u) = 1{u ≥ p*}: a sharp front x*(t) = 2 z₁ √t moving into u = 0."""

    name = "stefan"
    family = "probconserv"
    parameters = (Parameter("p_star", 0.0, 1.0, "threshold p* of the diffusivity k(u) = 1{u >= p*}", inclusive=(False, False)),)
    x_domain = (0.0, 1.0)
    t_domain = (0.0, 0.1)
    boundary = "dirichlet"
    conservative = True
    nonnegative = True

    def similarity_root(self, params: Mapping[str, float]) -> float:
        """z₁(p*), the root of (1 − p*) e^{−z²} / (√π erf z) = p* z."""
        return similarity_root(self.check_params(params)["p_star"])

    def front_position(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """x*(t) = 2 z₁ √t (the shock separating u ≥ p* from u = 0), shape ``(len(t),)``."""
        return 2.0 * self.similarity_root(params) * np.sqrt(t)  # params and t checked (Problem.__init_subclass__)

    @staticmethod
    def _field(p: Mapping[str, float], tt: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Neumann's similarity solution u(t, x).

        At t = 0 it is the initial data u = 0, except u(0, 0) = 1 (the boundary value).
        """
        z1 = similarity_root(p["p_star"])
        c = (1.0 - p["p_star"]) / special.erf(z1)
        tt, xx = np.broadcast_arrays(tt, xx)
        positive = tt > 0.0
        root_t = np.sqrt(np.where(positive, tt, 1.0))
        inside = xx <= 2.0 * z1 * root_t
        u = np.where(positive & inside, 1.0 - c * special.erf(xx / (2.0 * root_t)), 0.0)
        return np.where(~positive & (xx == 0.0), 1.0, u)

    def boundary_flux(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """F = −k(u) u_x at x = 0 and x = 1, shape ``(len(t), 2)``.

        Where u ≥ p*: F = (1 − p*) e^{−x²/4t} / (erf(z₁) √(π t)); beyond the front F = 0. The inflow
        F(t, 0) ∝ t^{−1/2} is integrable but infinite at t = 0, where ``inf`` is returned.
        """
        p = self.check_params(params)
        tt, xx = space_time_grid(self, np.array(self.x_domain), np.asarray(t, dtype=np.float64))
        z1 = similarity_root(p["p_star"])
        c = (1.0 - p["p_star"]) / special.erf(z1)
        tt, xx = np.broadcast_arrays(tt, xx)
        positive = tt > 0.0
        safe_t = np.where(positive, tt, 1.0)
        inside = xx <= 2.0 * z1 * np.sqrt(safe_t)
        flux = np.where(inside, c * np.exp(-(xx**2) / (4.0 * safe_t)) / np.sqrt(np.pi * safe_t), 0.0)
        return np.where(positive, flux, np.where(xx == 0.0, np.inf, 0.0))

    def initial_mass(self, params: Mapping[str, float]) -> float:
        """u(0, x) = 0, so M(0) = 0."""
        self.check_params(params)
        return 0.0

    def mass(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """M(t) = ∫₀^X u dx with X = min(x*(t), 1), shape ``(len(t),)``; from ∫erf(x/s) = x erf(x/s) + s e^{−x²/s²}/√π,

            M = X − c [X erf(X / 2√t) + 2√(t/π) (e^{−X²/4t} − 1)],   c = (1 − p*) / erf(z₁),

        which equals 2 (1 − p*) √(t/π) / erf(z₁) (the reference code's ``mass_stefan``) while x* ≤ 1.
        """
        p = self.check_params(params)
        t = np.asarray(t, dtype=np.float64)
        z1 = similarity_root(p["p_star"])
        c = (1.0 - p["p_star"]) / special.erf(z1)
        root_t = np.sqrt(np.maximum(t, 0.0))
        big_x = np.minimum(2.0 * z1 * root_t, self.x_domain[1])
        safe = np.where(root_t > 0.0, root_t, 1.0)
        m = big_x - c * (big_x * special.erf(big_x / (2.0 * safe)) + 2.0 * safe / np.sqrt(np.pi) * (np.exp(-(big_x**2) / (4.0 * safe**2)) - 1.0))
        return np.where(root_t > 0.0, m, 0.0)

    def _breaks(self, params: Mapping[str, float]) -> Callable[[float], tuple[float, ...]]:
        """t ↦ (x*(t),): where u jumps from p* to 0 (quadrature split point)."""
        z1 = self.similarity_root(params)
        return lambda t: (2.0 * z1 * float(np.sqrt(t)),)

    def verification(self) -> list[VerificationRecord]:
        """z₁ against its tabulated value, conservation and mass across p*, O(h²) residual behind the front."""
        z1 = similarity_root(0.5)
        records = [
            VerificationRecord(
                case=self.name,
                check="similarity root z1(p*=0.5)",
                reference="tabulated z1 = 0.6201 (4 digits)",
                error=abs(z1 - 0.6201),
                tolerance=5e-5,
            )
        ]
        times = np.linspace(0.005, 0.095, 10)
        for p_star in (0.5, 0.6, 0.7):
            p = {"p_star": p_star}
            records.append(conservation_record(self, p, times, self._breaks(p), delta=2e-5, tolerance=1e-7))
            records.append(mass_record(self, p, times, self._breaks(p), tolerance=1e-12))

        p = {"p_star": 0.6}
        ts = np.linspace(0.03, 0.09, 4)[:, None]
        xs = np.linspace(0.1, 0.7, 7)[None, :] * self.front_position(p, ts[:, 0])[:, None]

        def u(dt: float, dx: float) -> np.ndarray:
            return self._field(p, ts + dt, xs + dx)

        def residual(h: float) -> np.ndarray:
            u_t = (u(h, 0) - u(-h, 0)) / (2 * h)
            return u_t - (u(0, h) - 2 * u(0, 0) + u(0, -h)) / h**2

        records.append(residual_order_record(self, p, residual, h=1e-3, region="behind the front x < 0.7 x*(t)", tolerance=2e-3))
        return records
