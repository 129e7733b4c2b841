"""2-D incompressible Navier–Stokes in the lid-driven unit cavity (the BOON 2-D + time case).

Vorticity–streamfunction form (e.g. Ferziger & Perić, *Computational Methods for Fluid Dynamics*,
§7.3; Weinan E & J.-G. Liu, J. Comput. Phys. 124, 368–382, 1996), lengths in cavity sides:

    ω_t + u ω_x + v ω_y = ν Δω,    Δψ = −ω,    u = ψ_y,  v = −ψ_x,    ν = U / Re,

on [0, 1]², fluid at rest at t = 0, the top wall y = 1 moving with speed U in +x, no slip on the other
three walls (ψ = 0 on all walls). Discretisation on the uniform (n+1)² grid that includes the walls:

- second-order central differences for ω_x, ω_y, u, v and the 5-point Laplacian;
- ψ from the interior vorticity by an exact fast solve of the 5-point Poisson problem with ψ = 0 on
  the walls (DST-I diagonalises it: λ_k = (2 − 2 cos(kπ/n)) / h²);
- Thom's wall vorticity ω_wall = −2 (ψ_adjacent + h·u_tangential·s) / h² with s the sign that makes
  ψ_n the tangential velocity (Thom 1933; globally second order, E & Liu 1996);
- three-stage SSP Runge–Kutta (Shu & Osher 1988) in time with
  dt ≤ min(0.2 h²/ν, 0.5 h/U), shortened so that every requested output time is hit exactly.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import fft
from scipy.interpolate import CubicSpline

from physml.atomic import atomic_path
from physml.pdes.base import Parameter, Problem, VerificationRecord
from physml.pdes.ghia import GHIA_REYNOLDS, GHIA_U, GHIA_V, GHIA_X, GHIA_Y

DIFFUSIVE_CFL = 0.2
"""dt ≤ DIFFUSIVE_CFL · h²/ν; SSP-RK3 is stable for dt·8ν/h² ≤ 2.51, i.e. up to 0.31 h²/ν."""
ADVECTIVE_CFL = 0.5
"""dt ≤ ADVECTIVE_CFL · h / U_max; SSP-RK3 is stable on the imaginary axis up to √3."""
GHIA_TOLERANCE = 0.01
"""Allowed max |u − u_Ghia| and |v − v_Ghia| on the centrelines, in units of the lid speed."""
GHIA_GRID = 64
"""Cells per side for the steady Re = 100 benchmark run (tested and reported)."""


def _ssp_rk3(rhs: Callable[[np.ndarray, float], np.ndarray], w: np.ndarray, t: float, dt: float) -> np.ndarray:
    """One step of the three-stage strong-stability-preserving Runge–Kutta method (Shu & Osher 1988)."""
    w1 = w + dt * rhs(w, t)
    w2 = 0.75 * w + 0.25 * (w1 + dt * rhs(w1, t + dt))
    return w / 3.0 + (2.0 / 3.0) * (w2 + dt * rhs(w2, t + 0.5 * dt))


class VorticityStreamSolver:
    """Vorticity–streamfunction solver on the uniform (n+1)² grid of [0, 1]² (walls included).

    Arrays are indexed ``[j, i]`` = (y_j, x_i). The state is the interior vorticity, shape
    ``(n−1, n−1)``; ψ = 0 on every wall; the tangential wall velocity is zero except on the top wall,
    where ``lid(t)`` gives u(x_i, 1), shape ``(n+1,)``. ``forcing(t)`` (optional) adds a source to the
    vorticity equation at the interior nodes, shape ``(n−1, n−1)`` (used for manufactured solutions).
    """

    def __init__(
        self,
        n: int,
        viscosity: float,
        lid: Callable[[float], np.ndarray],
        forcing: Callable[[float], np.ndarray] | None = None,
    ) -> None:
        if n < 4 or n % 1:
            raise ValueError(f"cavity grid: cells per side n = {n!r} must be an integer ≥ 4")
        if not (np.isfinite(viscosity) and viscosity > 0):
            raise ValueError(f"cavity viscosity = {viscosity!r} must be finite and > 0")
        self.n = int(n)
        self.h = 1.0 / self.n
        self.x = np.linspace(0.0, 1.0, self.n + 1)
        self.viscosity = float(viscosity)
        self.lid = lid
        self.forcing = forcing
        k = np.arange(1, self.n)
        lam = (2.0 - 2.0 * np.cos(np.pi * k / self.n)) / self.h**2
        self._lam = lam[:, None] + lam[None, :]
        self._psi = np.zeros((self.n + 1, self.n + 1))
        self._w = np.zeros((self.n + 1, self.n + 1))

    def stream(self, w_int: np.ndarray) -> np.ndarray:
        """Interior ψ solving the 5-point −Δ_h ψ = ω with ψ = 0 on the walls (DST-I), shape (n−1, n−1)."""
        return fft.idstn(fft.dstn(w_int, type=1) / self._lam, type=1)

    def _fill(self, w_int: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Full ψ and ω (walls from Thom's formula, corners the mean of their two wall neighbours)."""
        n, h = self.n, self.h
        psi, w = self._psi, self._w
        psi[1:-1, 1:-1] = self.stream(w_int)
        w[1:-1, 1:-1] = w_int
        lid = self.lid(t)
        c = -2.0 / h**2
        w[0, 1:-1] = c * psi[1, 1:-1]
        w[n, 1:-1] = c * (psi[n - 1, 1:-1] + h * lid[1:-1])
        w[1:-1, 0] = c * psi[1:-1, 1]
        w[1:-1, n] = c * psi[1:-1, n - 1]
        w[0, 0] = 0.5 * (w[0, 1] + w[1, 0])
        w[0, n] = 0.5 * (w[0, n - 1] + w[1, n])
        w[n, 0] = 0.5 * (w[n, 1] + w[n - 1, 0])
        w[n, n] = 0.5 * (w[n, n - 1] + w[n - 1, n])
        return psi, w

    def rhs(self, w_int: np.ndarray, t: float) -> np.ndarray:
        """ω_t = −(u ω_x + v ω_y) + ν Δ_h ω (+ forcing) at the interior nodes, shape (n−1, n−1)."""
        psi, w = self._fill(w_int, t)
        s = 0.5 / self.h
        u = (psi[2:, 1:-1] - psi[:-2, 1:-1]) * s
        v = (psi[1:-1, :-2] - psi[1:-1, 2:]) * s
        wx = (w[1:-1, 2:] - w[1:-1, :-2]) * s
        wy = (w[2:, 1:-1] - w[:-2, 1:-1]) * s
        lap = (w[2:, 1:-1] + w[:-2, 1:-1] + w[1:-1, 2:] + w[1:-1, :-2] - 4.0 * w_int) / self.h**2
        out = self.viscosity * lap - u * wx - v * wy
        if self.forcing is not None:
            out += self.forcing(t)
        return out

    def fields(self, w_int: np.ndarray, t: float) -> np.ndarray:
        """(u, v, ω) on the full grid, shape (n+1, n+1, 3) indexed [y, x, channel]; walls hold the BCs."""
        psi, w = self._fill(w_int, t)
        out = np.zeros((self.n + 1, self.n + 1, 3))
        s = 0.5 / self.h
        out[1:-1, 1:-1, 0] = (psi[2:, 1:-1] - psi[:-2, 1:-1]) * s
        out[1:-1, 1:-1, 1] = (psi[1:-1, :-2] - psi[1:-1, 2:]) * s
        out[-1, :, 0] = self.lid(t)
        out[..., 2] = w
        return out

    def max_dt(self, speed: float) -> float:
        """The stable step min(0.2 h²/ν, 0.5 h/speed) for SSP-RK3 with central differences."""
        dt = DIFFUSIVE_CFL * self.h**2 / self.viscosity
        if speed > 0:
            dt = min(dt, ADVECTIVE_CFL * self.h / speed)
        return dt

    def advance(self, w_int: np.ndarray, t0: float, t1: float, dt_max: float) -> np.ndarray:
        """Integrate from t0 to t1 in ⌈(t1 − t0)/dt_max⌉ equal SSP-RK3 steps."""
        steps = int(np.ceil((t1 - t0) / dt_max - 1e-12))
        if steps <= 0:
            return w_int
        dt = (t1 - t0) / steps
        for k in range(steps):
            w_int = _ssp_rk3(self.rhs, w_int, t0 + k * dt, dt)
        return w_int


def _check_grid(x: np.ndarray) -> int:
    """Cells per side n of a uniform grid x = linspace(0, 1, n+1), to the rounding of x's own precision
    (a float32 grid is off by up to ~3e-8); ValueError otherwise."""
    given = np.asarray(x)
    tol = 1e-9 if given.dtype == np.float64 or not np.issubdtype(given.dtype, np.floating) else 8 * np.finfo(given.dtype).eps
    x = given.astype(np.float64)
    if x.ndim != 1 or x.size < 5:
        raise ValueError(f"cavity x must be a 1-D grid of at least 5 points, got shape {x.shape}")
    n = x.size - 1
    if not np.allclose(x, np.linspace(0.0, 1.0, n + 1), rtol=0.0, atol=tol):
        raise ValueError(f"cavity x must be the uniform grid linspace(0, 1, len(x)) including both walls (to {tol:.0e})")
    return n


def _check_times(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"cavity t must be a non-empty 1-D array of finite times, got shape {t.shape}")
    if t[0] < 0 or np.any(np.diff(t) < 0):
        raise ValueError("cavity t must be non-decreasing with t[0] ≥ 0")
    return t


@dataclass(frozen=True)
class SteadyCavity:
    """A cavity flow marched to steady state: ``fields`` (n+1, n+1, 3) = (u, v, ω) indexed [y, x, c]."""

    x: np.ndarray
    fields: np.ndarray
    time: float
    residual: float
    """max |ω_t| / (U²/L) at the last check; below the requested tolerance when converged."""


def steady_cavity(
    reynolds: float = 100.0, lid_velocity: float = 1.0, n: int = GHIA_GRID, tol: float = 1e-5, t_max: float = 60.0
) -> SteadyCavity:
    """March the impulsively started cavity until max |ω_t| ≤ tol · U² (every 0.5 L/U) or t = t_max·L/U."""
    if not (np.isfinite(reynolds) and reynolds > 0):
        raise ValueError(f"cavity reynolds = {reynolds!r} must be finite and > 0")
    if not (np.isfinite(lid_velocity) and lid_velocity > 0):
        raise ValueError(f"cavity lid_velocity = {lid_velocity!r} must be finite and > 0")
    lid = np.full(n + 1, float(lid_velocity))
    solver = VorticityStreamSolver(n, lid_velocity / reynolds, lambda _t: lid)
    dt_max = solver.max_dt(lid_velocity)
    w = np.zeros((n - 1, n - 1))
    t, chunk, residual = 0.0, 0.5 / lid_velocity, np.inf
    while t < t_max / lid_velocity:
        w = solver.advance(w, t, t + chunk, dt_max)
        t += chunk
        residual = float(np.max(np.abs(solver.rhs(w, t)))) / lid_velocity**2
        if residual <= tol:
            break
    return SteadyCavity(solver.x, solver.fields(w, t), t, residual)


def ghia_centrelines(flow: SteadyCavity, lid_velocity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """u/U at (0.5, GHIA_Y) and v/U at (GHIA_X, 0.5), by cubic splines along the grid centrelines.

    Returns two arrays of shape (17,) to compare with ``GHIA_U`` and ``GHIA_V``; n must be even so that
    x = 0.5 and y = 0.5 are grid lines.
    """
    n = flow.x.size - 1
    if n % 2:
        raise ValueError(f"ghia_centrelines needs an even number of cells per side, got n = {n}")
    u_col = flow.fields[:, n // 2, 0] / lid_velocity
    v_row = flow.fields[n // 2, :, 1] / lid_velocity
    return CubicSpline(flow.x, u_col)(GHIA_Y), CubicSpline(flow.x, v_row)(GHIA_X)


def ghia_deviation(n: int = GHIA_GRID) -> tuple[float, SteadyCavity]:
    """Max |u − u_Ghia|, |v − v_Ghia| (units of U) of the steady Re = 100 flow on an n² grid, and the flow."""
    flow = steady_cavity(GHIA_REYNOLDS, 1.0, n)
    u, v = ghia_centrelines(flow)
    return float(max(np.max(np.abs(u - GHIA_U)), np.max(np.abs(v - GHIA_V)))), flow


# ---- manufactured solution for the convergence study ---------------------------------------------
# ψ = a(t) f(x) g(y), f = sin²(πx), g = y² sin(πy), a = 1 + t/2: ψ = 0 on all walls, no slip on the
# bottom and sides, a non-uniform lid u(x, 1) = a f(x) g'(1) = −π a f(x) on top.

_MMS_T_END = 0.5
_MMS_VISCOSITY = 0.05


def _f(x: np.ndarray, k: int) -> np.ndarray:
    """k-th derivative of f = sin²(πx) = (1 − cos 2πx)/2."""
    if k == 0:
        return np.sin(np.pi * x) ** 2
    return -0.5 * (2 * np.pi) ** k * np.cos(2 * np.pi * x + k * np.pi / 2)


def _g(y: np.ndarray, k: int) -> np.ndarray:
    """k-th derivative of g = y² sin(πy) (Leibniz: y² s⁽ᵏ⁾ + 2k y s⁽ᵏ⁻¹⁾ + k(k−1) s⁽ᵏ⁻²⁾)."""

    def s(m: int) -> np.ndarray:
        return np.pi**m * np.sin(np.pi * y + m * np.pi / 2) if m >= 0 else np.zeros_like(y)

    return y**2 * s(k) + 2 * k * y * s(k - 1) + k * (k - 1) * s(k - 2)


def _mms_a(t: float) -> tuple[float, float]:
    return 1.0 + 0.5 * t, 0.5


def _mms_exact(x: np.ndarray, t: float) -> np.ndarray:
    """Exact (u, v, ω) of the manufactured flow, shape (n+1, n+1, 3) indexed [y, x, c]."""
    a, _ = _mms_a(t)
    X, Y = np.meshgrid(x, x, indexing="xy")
    u = a * _f(X, 0) * _g(Y, 1)
    v = -a * _f(X, 1) * _g(Y, 0)
    w = -a * (_f(X, 2) * _g(Y, 0) + _f(X, 0) * _g(Y, 2))
    return np.stack([u, v, w], axis=-1)


def _mms_forcing(X: np.ndarray, Y: np.ndarray, nu: float) -> Callable[[float], np.ndarray]:
    """F = ω_t + u ω_x + v ω_y − ν Δω for ψ = a f g (ω = −Δψ), evaluated at the nodes (X, Y)."""
    f = [_f(X, k) for k in range(5)]
    g = [_g(Y, k) for k in range(5)]
    lap_psi = f[2] * g[0] + f[0] * g[2]
    lap_x = f[3] * g[0] + f[1] * g[2]
    lap_y = f[2] * g[1] + f[0] * g[3]
    bilap = f[4] * g[0] + 2 * f[2] * g[2] + f[0] * g[4]
    uf, vf = f[0] * g[1], -f[1] * g[0]

    def forcing(t: float) -> np.ndarray:
        a, da = _mms_a(t)
        return -da * lap_psi - a * a * (uf * lap_x + vf * lap_y) + nu * a * bilap

    return forcing


def manufactured_errors(n: int) -> tuple[float, float]:
    """Max-norm errors (velocity, vorticity) at t = 0.5 of the cavity scheme on the manufactured flow.

    Velocity error over all nodes; vorticity error over all nodes except the four corners (which the
    scheme never uses; they hold the mean of their wall neighbours).
    """
    x = np.linspace(0.0, 1.0, n + 1)
    X, Y = np.meshgrid(x[1:-1], x[1:-1], indexing="xy")
    lid_shape = _f(x, 0) * _g(np.ones(1), 1)
    solver = VorticityStreamSolver(
        n, _MMS_VISCOSITY, lambda t: _mms_a(t)[0] * lid_shape, _mms_forcing(X, Y, _MMS_VISCOSITY)
    )
    w = _mms_exact(x, 0.0)[1:-1, 1:-1, 2]
    speed = float(np.max(np.abs(_mms_exact(x, _MMS_T_END)[..., :2])))
    w = solver.advance(w, 0.0, _MMS_T_END, solver.max_dt(speed))
    err = np.abs(solver.fields(w, _MMS_T_END) - _mms_exact(x, _MMS_T_END))
    corners = np.zeros((n + 1, n + 1), dtype=bool)
    corners[[0, 0, -1, -1], [0, -1, 0, -1]] = True
    return float(err[..., :2].max()), float(err[~corners, 2].max())


def time_per_step(n: int, steps: int = 20, reynolds: float = 100.0) -> float:
    """Wall-clock seconds per SSP-RK3 step (three Poisson solves) of the cavity solver on an n² grid."""
    lid = np.ones(n + 1)
    solver = VorticityStreamSolver(n, 1.0 / reynolds, lambda _t: lid)
    dt = solver.max_dt(1.0)
    w = solver.advance(np.zeros((n - 1, n - 1)), 0.0, 2 * dt, dt)
    start = _time.perf_counter()
    w = solver.advance(w, 0.0, steps * dt, dt)
    return (_time.perf_counter() - start) / steps


def write_ghia_comparison(out_dir: Path, n: int = GHIA_GRID) -> Path:
    """Write cavity_ghia.png (centreline profiles vs Ghia et al. 1982) and cavity_ghia.md; return the .md."""
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    deviation, flow = ghia_deviation(n)
    u, v = ghia_centrelines(flow)
    m = flow.x.size // 2
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax_u, ax_v = fig.subplots(1, 2)
    ax_u.plot(flow.fields[:, m, 0], flow.x, "-", label=f"physml {n}×{n}")
    ax_u.plot(GHIA_U, GHIA_Y, "o", mfc="none", label="Ghia et al. 1982")
    ax_u.set(xlabel="u / U on x = 0.5", ylabel="y", title="u on the vertical centreline")
    ax_v.plot(flow.x, flow.fields[m, :, 1], "-", label=f"physml {n}×{n}")
    ax_v.plot(GHIA_X, GHIA_V, "o", mfc="none", label="Ghia et al. 1982")
    ax_v.set(xlabel="x", ylabel="v / U on y = 0.5", title="v on the horizontal centreline")
    for ax in (ax_u, ax_v):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Lid-driven cavity, Re = 100, steady state (t = {flow.time:g})")
    png = out_dir / "cavity_ghia.png"
    with atomic_path(png) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    lines = [
        "# Lid-driven cavity at Re = 100 against Ghia, Ghia & Shin (1982)",
        "",
        f"Vorticity–streamfunction solver, {n}×{n} cells, marched to t = {flow.time:g} "
        f"(max |ω_t| = {flow.residual:.1e}). Max deviation {deviation:.4f} U "
        f"(tolerance {GHIA_TOLERANCE} U). Figure: `{png.name}`.",
        "",
        "| y | u Ghia | u physml | x | v Ghia | v physml |",
        "|---|---|---|---|---|---|",
    ]
    for row in zip(GHIA_Y, GHIA_U, u, GHIA_X, GHIA_V, v, strict=True):
        lines.append("| {:.4f} | {:.5f} | {:.5f} | {:.4f} | {:.5f} | {:.5f} |".format(*row))
    md = out_dir / "cavity_ghia.md"
    with atomic_path(md) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md


class LidDrivenCavity(Problem):
    """Impulsively started lid-driven cavity, 2-D incompressible Navier–Stokes (BOON, Saad et al. 2023).

    Parameters: ``lid_velocity`` U ∈ (0, 10] and ``reynolds`` Re = U L/ν ∈ [10, 1000] (L = 1, so
    ν = U/Re). BOON's case is Re = 100, U = 1; a dataset varies U (and optionally Re) per sample. At
    fixed Re the flow obeys u(x, t; U) = U û(x, U t) (Reynolds similarity), so varying U changes both the
    amplitude and the speed of the spin-up. Steps per unit time 1/dt = max(5 ν n², 2 U n), each O(n² log n),
    so a fast lid at low Re (large ν) on a fine grid is the slow corner of the parameter box. Accuracy falls
    with the cell Reynolds number Re/n: the default solve (≥ ``min_intervals`` = 100 cells, 108 for nx = 13)
    is about 0.004 U off the converged velocity at Re = 100 but about 0.056 U at Re = 1000 (estimated from
    refine 9 against 18 and 36, t = 0.5 and 2); above Re ≈ 200 raise ``min_intervals`` (second order: twice
    the cells, a quarter of the error, about 8× the time).
    """

    name = "cavity"
    family = "operator"
    parameters = (
        Parameter("lid_velocity", 0.0, 10.0, "speed U of the top wall (moves in +x)", inclusive=(False, True)),
        Parameter("reynolds", 10.0, 1000.0, "Reynolds number Re = U L / ν, L = 1 (explicit diffusion: cost ∝ 1/Re)"),
    )
    x_domain = (0.0, 1.0)
    t_domain = (0.0, 2.0)
    spatial_dims = 2
    boundary = "dirichlet"
    conservative = False
    nonnegative = False

    def __init__(self, min_intervals: int = 100) -> None:
        if int(min_intervals) != min_intervals or min_intervals < 1:
            raise ValueError(f"min_intervals must be an integer >= 1, got {min_intervals!r}")
        self.min_intervals = int(min_intervals)
        self._records: list[VerificationRecord] | None = None

    def solve(self, params: Mapping[str, float], x: np.ndarray, t: np.ndarray, *,
              refine: int | None = None) -> np.ndarray:
        """(u, v, ω)(t, y, x), float64 of shape ``(len(t), len(x), len(x), 3)``, axes (t, y, x, channel).

        ``x`` is the uniform grid linspace(0, 1, n+1) used for both axes (walls included); ``t`` is
        non-decreasing with t ≥ 0, and t = 0 gives the initial state: fluid at rest, u = U on the lid
        row, ω = −2U/h on the lid (Thom, h = 1/(n·refine) the solver's cell, so the walls' ω depends on
        ``refine``). ``refine`` > 1 solves on a grid refine times finer and samples
        it back at x (error O((h/refine)²)); by default (None) the smallest refine that gives at least
        ``min_intervals`` cells per side (100, the reference's 100 × 100 solve: a 12-cell grid solved as it is
        is 9-27 % off the converged velocity at t = 2). Walls carry the Dirichlet velocities of
        :meth:`boundary_data`; wall vorticity is Thom's, each corner the mean of its two wall neighbours.
        """
        p = self.check_params(params)
        n = _check_grid(x)
        times = _check_times(t)
        refine = max(1, -(-self.min_intervals // n)) if refine is None else refine
        if int(refine) != refine or refine < 1:
            raise ValueError(f"cavity refine = {refine!r} must be an integer ≥ 1")
        refine = int(refine)
        nf = n * refine
        speed = p["lid_velocity"]
        lid = np.full(nf + 1, speed)
        solver = VorticityStreamSolver(nf, speed / p["reynolds"], lambda _t: lid)
        dt_max = solver.max_dt(speed)
        w = np.zeros((nf - 1, nf - 1))
        out = np.empty((times.size, n + 1, n + 1, 3))
        t_now = 0.0
        for k, tk in enumerate(times):
            w = solver.advance(w, t_now, tk, dt_max)
            t_now = max(t_now, tk)
            out[k] = solver.fields(w, t_now)[::refine, ::refine]
        return out

    def boundary_data(self, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
        """Dirichlet wall velocity, shape ``(len(t), 4, 2)``: walls (bottom y=0, top y=1, left x=0,
        right x=1) × components (u, v); each value holds along its whole wall.

        The lid row y = 1 includes both top corners (u = U there); the left/right walls' data apply
        for 0 ≤ y < 1. On a grid, ``solve(...)[:, 0]``, ``[:, -1]``, ``[:, :-1, 0]`` and ``[:, :-1, -1]``
        equal these values exactly.
        """
        p = self.check_params(params)
        times = _check_times(t)
        out = np.zeros((times.size, 4, 2))
        out[:, 1, 0] = p["lid_velocity"]
        return out

    def verification(self) -> list[VerificationRecord]:
        """Manufactured-solution convergence (n = 32 → 64) and the steady Re = 100 Ghia benchmark."""
        if self._records is None:
            coarse, fine = manufactured_errors(32), manufactured_errors(64)
            reference = "manufactured ψ = (1 + t/2) sin²(πx) y² sin(πy), ν = 0.05, t = 0.5, with forcing"
            records = [
                VerificationRecord(
                    self.name,
                    f"{label} max error, vorticity–streamfunction n = 32 → 64",
                    reference,
                    error=fine[i],
                    order=float(np.log2(coarse[i] / fine[i])),
                    expected_order=2.0,
                )
                for i, label in enumerate(("velocity", "vorticity"))
            ]
            deviation, flow = ghia_deviation(GHIA_GRID)
            records.append(
                VerificationRecord(
                    self.name,
                    f"steady Re = 100 centreline u, v on {GHIA_GRID}² (t = {flow.time:g})",
                    "Ghia, Ghia & Shin 1982, Tables I–II",
                    error=deviation,
                    tolerance=GHIA_TOLERANCE,
                )
            )
            self._records = records
        return list(self._records)
