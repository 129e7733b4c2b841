"""Boundary conditions as linear constraints G u = b, for the same exact conditioning as conservation.

A Dirichlet value u(t, x_B) = g(t) at a grid point x_B is the row G = e_B (a selector), b = g(t); a
periodic match u(x_L) = u(x_R) is G = e_1 − e_m, b = 0. Conditioning the predictive Gaussian on them
with :func:`physml.constraints.condition` (zero noise) makes the posterior mean take the boundary values
exactly and removes the variance there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from physml.pdes.base import Problem


def value_constraint(n: int, indices: Sequence[int], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows that pin u[indices] to ``values``: G (..., k, n) with G[..., r, indices[r]] = 1, b = values (..., k).

    ``values`` has shape (k,) or (..., k) with k = len(indices); indices must be distinct and in [0, n).
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    if np.any(idx < 0) or np.any(idx >= n):
        raise ValueError(f"indices must lie in [0, {n}), got {idx.tolist()}")
    if np.unique(idx).size != idx.size:
        raise ValueError(f"indices must be distinct (repeated rows make G Σ Gᵀ singular), got {idx.tolist()}")
    b = np.asarray(values, dtype=np.float64)
    if b.ndim < 1 or b.shape[-1] != idx.size:
        raise ValueError(f"values must have shape (..., {idx.size}), got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("values contains NaN or inf")
    G = np.zeros((idx.size, n))
    G[np.arange(idx.size), idx] = 1.0
    return np.broadcast_to(G, b.shape[:-1] + G.shape).copy(), b.copy()


def _boundary_indices(problem: Problem, x: np.ndarray, atol: float) -> tuple[int, int]:
    lo, hi = problem.x_domain
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"target_x must have shape (m,) with m ≥ 2, got {x.shape}")
    if abs(x[0] - lo) > atol or abs(x[-1] - hi) > atol:
        raise ValueError(
            f"target_x must start at x_L = {lo:g} and end at x_R = {hi:g} (within {atol:g}) to carry boundary "
            f"values; got x[0] = {x[0]:g}, x[-1] = {x[-1]:g}"
        )
    return 0, x.size - 1


def dirichlet_constraint(
    problem: Problem,
    params: Mapping[str, float],
    target_t: np.ndarray,
    target_x: np.ndarray,
    atol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray]:
    """Dirichlet values u(t, x_L) = g_L(t), u(t, x_R) = g_R(t) on a grid whose ends are the boundary.

    ``target_t``: (nt,); ``target_x``: (m,) sorted with x[0] = x_L and x[-1] = x_R. Returns G (nt, 2, m)
    selecting the first and last entries and b (nt, 2) = ``problem.boundary_data(params, t)``.
    """
    if problem.boundary != "dirichlet":
        raise ValueError(f"problem {problem.name!r} has boundary {problem.boundary!r}, not 'dirichlet'")
    t = np.asarray(target_t, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"target_t must have shape (nt,) with nt ≥ 1, got {t.shape}")
    x = np.asarray(target_x, dtype=np.float64)
    i_left, i_right = _boundary_indices(problem, x, atol)
    values = np.asarray(problem.boundary_data(params, t), dtype=np.float64)
    if values.shape != (t.size, 2):
        raise ValueError(f"{problem.name}.boundary_data returned shape {values.shape}, expected ({t.size}, 2)")
    return value_constraint(x.size, (i_left, i_right), values)


def periodic_constraint(n_t: int, target_x: np.ndarray, domain: tuple[float, float], atol: float = 1e-12) -> tuple[
    np.ndarray, np.ndarray
]:
    """u(t, x_L) = u(t, x_R) for a grid (m,) containing both ends: G (n_t, 1, m) = e_1 − e_m, b = 0 (n_t, 1)."""
    x = np.asarray(target_x, dtype=np.float64)
    lo, hi = domain
    if x.ndim != 1 or x.size < 2 or abs(x[0] - lo) > atol or abs(x[-1] - hi) > atol:
        raise ValueError(f"target_x must have shape (m,) with x[0] = {lo:g} and x[-1] = {hi:g}")
    if n_t < 1:
        raise ValueError(f"n_t must be ≥ 1, got {n_t}")
    G = np.zeros((n_t, 1, x.size))
    G[:, 0, 0], G[:, 0, -1] = 1.0, -1.0
    return G, np.zeros((n_t, 1))


def stack_constraints(*constraints: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate several (G, b) along the constraint axis: G (..., Σk, n), b (..., Σk); batch axes broadcast."""
    if not constraints:
        raise ValueError("stack_constraints needs at least one (G, b) pair")
    Gs = [np.asarray(G, dtype=np.float64) for G, _ in constraints]
    bs = [np.asarray(b, dtype=np.float64) for _, b in constraints]
    n = {G.shape[-1] for G in Gs}
    if len(n) != 1:
        raise ValueError(f"all G must have the same number of columns n, got {sorted(n)}")
    batch = np.broadcast_shapes(*(G.shape[:-2] for G in Gs), *(b.shape[:-1] for b in bs))
    G = np.concatenate([np.broadcast_to(G, batch + G.shape[-2:]) for G in Gs], axis=-2)
    b = np.concatenate([np.broadcast_to(b, batch + b.shape[-1:]) for b in bs], axis=-1)
    return G, b
