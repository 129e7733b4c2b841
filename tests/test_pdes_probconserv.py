"""The ProbConserv PDE cases (heat, pme, stefan, advection, burgers): exact solutions and their
integral conservation law d/dt ∫u dx = F(x_L) − F(x_R), through the same ``boundary_flux`` the
ProbConserv constraint uses. Masses here come from adaptive quadrature (scipy QAGP) of ``solve``,
split at the known fronts/shocks, independent of the Gauss–Legendre rule inside ``verification()``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special

from physml import pdes
from physml.pdes.stefan import similarity_root

CASES = ("heat", "pme", "stefan", "advection", "burgers")


def kinks(case: str, params: dict[str, float], t: float) -> list[float]:
    """Interior points where u or u_x is not smooth at time t (from the physics, not the code)."""
    if case == "pme":
        return [t]
    if case == "stefan":
        return [2.0 * similarity_root(params["p_star"]) * np.sqrt(t)]
    if case == "advection":
        return [0.5 + params["a"] * t]
    if case == "burgers":
        a = params["a"]
        return [a * t - 1.0, 0.0] if a * t < 1.0 else [0.5 * (a * t - 1.0)]
    return []


def quad_mass(case: str, params: dict[str, float], t: float) -> float:
    """∫ solve(params, x, t) dx over the domain by adaptive quadrature split at the kinks."""
    problem = pdes.get(case)
    lo, hi = problem.x_domain
    cuts = [lo, *sorted(b for b in kinks(case, params, t) if lo < b < hi), hi]

    def u(x: float) -> float:
        return float(problem.solve(params, np.array([min(max(x, lo), hi)]), np.array([t]))[0, 0])

    total = 0.0
    for a, b in zip(cuts[:-1], cuts[1:]):
        value, _ = integrate.quad(u, a, b, epsabs=1e-13, epsrel=1e-13, limit=200)
        total += value
    return total


# (case, params, times): times keep the ±2δ stencil away from the instants where a front leaves the
# domain (there M(t) has a kink and F_R jumps). Several cases make F_R ≠ 0 on purpose.
# heat is left out of the two lists below: e^{−kt} sin x has zero mass and equal end fluxes for every k,
# so its rows would hold for a wrong solver too (its flux is checked against −k u_x in its verification)
CONSERVATION_CASES = [
    ("pme", {"m": 1.0}, [0.1, 0.5, 0.9]),
    ("pme", {"m": 6.0}, [0.05, 0.5, 0.95]),
    ("pme", {"m": 6.0}, [1.2]),  # front beyond x = 1: outflow at the right boundary
    ("stefan", {"p_star": 0.5}, [0.01, 0.05, 0.09]),
    ("stefan", {"p_star": 0.7}, [0.02, 0.08]),
    ("stefan", {"p_star": 0.02}, [0.05, 0.095]),  # the front reaches x = 1 at t ≈ 0.0887
    ("advection", {"a": 1.0}, [0.1, 0.3, 0.8]),
    ("advection", {"a": 4.0}, [0.05, 0.2]),  # the step leaves at t = 1/8
    ("burgers", {"a": 1.0}, [0.2, 0.6, 0.95]),
    ("burgers", {"a": 2.0}, [0.3, 0.7]),  # before and after the shock forms at t = 1/2
    ("burgers", {"a": 4.0}, [0.5, 0.9]),  # the shock leaves at t = 3/4
]


@pytest.mark.parametrize(("case", "params", "times"), CONSERVATION_CASES)
def test_mass_rate_equals_boundary_flux_difference(case: str, params: dict[str, float], times: list[float]) -> None:
    """d/dt ∫u dx (4th-order central difference of quadrature of solve) = F_L − F_R from boundary_flux."""
    problem = pdes.get(case)
    delta = 1e-5 if case == "stefan" else 1e-4
    t = np.array(times)
    m = {j: np.array([quad_mass(case, params, ti + j * delta) for ti in t]) for j in (-2, -1, 1, 2)}
    rate = (m[-2] - 8.0 * m[-1] + 8.0 * m[1] - m[2]) / (12.0 * delta)
    flux = problem.boundary_flux(params, t)
    assert flux.shape == (len(t), 2)
    net = flux[:, 0] - flux[:, 1]
    np.testing.assert_allclose(rate, net, rtol=0, atol=1e-7 * (1.0 + np.abs(net).max()))


def test_outflow_is_exercised() -> None:
    """The conservation cases above include a non-zero right-boundary flux for every bounded case."""
    assert pdes.get("pme").boundary_flux({"m": 6.0}, np.array([1.2]))[0, 1] > 0.5
    assert pdes.get("stefan").boundary_flux({"p_star": 0.02}, np.array([0.095]))[0, 1] > 0.0
    assert pdes.get("advection").boundary_flux({"a": 4.0}, np.array([0.2]))[0, 1] == pytest.approx(4.0)
    assert pdes.get("burgers").boundary_flux({"a": 4.0}, np.array([0.9]))[0, 1] == pytest.approx(8.0)


MASS_CASES = [
    ("pme", {"m": 1.0}, [0.0, 0.4, 1.0, 1.5]),
    ("pme", {"m": 50.0}, [0.2, 0.7]),
    ("stefan", {"p_star": 0.5}, [0.0, 0.02, 0.1]),
    ("stefan", {"p_star": 0.02}, [0.05, 0.1]),
    ("advection", {"a": 2.0}, [0.0, 0.1, 0.5, 1.0]),
    ("burgers", {"a": 4.0}, [0.0, 0.2, 0.25, 0.5, 0.9]),
]


@pytest.mark.parametrize(("case", "params", "times"), MASS_CASES)
def test_closed_form_mass_matches_quadrature(case: str, params: dict[str, float], times: list[float]) -> None:
    problem = pdes.get(case)
    t = np.array(times)
    expected = np.array([quad_mass(case, params, ti) for ti in t])
    np.testing.assert_allclose(problem.mass(params, t), expected, rtol=0, atol=1e-10)
    assert problem.initial_mass(params) == pytest.approx(quad_mass(case, params, 0.0), abs=1e-12)


def test_reference_mass_formulas() -> None:
    """The closed forms of the reference code where they apply (front inside the domain)."""
    t = np.array([0.1, 0.5, 0.9])
    m = 3.0
    np.testing.assert_allclose(pdes.get("pme").mass({"m": m}, t), m ** (1 + 1 / m) / (m + 1) * t ** (1 + 1 / m), rtol=1e-14)
    a = 1.5
    np.testing.assert_allclose(pdes.get("burgers").mass({"a": a}, t), a / 2 * (1 + a * t), rtol=1e-14)
    np.testing.assert_allclose(pdes.get("advection").mass({"a": 0.5}, t), 0.5 + np.minimum(0.5 * t, 0.5), rtol=1e-14)
    ps = 0.6
    ts = np.array([0.01, 0.1])
    z1 = similarity_root(ps)
    np.testing.assert_allclose(pdes.get("stefan").mass({"p_star": ps}, ts), 2 * (1 - ps) * np.sqrt(ts / np.pi) / special.erf(z1), rtol=1e-13)
    np.testing.assert_array_equal(pdes.get("heat").mass({"k": 1.0}, t), np.zeros(3))


DEFAULT_PARAMS = {"heat": {"k": 2.0}, "pme": {"m": 3.0}, "stefan": {"p_star": 0.6}, "advection": {"a": 2.0}, "burgers": {"a": 2.0}}


@pytest.mark.parametrize("case", CASES)
def test_shapes_dtype_and_initial_time(case: str) -> None:
    problem = pdes.get(case)
    lo, hi = problem.x_domain
    x = np.linspace(lo, hi, 7)
    t = np.linspace(*problem.t_domain, 5)
    u = problem.solve(DEFAULT_PARAMS[case], x, t)
    assert u.shape == (5, 7) and u.dtype == np.float64 and np.all(np.isfinite(u))
    assert problem.solve(DEFAULT_PARAMS[case], x.astype(np.float32), t[:1]).dtype == np.float64
    flux = problem.boundary_flux(DEFAULT_PARAMS[case], t[1:])
    assert flux.shape == (4, 2) and flux.dtype == np.float64 and np.all(np.isfinite(flux))
    assert problem.mass(DEFAULT_PARAMS[case], t).shape == (5,)


def test_initial_data_exact_at_t0() -> None:
    """solve(t = 0) is the initial data itself (no 0/0)."""
    x01 = np.linspace(0.0, 1.0, 11)
    t0 = np.array([0.0])
    xh = np.linspace(0.0, 2 * np.pi, 9)
    np.testing.assert_array_equal(pdes.get("heat").solve({"k": 3.0}, xh, t0)[0], np.sin(xh))
    np.testing.assert_array_equal(pdes.get("pme").solve({"m": 2.0}, x01, t0)[0], np.zeros(11))
    np.testing.assert_array_equal(pdes.get("stefan").solve({"p_star": 0.5}, x01, t0)[0], np.r_[1.0, np.zeros(10)])
    np.testing.assert_array_equal(pdes.get("advection").solve({"a": 2.0}, x01, t0)[0], (x01 <= 0.5).astype(float))
    xb = np.linspace(-1.0, 1.0, 9)
    np.testing.assert_allclose(pdes.get("burgers").solve({"a": 2.0}, xb, t0)[0], np.where(xb < 0, -2.0 * xb, 0.0), atol=1e-15)


def test_heat_exact_solution() -> None:
    x = np.linspace(0.0, 2 * np.pi, 13)
    t = np.array([0.0, 0.5, 1.0])
    u = pdes.get("heat").solve({"k": 2.0}, x, t)
    np.testing.assert_allclose(u, np.exp(-2.0 * t)[:, None] * np.sin(x)[None, :], rtol=1e-15, atol=1e-16)
    flux = pdes.get("heat").boundary_flux({"k": 2.0}, t)
    np.testing.assert_allclose(flux[:, 0], flux[:, 1], rtol=1e-15)  # periodic: what leaves enters


def test_pme_front_at_x_equals_t() -> None:
    problem = pdes.get("pme")
    x = np.linspace(0.0, 1.0, 101)
    for m in (1.0, 3.0, 6.0):
        for t in (0.25, 0.5, 0.75):
            u = problem.solve({"m": m}, x, np.array([t]))[0]
            assert np.all(u[x < t - 1e-12] > 0.0) and np.all(u[x >= t] == 0.0)
            np.testing.assert_allclose(u[x < t], (m * (t - x[x < t])) ** (1 / m), rtol=1e-14)
        np.testing.assert_array_equal(problem.front_position({"m": m}, np.array([0.3])), [0.3])


def test_stefan_similarity_root_and_front() -> None:
    problem = pdes.get("stefan")
    z1 = problem.similarity_root({"p_star": 0.5})
    assert z1 == pytest.approx(0.6201, abs=1e-4)
    for ps in (0.1, 0.5, 0.55, 0.7, 0.9):
        z = similarity_root(ps)
        assert (1 - ps) * np.exp(-(z**2)) / (np.sqrt(np.pi) * special.erf(z)) == pytest.approx(ps * z, rel=1e-13)
    t = np.array([0.0, 0.04, 0.1])
    np.testing.assert_allclose(problem.front_position({"p_star": 0.5}, t), 2 * z1 * np.sqrt(t), rtol=1e-15)
    # left of the front u ≥ p*, u = p* at the front, zero beyond; the Stefan condition p* x*' = −u_x(x*⁻)
    ps, ts = 0.6, 0.05
    xs = problem.front_position({"p_star": ps}, np.array([ts]))[0]
    h = 1e-6
    left = problem.solve({"p_star": ps}, np.array([xs - 2 * h, xs - h, xs]), np.array([ts]))[0]
    assert left[2] == pytest.approx(ps, rel=1e-12)
    assert problem.solve({"p_star": ps}, np.array([xs + 1e-9]), np.array([ts]))[0, 0] == 0.0
    u_x = (3 * left[2] - 4 * left[1] + left[0]) / (2 * h)
    assert ps * similarity_root(ps) / np.sqrt(ts) == pytest.approx(-u_x, rel=1e-6)
    flux0 = problem.boundary_flux({"p_star": ps}, np.array([0.0]))
    assert flux0[0, 0] == np.inf and flux0[0, 1] == 0.0


def test_burgers_shock_moves_at_rankine_hugoniot_speed() -> None:
    """After breaking at t = 1/a the jump from a to 0 sits at (a t − 1)/2: speed (a + 0)/2."""
    problem = pdes.get("burgers")
    a = 2.0
    x = np.linspace(-1.0, 1.0, 40001)
    for t in (0.6, 0.8, 1.0):
        u = problem.solve({"a": a}, x, np.array([t]))[0]
        jump = x[np.argmax(u < a / 2)]
        assert jump == pytest.approx(0.5 * (a * t - 1.0), abs=1e-4)
        assert problem.shock_position({"a": a}, np.array([t]))[0] == pytest.approx(0.5 * (a * t - 1.0))
    assert np.isnan(problem.shock_position({"a": a}, np.array([0.3]))[0])


@pytest.mark.parametrize("case", CASES)
def test_nonnegativity(case: str) -> None:
    problem = pdes.get(case)
    lo, hi = problem.x_domain
    x = np.linspace(lo, hi, 201)
    t = np.linspace(*problem.t_domain, 21)
    u = problem.solve(DEFAULT_PARAMS[case], x, t)
    assert problem.nonnegative == (case != "heat")
    assert (u.min() >= 0.0) == problem.nonnegative


@pytest.mark.parametrize(
    ("case", "params", "name"),
    [
        ("pme", {"m": 0.5}, "m"),
        ("pme", {"m": 51.0}, "m"),
        ("stefan", {"p_star": 1.2}, "p_star"),
        ("stefan", {"p_star": 0.0}, "p_star"),
        ("heat", {"k": -1.0}, "k"),
        ("heat", {"k": 0.0}, "k"),
        ("advection", {"a": 0.0}, "a"),
        ("burgers", {"a": -1.0}, "a"),
        ("burgers", {"a": float("nan")}, "a"),
    ],
)
def test_out_of_range_parameters_rejected(case: str, params: dict[str, float], name: str) -> None:
    problem = pdes.get(case)
    with pytest.raises(ValueError, match=rf"{case}\.{name} = .* outside its allowed range"):
        problem.check_params(params)
    with pytest.raises(ValueError, match=rf"{case}\.{name} = .* outside its allowed range"):
        problem.solve(params, np.array([problem.x_domain[0]]), np.array([0.0]))
    with pytest.raises(ValueError, match="missing"):
        problem.solve({}, np.array([problem.x_domain[0]]), np.array([0.0]))


@pytest.mark.parametrize("case", CASES)
def test_bad_grids_rejected(case: str) -> None:
    problem = pdes.get(case)
    lo, hi = problem.x_domain
    p = DEFAULT_PARAMS[case]
    with pytest.raises(ValueError, match="x must lie in the domain"):
        problem.solve(p, np.array([lo, hi + 0.5]), np.array([0.1]))
    with pytest.raises(ValueError, match="t must be >= 0"):
        problem.solve(p, np.array([lo]), np.array([-0.1]))
    with pytest.raises(ValueError, match="1-D"):
        problem.solve(p, np.zeros((2, 2)) + lo, np.array([0.1]))


@pytest.mark.parametrize("case", CASES)
def test_verification_records_pass_at_their_design_order(case: str) -> None:
    problem = pdes.get(case)
    records = problem.verification()
    # the conservation law in integral form (heat's is trivial, so its verification checks the flux itself)
    assert any(("boundary flux" if case == "heat" else "conservation") in r.check for r in records)
    for r in records:
        assert r.case == case and np.isfinite(r.error)
        assert r.passed, r
        if r.expected_order is not None:
            assert r.order == pytest.approx(2.0, abs=0.1)


def test_registry() -> None:
    expected = {"heat": ("k",), "pme": ("m",), "stefan": ("p_star",), "advection": ("a",), "burgers": ("a",)}
    for case, names in expected.items():
        problem = pdes.get(case)
        assert problem.name == case and problem.parameter_names == names
        assert problem.family == "probconserv" and problem.conservative and problem.spatial_dims == 1
    assert pdes.get("heat").boundary == "periodic"
    assert pdes.get("stefan").parameter("p_star").describe_range() == "(0, 1)"
    assert pdes.get("pme").parameter("m").describe_range() == "[1, 50]"
