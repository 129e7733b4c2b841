"""The 1-D operator (BOON) cases: measured convergence orders, exact boundary data, conservation, input checks."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from physml import pdes
from physml.pdes.base import Problem
from physml.pdes.burgers_dirichlet import burgers_dirichlet_mol, cole_hopf_sine
from physml.pdes.heat_neumann import HeatNeumann
from physml.pdes.numerics import ExpTerm, heat_neumann_dct, pinned_ends, trapezoid_mass
from physml.pdes.stokes2 import StokesSecondProblem
from physml.pdes.wave import Wave

CASES = ("heat_neumann", "stokes2", "burgers_dirichlet", "wave")
PARAMS = {
    "heat_neumann": {"omega": 3.3, "k": 0.01, "U": 5.0},
    "stokes2": {"omega": 3.5, "nu": 0.1, "U": 2.0},
    "burgers_dirichlet": {"nu": 0.1, "c1": 0.9, "c2": -0.6, "c3": 0.4, "c4": -0.3},
    "wave": {"c": 1.2, "a1": 0.7, "a2": -0.4, "a3": 0.25, "a4": 0.1},
}
POSITIVE = {"heat_neumann": "k", "stokes2": "nu", "burgers_dirichlet": "nu", "wave": "c"}


def initial_field(name: str, x: np.ndarray) -> np.ndarray:
    """u(x, 0) written out independently of the solvers."""
    p = PARAMS[name]
    if name == "heat_neumann":
        return np.cos(p["omega"] * np.pi * x)
    if name == "stokes2":
        kappa = np.sqrt(p["omega"] / (2 * p["nu"]))
        return p["U"] * np.exp(-kappa * x) * np.cos(kappa * x)
    key = "c" if name == "burgers_dirichlet" else "a"
    return sum(p[f"{key}{n}"] * np.sin(n * np.pi * x) for n in range(1, 5))


@pytest.fixture(scope="module")
def records() -> dict[str, list]:
    return {name: pdes.get(name).verification() for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_registered_as_operator_cases(name: str) -> None:
    problem = pdes.get(name)
    assert isinstance(problem, Problem)
    assert problem.family == "operator"
    assert problem.boundary == ("neumann" if name == "heat_neumann" else "dirichlet")
    assert set(PARAMS[name]) == set(problem.parameter_names)


@pytest.mark.parametrize("name", CASES)
def test_verification_records_meet_design_order(name: str, records: dict[str, list]) -> None:
    recs = records[name]
    studies = [r for r in recs if r.expected_order is not None]
    assert studies, f"{name} has no convergence study"
    for rec in recs:
        assert rec.case == name
        assert np.isfinite(rec.error)
        assert rec.passed, rec
    for rec in studies:
        assert abs(rec.order - rec.expected_order) <= 0.3, rec


class _MovingWave(Wave):
    """A wrong wave solver: + v sin(πx) sin(πct)/(πc) still solves the PDE with fixed ends and the same u(x, 0),
    but starts with velocity v sin(πx)."""

    def __init__(self, v: float) -> None:
        self.v = v

    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        c = params["c"]
        return super().solve(params, x, t) + self.v * np.outer(np.sin(np.pi * c * t), np.sin(np.pi * x)) / (np.pi * c)


class _ShiftedStokes(StokesSecondProblem):
    """A wrong Stokes solver: the phase shifted by ``d``, so the wall moves as U cos(ωt + d), while solve() still
    pins its end column to the datum U cos(ωt)."""

    def __init__(self, d: float) -> None:
        self.d = d

    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray) -> np.ndarray:
        p = self.check_params(params)
        kappa = np.sqrt(p["omega"] / (2.0 * p["nu"]))
        u = p["U"] * np.exp(-kappa * x)[None, :] * np.cos(p["omega"] * t[:, None] - kappa * x[None, :] + self.d)
        return pinned_ends(u, np.asarray(x, dtype=np.float64), self.x_domain, self.boundary_data(p, t))


@pytest.mark.parametrize(("wrong", "row"), [(_MovingWave(1e-4), "initial velocity"), (_MovingWave(0.3), "initial velocity"),
                                            (_ShiftedStokes(1e-3), "wall value"), (_ShiftedStokes(0.1), "wall value")])
def test_initial_and_wall_rows_fail_for_a_solver_that_breaks_them(wrong: Problem, row: str) -> None:
    """The rows check solve() itself: a small initial velocity or a wall phase error makes them fail."""
    (record,) = [r for r in wrong.verification() if row in r.check]
    assert not record.passed, record


def test_numerical_solvers_are_second_order(records: dict[str, list]) -> None:
    """heat_neumann (vs an exact Neumann solution) and burgers_dirichlet (vs Cole–Hopf): order 2 ± 0.3."""
    for name in ("heat_neumann", "burgers_dirichlet"):
        (study,) = [r for r in records[name] if r.expected_order is not None]
        assert study.expected_order == 2.0
        assert 1.7 <= study.order <= 2.3
        assert study.error < 1e-3


@pytest.mark.parametrize("name", CASES)
def test_shapes_dtype_and_initial_row(name: str) -> None:
    problem = pdes.get(name)
    x = np.linspace(0.0, 1.0, 64)
    t = np.linspace(0.0, problem.t_domain[1], 11)
    u = problem.solve(PARAMS[name], x, t)
    assert u.shape == (11, 64) and u.dtype == np.float64
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(u[0], initial_field(name, x), rtol=0, atol=1e-13)
    assert problem.boundary_data(PARAMS[name], t).shape == (11, 2)


@pytest.mark.parametrize("name", ["stokes2", "burgers_dirichlet", "wave"])
def test_dirichlet_values_hold_to_round_off(name: str) -> None:
    problem = pdes.get(name)
    t = np.linspace(0.0, problem.t_domain[1], 26)
    for x in (np.linspace(0.0, 1.0, 64), np.array([0.0, 0.13, 0.5, 0.77, 1.0])):
        u = problem.solve(PARAMS[name], x, t)
        np.testing.assert_allclose(u[:, [0, -1]], problem.boundary_data(PARAMS[name], t), rtol=0, atol=1e-14)


def test_stokes_boundary_data_is_the_oscillating_wall() -> None:
    p = PARAMS["stokes2"]
    t = np.linspace(0.0, 1.2, 26)
    data = pdes.get("stokes2").boundary_data(p, t)
    kappa = np.sqrt(p["omega"] / (2 * p["nu"]))
    np.testing.assert_allclose(data[:, 0], p["U"] * np.cos(p["omega"] * t), rtol=0, atol=1e-15)
    np.testing.assert_allclose(data[:, 1], p["U"] * np.exp(-kappa) * np.cos(p["omega"] * t - kappa), rtol=0, atol=1e-15)


def test_heat_neumann_gradients_match_the_neumann_data() -> None:
    """One-sided second-order differences of the output approach the data (0, U sin πt) at least as fast
    as h² at both ends (faster at x = 0, where u_xxx vanishes with the flux), and come within the size
    of the stencil's truncation error on the finest grid."""
    problem = HeatNeumann()
    p = PARAMS["heat_neumann"]
    t = np.linspace(0.4, 2.0, 5)
    data = problem.boundary_data(p, t)
    errors = []
    for n in (257, 513, 1025):
        x = np.linspace(0.0, 1.0, n)
        h = x[1]
        u = problem.solve(p, x, t)
        left = (-3 * u[:, 0] + 4 * u[:, 1] - u[:, 2]) / (2 * h)
        right = (3 * u[:, -1] - 4 * u[:, -2] + u[:, -3]) / (2 * h)
        errors.append((np.abs(left - data[:, 0]).max(), np.abs(right - data[:, 1]).max()))
    errors = np.array(errors)
    orders = np.log2(errors[:-1] / errors[1:])
    assert (orders > 1.8).all(), (errors, orders)
    assert errors[-1, 0] < 5e-6 and errors[-1, 1] < 1.5e-3, errors


def test_heat_neumann_conserves_through_boundary_flux() -> None:
    """Change of the trapezoid mass on the solver's own grid = ∫ (F(0) − F(1)) dt to round-off."""
    p = PARAMS["heat_neumann"]
    t = np.linspace(0.0, 2.0, 26)
    m = 1024  # ≥ 256 ω: the solver's grid is this grid
    problem = HeatNeumann(min_intervals=m)
    u = problem.solve(p, np.linspace(0.0, 1.0, m + 1), t)
    discrete = trapezoid_mass(u, 1.0 / m)
    exact = problem.mass(p, t)
    np.testing.assert_allclose(discrete - discrete[0], exact - exact[0], rtol=0, atol=1e-13)
    assert abs(discrete[0] - exact[0]) < 1e-5  # quadrature of cos(ωπx) at h = 1/1024
    # the closed-form mass is the generic integral of boundary_flux from the base class
    np.testing.assert_allclose(problem.mass(p, t), Problem.mass(problem, p, t), rtol=0, atol=1e-12)
    fine = np.linspace(0.0, 1.0, 20001)
    assert abs(problem.initial_mass(p) - np.trapezoid(np.cos(p["omega"] * np.pi * fine), fine)) < 1e-8


def test_heat_flows_in_at_the_right_while_sin_pi_t_is_positive() -> None:
    problem = HeatNeumann(min_intervals=256)
    p = PARAMS["heat_neumann"]
    t = np.linspace(0.0, 1.0, 11)
    u = problem.solve(p, np.linspace(0.0, 1.0, 257), t)
    mass = trapezoid_mass(u, 1.0 / 256)
    assert np.all(np.diff(mass) > 0)
    flux = problem.boundary_flux(p, t[1:-1])
    assert np.all(flux[:, 0] == 0.0) and np.all(flux[:, 1] < 0)


def test_heat_neumann_dct_with_insulated_ends_keeps_a_cosine_mode_exactly() -> None:
    """cos(πx) is an eigenvector of the discrete Neumann Laplacian: it decays with the discrete rate."""
    m = 40
    x = np.linspace(0.0, 1.0, m + 1)
    k, t = 0.3, np.array([0.0, 0.7])
    u = heat_neumann_dct(np.cos(np.pi * x), 1.0, k, t)
    rate = k * (4 * m**2) * np.sin(np.pi / (2 * m)) ** 2
    np.testing.assert_allclose(u[1], np.exp(-rate * 0.7) * np.cos(np.pi * x), rtol=0, atol=1e-14)
    left_flux = heat_neumann_dct(np.zeros(m + 1), 1.0, k, t, left=[ExpTerm(1.0, 0.0)])
    assert trapezoid_mass(left_flux, 1.0 / m)[1] == pytest.approx(-k * 0.7, abs=1e-14)


@pytest.mark.parametrize("name", ["heat_neumann", "burgers_dirichlet"])
def test_scattered_x_agrees_with_the_uniform_grid(name: str) -> None:
    problem = pdes.get(name)
    t = np.array([0.0, 0.3, 0.9])
    grid = np.linspace(0.0, 1.0, 201)
    pick = np.array([3, 17, 60, 111, 150, 199])
    scattered = problem.solve(PARAMS[name], grid[pick][::-1], t)[:, ::-1]
    np.testing.assert_allclose(scattered, problem.solve(PARAMS[name], grid, t)[:, pick], rtol=0, atol=1e-5)


def test_cole_hopf_series_reproduces_the_initial_sine() -> None:
    x = np.linspace(0.0, 1.0, 33)
    for amplitude, nu in ((1.0, 0.1), (0.8, 0.02)):
        np.testing.assert_allclose(cole_hopf_sine(amplitude, nu, x, np.array([0.0]))[0], amplitude * np.sin(np.pi * x), atol=1e-10)
    # past R = A/(2πν) = 12 the series cancels in float64 (R = 20: a division by zero near x = 1): refused
    with pytest.raises(ValueError, match="R = A/\\(2πν\\) = 19.9 is outside \\[-12.0, 12.0\\]"):
        cole_hopf_sine(1.0, 0.008, x, np.array([1.0]))


def test_burgers_energy_decays_and_maximum_principle_holds() -> None:
    """Dirichlet zero ends: d/dt ∫u²/2 = −ν∫u_x² ≤ 0, and max|u(t)| ≤ max|u₀|."""
    problem = pdes.get("burgers_dirichlet")
    x = np.linspace(0.0, 1.0, 129)
    t = np.linspace(0.0, 1.0, 21)
    u = problem.solve(PARAMS["burgers_dirichlet"], x, t)
    energy = trapezoid_mass(u**2, x[1])
    assert np.all(np.diff(energy) < 0)
    assert np.abs(u).max(axis=1).max() <= np.abs(u[0]).max() + 1e-12


def test_burgers_mol_handles_unsorted_and_repeated_times() -> None:
    x = np.linspace(0.0, 1.0, 65)
    u0 = 0.5 * np.sin(np.pi * x)
    t = np.array([0.6, 0.2, 0.6, 0.0])
    u = burgers_dirichlet_mol(u0, 0.1, t)
    ordered = burgers_dirichlet_mol(u0, 0.1, np.array([0.0, 0.2, 0.6]))
    np.testing.assert_allclose(u, ordered[[2, 1, 2, 0]], rtol=0, atol=1e-12)


def test_wave_is_periodic_with_period_two_over_c() -> None:
    problem = pdes.get("wave")
    p = {**PARAMS["wave"], "c": 4.0}
    x = np.linspace(0.0, 1.0, 50)
    u = problem.solve(p, x, np.array([0.1, 0.6]))
    np.testing.assert_allclose(u[0], u[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_check_params_rejects_non_positive_diffusion_or_speed(name: str) -> None:
    problem = pdes.get(name)
    key = POSITIVE[name]
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=f"{name}.{key} ="):
            problem.solve({**PARAMS[name], key: bad}, np.linspace(0, 1, 8), np.array([0.0]))
    with pytest.raises(ValueError, match="missing"):
        problem.check_params({k: v for k, v in PARAMS[name].items() if k != key})


@pytest.mark.parametrize("name", CASES)
def test_bad_grids_are_rejected_naming_the_field(name: str) -> None:
    problem = pdes.get(name)
    with pytest.raises(ValueError, match="^x must"):
        problem.solve(PARAMS[name], np.array([-0.1, 0.5]), np.array([0.0]))
    with pytest.raises(ValueError, match="^t must"):
        problem.solve(PARAMS[name], np.linspace(0, 1, 8), np.array([-1.0]))


def _inside(problem: Problem) -> dict[str, float]:
    """A point inside every parameter's physical range."""
    values = {}
    for p in problem.parameters:
        lo, hi = p.low, p.high
        if np.isfinite(lo) and np.isfinite(hi):
            values[p.name] = (lo + hi) / 2
        else:
            values[p.name] = lo + 1.0 if np.isfinite(lo) else (hi - 1.0 if np.isfinite(hi) else 0.5)
    return values


@pytest.mark.parametrize("name", pdes.names())
def test_every_function_of_time_refuses_what_solve_refuses(name: str) -> None:
    """mass (the b of the ProbConserv update), boundary_flux, boundary_data (what BOON enforces), fronts and
    shocks: times before t0, non-finite or not a 1-D array, and out-of-range parameters → ValueError naming
    them (they returned NaN, a wrong mass or an array of the wrong shape)."""
    from physml.pdes.base import TIME_FUNCTIONS

    problem = pdes.get(name)
    params = _inside(problem)
    t0, t1 = problem.t_domain
    good = np.array([t0 + 0.25 * (t1 - t0), t0 + 0.5 * (t1 - t0)])
    defined = [f for f in TIME_FUNCTIONS if hasattr(problem, f) and (
        getattr(type(problem), f) is not getattr(Problem, f, None) or (f == "mass" and problem.conservative))
        and not (f == "boundary_data" and problem.boundary == "periodic")]  # periodic: none (Problem.boundary_data)
    assert defined, f"{name} defines no function of time"
    for f in defined:
        fn = getattr(problem, f)
        assert np.asarray(fn(params, good)).shape[0] == 2
        for bad in (np.array([t0 - 0.5]), np.array([np.nan]), np.zeros((2, 2)), np.array([])):
            with pytest.raises(ValueError, match=r"\bt must"):
                fn(params, bad)
        bounded = next(p for p in problem.parameters if np.isfinite(p.low) or np.isfinite(p.high))
        outside = bounded.low - 1.0 if np.isfinite(bounded.low) else bounded.high + 1.0
        with pytest.raises(ValueError, match=rf"{name}\.{bounded.name} = .* outside its allowed range"):
            fn({**params, bounded.name: outside}, good)


def test_burgers_dirichlet_refuses_a_viscosity_its_grid_cannot_resolve() -> None:
    """ν → 0 asks for Σ|c_n| / ν intervals (cell Péclet ≤ 1): beyond the cap, an error naming nu and its
    smallest allowed value instead of an unbounded LSODA run."""
    problem = pdes.get("burgers_dirichlet")
    params = {"nu": 1e-6, "c1": 1.0, "c2": 0.5, "c3": 0.0, "c4": 0.0}
    with pytest.raises(ValueError, match=r"burgers_dirichlet\.nu = 1e-06 needs 1500000 solver intervals.*nu >= 7\.5e-05"):
        problem.solve(params, np.linspace(0, 1, 9), np.array([0.1]))


def test_burgers_dirichlet_box_check_refuses_what_some_draw_would() -> None:
    """The cap depends on ν and Σ|c_n| together, so the per-parameter ranges cannot state it: the box check
    takes the smallest ν against the largest Σ|c_n| of the ranges, so a params.yaml whose unlucky draws solve
    would refuse is refused whole; a box whose every corner solves is accepted."""
    problem = pdes.get("burgers_dirichlet")
    box = {"nu": (5e-5, 0.1), "c1": (-1.0, 1.0), "c2": (-0.5, 0.5), "c3": (-0.25, 0.25), "c4": (-0.125, 0.125)}
    (error,) = problem.check_parameter_box(box)
    assert error.startswith("nu = 5e-05 needs 37500 solver intervals") and "allowed nu >= 9.38e-05" in error
    corner = {"nu": 5e-5, "c1": 1.0, "c2": -0.5, "c3": 0.25, "c4": 0.125}
    with pytest.raises(ValueError, match="needs 37500 solver intervals"):
        problem.solve(corner, np.linspace(0, 1, 9), np.array([0.01]))
    assert problem.check_parameter_box({**box, "nu": (1e-4, 0.1)}) == []


def test_heat_neumann_resolves_high_wavenumbers() -> None:
    """u₀ = cos(ωπx), U = 0: u = e^{−k(ωπ)²t} cos(ωπx) exactly. The solver's intervals grow with ω (256 ω), so
    the error stays ~5e-6 up to the cap ω = 256; beyond it, the range refuses ω. The points are not a grid on which
    cos(ωπx) aliases (on 129 uniform points cos(256πx) is 1 at every one) nor the solver's own nodes."""
    x = np.sort(np.random.default_rng(7).uniform(0.0, 1.0, 150))
    t = np.linspace(0.0, 2.0, 26)
    problem = pdes.get("heat_neumann")
    for omega, k in ((50.0, 1e-5), (256.0, 1e-5)):
        exact = np.exp(-k * (omega * np.pi) ** 2 * t)[:, None] * np.cos(omega * np.pi * x)[None]
        assert np.abs(problem.solve({"omega": omega, "k": k, "U": 0.0}, x, t) - exact).max() < 1e-5
    with pytest.raises(ValueError, match=r"heat_neumann\.omega = 300\.0 is outside its allowed range \[0, 256\]"):
        problem.solve({"omega": 300.0, "k": 1e-5, "U": 0.0}, x, t)
    with pytest.raises(ValueError, match=r"heat_neumann\.omega = 'abc' is not a number; allowed range \[0, 256\]"):
        problem.check_params({"omega": "abc", "k": 1e-5, "U": 0.0})
