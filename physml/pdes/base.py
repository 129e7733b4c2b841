"""The Problem contract every PDE case implements.

A problem is a named PDE case: its domain, its parameters and their physically allowed range, its
boundary conditions, the flux that enters its integral conservation law, and a reference ``solve``.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import integrate

from physml.pdes.numerics import check_t

Family = Literal["probconserv", "operator"]
BoundaryKind = Literal["periodic", "dirichlet", "neumann", "mixed", "none"]


@dataclass(frozen=True)
class VerificationRecord:
    """One row of the solver verification table (reports/solver_verification.md).

    ``error`` is measured against ``reference`` (an exact or benchmark solution) at the finest
    resolution tried; ``order`` is the observed convergence order log(e_coarse/e_fine)/log(h_coarse/h_fine),
    ``None`` for checks that are not convergence studies (e.g. a benchmark table or an exact formula).
    """

    case: str
    check: str
    reference: str
    error: float
    order: float | None = None
    expected_order: float | None = None
    tolerance: float | None = None

    @property
    def passed(self) -> bool:
        ok = True
        if self.expected_order is not None and self.order is not None:
            ok = abs(self.order - self.expected_order) <= 0.3
        if self.tolerance is not None:
            ok = ok and self.error <= self.tolerance
        return ok


@dataclass(frozen=True)
class Parameter:
    """One scalar PDE parameter and the interval of values the physics allows.

    ``low``/``high`` are the physical bounds (``inclusive`` says whether the ends are allowed);
    the train/test sampling ranges in params.yaml must lie inside them.
    """

    name: str
    low: float
    high: float
    description: str
    inclusive: tuple[bool, bool] = (True, True)

    def contains(self, value: float) -> bool:
        lo_ok = value >= self.low if self.inclusive[0] else value > self.low
        hi_ok = value <= self.high if self.inclusive[1] else value < self.high
        return bool(np.isfinite(value) and lo_ok and hi_ok)

    def describe_range(self) -> str:
        left = "[" if self.inclusive[0] else "("
        right = "]" if self.inclusive[1] else ")"
        return f"{left}{self.low:g}, {self.high:g}{right}"


#: The functions of (params, t) a problem may define; each is called through :func:`_checked_in_time`.
TIME_FUNCTIONS = ("mass", "boundary_flux", "boundary_data", "front_position", "shock_position")


def _checked_in_time(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(self, params, t)`` called with ``params`` checked against the problem's ranges and ``t`` a finite
    1-D array of times ≥ t0 (ValueError naming ``t`` or the parameter otherwise), as ``solve`` checks them."""
    @functools.wraps(fn)
    def checked(self: Problem, params: Mapping[str, float], t: np.ndarray) -> Any:
        return fn(self, self.check_params(params), check_t(t, self.t_domain))

    return checked


class Problem(ABC):
    """A PDE case with a reference solution.

    Subclasses set the class attributes and implement :meth:`solve`. Conservative 1-D problems also
    implement :meth:`boundary_flux` (and usually :meth:`initial_mass`) so that the integral form

        d/dt ∫_{x_L}^{x_R} u dx = F(u)(t, x_L) − F(u)(t, x_R)

    can be written as the linear constraint the ProbConserv update uses. Every function of (params, t) a
    subclass defines (:data:`TIME_FUNCTIONS`: the mass b of that constraint, the boundary data BOON
    enforces, fronts and shocks) is wrapped when the class is made, so that it refuses out-of-range
    parameters and times that are not a finite 1-D array ≥ t0, as ``solve`` does.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in TIME_FUNCTIONS:
            if name in vars(cls):
                setattr(cls, name, _checked_in_time(vars(cls)[name]))

    name: ClassVar[str]
    family: ClassVar[Family]
    parameters: ClassVar[tuple[Parameter, ...]]
    x_domain: ClassVar[tuple[float, float]]
    t_domain: ClassVar[tuple[float, float]]
    spatial_dims: ClassVar[int] = 1
    boundary: ClassVar[BoundaryKind] = "none"
    conservative: ClassVar[bool] = False
    nonnegative: ClassVar[bool] = False
    """True when the physics keeps u ≥ 0 (densities); the dataset schema checks it."""

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no parameter {name!r}; it has {self.parameter_names}")

    def check_params(self, params: Mapping[str, float]) -> dict[str, float]:
        """Return params as floats, raising ValueError naming a missing or out-of-range parameter."""
        missing = [n for n in self.parameter_names if n not in params]
        if missing:
            raise ValueError(f"{self.name}: missing parameter(s) {missing}; expected {self.parameter_names}")
        out = {}
        for p in self.parameters:
            raw = params[p.name]
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{self.name}.{p.name} = {raw!r} is not a number; allowed range "
                                 f"{p.describe_range()}") from None
            if not p.contains(value):
                raise ValueError(f"{self.name}.{p.name} = {value!r} is outside its allowed range {p.describe_range()}")
            out[p.name] = value
        return out

    def check_parameter_box(self, box: Mapping[str, tuple[float, float]]) -> list[str]:
        """Errors for a box of parameter values ``{name: (low, high)}`` (each inside its own range) in which
        ``solve`` would refuse some point: limits that tie parameters together, which the per-parameter ranges
        cannot state. Each error starts with the parameter's name. ``physml.config`` calls this with the
        params.yaml ranges of a case (train and test together), so a dataset that cannot be generated is
        refused before any of it is written. Default: none."""
        return []

    @abstractmethod
    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Reference solution u(t, x), float64 of shape ``(len(t), len(x))`` (trailing axes for 2-D)."""

    def verification(self) -> list[VerificationRecord]:
        """Measured checks of ``solve`` against exact/benchmark solutions (convergence orders etc.).

        The tests assert on these records and ``physml verify`` tabulates them into reports/, so a
        number in the report is the number the tests checked. Default: nothing to verify.
        """
        return []

    def boundary_data(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """The prescribed boundary data at times ``t`` (operator cases; what BOON enforces).

        1-D: shape ``(len(t), 2)`` with the (left, right) Dirichlet values for ``boundary ==
        "dirichlet"``, the (left, right) derivatives u_x for ``"neumann"``; periodic problems need none.
        2-D problems document their own layout.
        """
        raise NotImplementedError(f"{self.name} prescribes no boundary data")

    def boundary_flux(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """Flux F(u) at the left and right boundary, shape ``(len(t), 2)``; conservative problems only."""
        raise NotImplementedError(f"{self.name} has no conservation law in integral form")

    def initial_mass(self, params: Mapping[str, float]) -> float:
        """∫ u(0, x) dx over the domain. Default: adaptive quadrature of ``solve`` at t = t0."""
        t0 = np.array([self.t_domain[0]])
        lo, hi = self.x_domain
        value, _ = integrate.quad(lambda s: float(self.solve(params, np.array([s]), t0)[0, 0]), lo, hi, limit=200)
        return float(value)

    @_checked_in_time
    def mass(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """Total mass M(t) = M(t0) + ∫_{t0}^{t} [F(s, x_L) − F(s, x_R)] ds, shape ``(len(t),)``.

        Subclasses with a closed form override this; the default integrates :meth:`boundary_flux`.
        """
        t = np.asarray(t, dtype=np.float64)
        t0 = self.t_domain[0]

        def net_flux(s: float) -> float:
            f = self.boundary_flux(params, np.array([s]))
            return float(f[0, 0] - f[0, 1])

        m0 = self.initial_mass(params)
        return np.array([m0 + integrate.quad(net_flux, t0, ti, limit=200)[0] for ti in t])
