"""Lid-driven cavity: convergence order, Ghia et al. benchmark, boundary data, similarity, contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physml.pdes import get
from physml.pdes.cavity import (
    GHIA_TOLERANCE,
    LidDrivenCavity,
    VorticityStreamSolver,
    steady_cavity,
    time_per_step,
    write_ghia_comparison,
)
from physml.pdes.ghia import GHIA_U, GHIA_V, GHIA_X, GHIA_Y

BOON = {"lid_velocity": 1.0, "reynolds": 100.0}


@pytest.fixture(scope="module")
def cavity() -> LidDrivenCavity:
    """The solver at the resolution asked for (no default refinement), which these tests examine."""
    assert isinstance(get("cavity"), LidDrivenCavity)
    return LidDrivenCavity(min_intervals=1)


def test_registered_cavity_solves_on_at_least_100_cells_and_is_closer_to_the_converged_flow() -> None:
    """The registry's cavity (what the datasets hold) refines a coarse grid to >= 100 cells, as the reference
    solves on 100 × 100: on 12 cells that is refine = 9, and its velocity is several times closer to a finer
    solution than the 12-cell solve's."""
    registered, plain = get("cavity"), LidDrivenCavity(min_intervals=1)
    x, t = np.linspace(0.0, 1.0, 13), np.array([0.0, 1.0])
    default = registered.solve(BOON, x, t)
    assert np.array_equal(default, plain.solve(BOON, x, t, refine=9))
    finer = plain.solve(BOON, x, t, refine=16)[..., :2]
    coarse_error = np.abs(plain.solve(BOON, x, t, refine=1)[..., :2] - finer).max()
    assert np.abs(default[..., :2] - finer).max() < 0.25 * coarse_error
    with pytest.raises(ValueError, match="min_intervals"):
        LidDrivenCavity(min_intervals=0)


@pytest.fixture(scope="module")
def records(cavity: LidDrivenCavity) -> dict[str, object]:
    return {r.check.split(" ")[0]: r for r in cavity.verification()}


def test_registry_contract(cavity: LidDrivenCavity) -> None:
    assert cavity.family == "operator" and cavity.boundary == "dirichlet" and cavity.spatial_dims == 2
    assert cavity.parameter_names == ("lid_velocity", "reynolds")


@pytest.mark.parametrize("field", ["velocity", "vorticity"])
def test_manufactured_solution_converges_at_second_order(records: dict, field: str) -> None:
    """Central differences + Thom's wall vorticity: max-norm error ∝ h² (E & Liu 1996), here n = 32 → 64."""
    record = records[field]
    assert record.expected_order == 2.0
    assert abs(record.order - 2.0) <= 0.3, record
    assert record.passed
    assert record.error < {"velocity": 5e-3, "vorticity": 0.1}[field]


def test_steady_re100_centrelines_match_ghia(records: dict) -> None:
    """Steady Re = 100 centreline u and v within 0.01 U of Ghia, Ghia & Shin (1982), Tables I–II."""
    record = records["steady"]
    assert record.tolerance == GHIA_TOLERANCE == 0.01
    assert 0.0 <= record.error <= 0.01, record
    assert record.passed


def test_ghia_table_shape_and_walls() -> None:
    """The published table: 17 points each, wall values u = 0 (bottom), 1 (lid), v = 0 on the side walls."""
    for arr in (GHIA_U, GHIA_V, GHIA_X, GHIA_Y):
        assert arr.shape == (17,)
    assert GHIA_U[0] == 0.0 and GHIA_U[-1] == 1.0 and GHIA_V[0] == 0.0 and GHIA_V[-1] == 0.0
    assert np.all(np.diff(GHIA_X) > 0) and np.all(np.diff(GHIA_Y) > 0)
    assert GHIA_U.min() == pytest.approx(-0.21090) and GHIA_V.min() == pytest.approx(-0.24533)


def test_solve_shape_and_initial_state(cavity: LidDrivenCavity) -> None:
    """t = 0: fluid at rest, u = U on the lid row, interior ω = 0 and Thom's lid vorticity −2U/h."""
    n, speed = 16, 1.5
    x = np.linspace(0.0, 1.0, n + 1)
    t = np.array([0.0, 0.5, 1.0])
    sol = cavity.solve({"lid_velocity": speed, "reynolds": 100.0}, x, t)
    assert sol.shape == (3, n + 1, n + 1, 3) and sol.dtype == np.float64
    assert np.all(np.isfinite(sol))
    first = sol[0]
    assert np.all(first[:-1, :, :2] == 0.0) and np.all(first[-1, :, 0] == speed) and np.all(first[-1, :, 1] == 0)
    assert np.all(first[1:-1, :, 2] == 0.0)
    np.testing.assert_allclose(first[-1, 1:-1, 2], -2.0 * speed * n, rtol=1e-12)
    assert np.abs(sol[-1, 1:-1, 1:-1, 2]).max() > 0.1 * speed


def test_walls_equal_boundary_data_exactly(cavity: LidDrivenCavity) -> None:
    """The Dirichlet velocities that BOON enforces are exactly the solver's wall values at every time."""
    params = {"lid_velocity": 0.8, "reynolds": 250.0}
    x = np.linspace(0.0, 1.0, 21)
    t = np.linspace(0.0, 2.0, 6)
    sol = cavity.solve(params, x, t)
    data = cavity.boundary_data(params, t)
    assert data.shape == (6, 4, 2)
    for c in range(2):
        assert np.array_equal(sol[:, 0, :, c], np.broadcast_to(data[:, 0, c, None], (6, 21)))
        assert np.array_equal(sol[:, -1, :, c], np.broadcast_to(data[:, 1, c, None], (6, 21)))
        assert np.array_equal(sol[:, :-1, 0, c], np.broadcast_to(data[:, 2, c, None], (6, 20)))
        assert np.array_equal(sol[:, :-1, -1, c], np.broadcast_to(data[:, 3, c, None], (6, 20)))
    assert np.all(data[:, 1, 0] == 0.8) and np.count_nonzero(data) == 6


def test_velocity_is_formed_from_one_stream_function(cavity: LidDrivenCavity) -> None:
    """u = D_y ψ, v = −D_x ψ with commuting central differences ⇒ D_x u + D_y v = 0 to round-off. This holds
    for any ψ, so it checks how the solver forms u and v from ψ (one stream function, central differences),
    not the flow itself: the Ghia, convergence and similarity tests below check that."""
    n = 24
    x = np.linspace(0.0, 1.0, n + 1)
    sol = cavity.solve(BOON, x, np.array([1.0]))[0]
    u, v = sol[..., 0], sol[..., 1]
    div = (u[2:-2, 3:-1] - u[2:-2, 1:-3] + v[3:-1, 2:-2] - v[1:-3, 2:-2]) * n / 2
    assert np.abs(div).max() < 1e-10 * n


def test_reynolds_similarity(cavity: LidDrivenCavity) -> None:
    """At fixed Re, u(x, t; U) = U û(x, U t) and ω likewise (nondimensionalise by U and L)."""
    x = np.linspace(0.0, 1.0, 33)
    t = np.linspace(0.0, 1.0, 5)
    slow = cavity.solve({"lid_velocity": 1.0, "reynolds": 100.0}, x, 2.0 * t)
    fast = cavity.solve({"lid_velocity": 2.0, "reynolds": 100.0}, x, t)
    np.testing.assert_allclose(fast, 2.0 * slow, rtol=1e-9, atol=1e-9)


def test_refine_samples_the_finer_solution(cavity: LidDrivenCavity) -> None:
    """refine = 2 is the 2n² solution read at the coarse nodes, and closer to the converged flow."""
    coarse = np.linspace(0.0, 1.0, 17)
    t = np.array([0.0, 1.0])
    refined = cavity.solve(BOON, coarse, t, refine=2)
    fine = cavity.solve(BOON, np.linspace(0.0, 1.0, 33), t)[:, ::2, ::2]
    assert np.array_equal(refined, fine)
    reference = cavity.solve(BOON, coarse, t, refine=4)[..., :2]
    plain = cavity.solve(BOON, coarse, t)[..., :2]
    assert np.abs(refined[..., :2] - reference).max() < 0.5 * np.abs(plain - reference).max()


def test_primary_vortex_strength_converges_to_ghia() -> None:
    """ψ_min of the steady Re = 100 flow: O(h²) Richardson extrapolation of 32² and 64² lands on Ghia et al.
    Table III (ψ_min = −0.103423 at (0.6172, 0.7344)); the 64² minimum sits within one cell of that centre."""
    psi_min = {}
    for n in (32, 64):
        flow = steady_cavity(100.0, 1.0, n=n)
        assert flow.residual <= 1e-5 and flow.time < 60.0 and flow.fields.shape == (n + 1, n + 1, 3)
        psi = VorticityStreamSolver(n, 0.01, lambda _t, m=n: np.ones(m + 1)).stream(flow.fields[1:-1, 1:-1, 2])
        psi_min[n] = psi.min()
        j, i = np.unravel_index(psi.argmin(), psi.shape)
    assert abs(flow.x[i + 1] - 0.6172) <= 1 / 64 and abs(flow.x[j + 1] - 0.7344) <= 1 / 64
    extrapolated = psi_min[64] + (psi_min[64] - psi_min[32]) / 3.0
    assert abs(psi_min[64] - (-0.103423)) > 5e-4
    assert extrapolated == pytest.approx(-0.103423, abs=5e-4)


def test_write_ghia_comparison(tmp_path: Path) -> None:
    md = write_ghia_comparison(tmp_path / "out", n=32)
    assert md.exists() and (md.parent / "cavity_ghia.png").stat().st_size > 1000
    text = md.read_text()
    assert "Ghia" in text and text.count("\n|") == 2 + 17


def test_time_per_step_is_the_clock_difference_over_the_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """It divides the clock's advance over the timed steps by their number (a scripted clock: 10 s → 13 s
    over 3 steps is 1 s each), and a real run on a small grid takes a positive time below a second."""
    import types

    from physml.pdes import cavity as cavity_module

    assert 0.0 < time_per_step(16, steps=3) < 1.0
    ticks = iter([10.0, 13.0])
    monkeypatch.setattr(cavity_module, "_time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    assert time_per_step(16, steps=3) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lid_velocity": 0.0, "reynolds": 100.0}, "lid_velocity"),
        ({"lid_velocity": 1.0, "reynolds": 5.0}, "reynolds"),
        ({"lid_velocity": 1.0, "reynolds": float("nan")}, "reynolds"),
        ({"lid_velocity": 1.0}, "reynolds"),
    ],
)
def test_bad_parameters_are_named(cavity: LidDrivenCavity, params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        cavity.solve(params, np.linspace(0, 1, 9), np.array([0.0]))


def test_bad_grid_and_times(cavity: LidDrivenCavity) -> None:
    with pytest.raises(ValueError, match=r"^cavity x must be the uniform grid linspace\(0, 1"):
        cavity.solve(BOON, np.linspace(0, 2, 9), np.array([0.0]))
    with pytest.raises(ValueError, match=r"^cavity x must be a 1-D grid of at least 5 points"):
        cavity.solve(BOON, np.linspace(0, 1, 4), np.array([0.0]))
    with pytest.raises(ValueError, match=r"^cavity t must be non-decreasing"):
        cavity.solve(BOON, np.linspace(0, 1, 9), np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="refine"):
        cavity.solve(BOON, np.linspace(0, 1, 9), np.array([0.0]), refine=0)
