"""A known lower bound u ≥ ℓ (a density, a temperature above absolute zero) beside the conservation law gᵀu = b,
for Gaussians with a diagonal covariance (an ANP's latent draws, an ensemble's members).

The most probable u of N(μ, diag v) on the feasible set,

    minimise Σ_j (u_j − μ_j)² / v_j   subject to   gᵀu = b,  u ≥ ℓ      (g ≥ 0, one row per time slice),

has the KKT solution u_j = max(ℓ, μ_j − λ v_j g_j), the one multiplier λ fixed by gᵀu = b: φ(λ) = gᵀu(λ) is
continuous, non-increasing and linear between the breakpoints λ_j = (μ_j − ℓ) / (v_j g_j), below which point j
is free and above which it sits at ℓ. The points at the bound there (the active set A) are the ones the
Gaussian conditioned on gᵀu = b *and* u_A = ℓ holds at ℓ: so :func:`clamp_to_bound` sets them to mean ℓ and
variance 0, and the one shared update (:func:`physml.constraints.probconserv`) conditions the rest on the mass.
Its posterior mean is that MAP (u ≥ ℓ, gᵀu = b to round-off), its covariance the Gaussian of the free directions
with none at the held points (:func:`physml.experiments.probconserv.conditioned_mixture` gives those their prior
variance back). Where no point reaches the bound, A is empty and the result is ProbConserv's update itself.
"""

from __future__ import annotations

import torch

from physml.constraints.gaussian import probconserv

#: Relative slack of the mass test b ≥ the least mass u ≥ ℓ can have (below it no u ≥ ℓ has the mass).
_FEASIBLE_RTOL = 1e-12
#: Slices (rows of n points) handled at once: bounds the temporaries (about ten arrays of rows × n float64).
_CHUNK_ROWS = 1 << 14


def clamp_to_bound(mean: torch.Tensor, var: torch.Tensor, G: torch.Tensor, b: torch.Tensor,
                   lower: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian to condition on gᵀu = b so that the posterior mean is the MAP on {gᵀu = b, u ≥ ``lower``}:
    ``mean`` with the active set's entries set to ``lower`` and ``var`` with 0 there (module docstring).

    Shapes: mean, var (..., n) (var ≥ 0, a diagonal covariance); G (..., 1, n) with entries ≥ 0; b (..., 1);
    leading axes broadcast (e.g. S components × B functions × nt slices against G (B, nt, 1, n)). Returns
    float64 tensors of the broadcast shape (..., n). ValueError if G has more than one row or a negative
    entry, or a slice's mass b is below the least mass a u ≥ ℓ can have there (ℓ g at the points that can move,
    g max(μ, ℓ) at those that cannot: v g = 0).

    The active set is found exactly: the breakpoints sorted in decreasing order, the slice's λ solved on
    each segment where the first k points are free, the segment whose λ lies in it kept (one does: φ is
    monotone; where round-off leaves none, the one it misses least); a point is free where its breakpoint is
    above that λ. A slice where no point can move keeps its points above ℓ and holds the rest. Slices are
    handled :data:`_CHUNK_ROWS` at a time, so the temporaries stay small at the paper's sizes (100 draws ×
    16 functions × 201 slices of 201 points).
    """
    mean, var = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(var, dtype=torch.float64)
    G, b = torch.as_tensor(G, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if G.dim() < 2 or G.shape[-2] != 1 or b.shape[-1:] != (1,):
        raise ValueError(f"G must be (..., 1, n) and b (..., 1): one row per slice; got {tuple(G.shape)}, "
                         f"{tuple(b.shape)}")
    if bool((G < 0).any()):
        raise ValueError("G must be non-negative (quadrature weights) for the bound's active set")
    if bool((var < 0).any()):
        raise ValueError("var has negative variances; variances must be ≥ 0")
    mean, var, g = torch.broadcast_tensors(mean, var, G[..., 0, :])
    shape, n = mean.shape, mean.shape[-1]
    mass = b[..., 0].expand(shape[:-1]).reshape(-1)
    mean, var, g = (a.reshape(-1, n) for a in (mean, var, g))
    held_mean, held_var = torch.empty_like(mean), torch.empty_like(var)
    for lo in range(0, mean.shape[0], _CHUNK_ROWS):
        rows = slice(lo, lo + _CHUNK_ROWS)
        held_mean[rows], held_var[rows] = _clamp_rows(mean[rows], var[rows], g[rows], mass[rows], lower)
    return held_mean.reshape(shape), held_var.reshape(shape)


def _clamp_rows(mean: torch.Tensor, var: torch.Tensor, g: torch.Tensor, mass: torch.Tensor,
                lower: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`clamp_to_bound` on rows: mean, var, g (R, n), mass (R,)."""
    slope = var * g
    movable = slope > 0
    least = torch.where(movable, lower * g, g * mean.clamp(min=lower)).sum(-1)
    scale = (g * (mean.abs() + abs(lower))).sum(-1)
    short = mass < least - _FEASIBLE_RTOL * scale
    if bool(short.any()):
        raise ValueError(f"a slice's mass b is below the least mass a u ≥ ℓ can have (ℓ = {lower}): "
                         f"b = {float(mass[short][0]):.6g}, least {float(least[short][0]):.6g}")
    # λ_j: free below it; a point that cannot move (v g = 0) is free for ever if above ℓ, else at ℓ for ever
    breaks = torch.where(movable, (mean - lower) / slope.where(movable, 1.0),
                         torch.where(mean >= lower, torch.inf, -torch.inf))
    sorted_breaks, order = torch.sort(breaks, dim=-1, descending=True)
    gs = g.gather(-1, order)
    c = (gs * mean.gather(-1, order)).cumsum_(-1)  # Σ over the first k (free) points of g_j μ_j
    a = (gs * slope.gather(-1, order)).cumsum_(-1)  # … of g_j² v_j
    g_free = gs.cumsum_(-1)
    del gs, order
    # on the segment with the first k = 1..n points free: C_k − λ A_k + ℓ (Σ g − G_k) = b
    lam = c.add_(g_free.neg_().add_(g.sum(-1, keepdim=True)).mul_(lower)).sub_(mass.unsqueeze(-1))
    lam.div_(a.where(a > 0, 1.0))
    del c, g_free
    above = torch.cat([sorted_breaks[..., 1:], sorted_breaks.new_full((mean.shape[0], 1), -torch.inf)], dim=-1)
    miss = (lam - sorted_breaks).clamp_(min=0).add_((above - lam).clamp_(min=0))  # 0 on the segment λ solves
    del above, sorted_breaks
    segment = a > 0
    miss.masked_fill_(~segment, torch.inf)
    lam_star = lam.gather(-1, miss.argmin(-1, keepdim=True))  # the segment that holds λ (first of ties)
    free = torch.where(segment.any(-1, keepdim=True), breaks > lam_star, mean >= lower)
    return torch.where(free, mean, lower), torch.where(free, var, 0.0)


def most_probable_on_bound(mean: torch.Tensor, var: torch.Tensor, G: torch.Tensor, b: torch.Tensor,
                           lower: float = 0.0) -> torch.Tensor:
    """The most probable u of N(μ, diag v) on {gᵀu = b, u ≥ ``lower``}: u_j = max(ℓ, μ_j − λ v_j g_j) (module
    docstring), as :func:`clamp_to_bound` (the points at ℓ) followed by the exact update of the rest
    (:func:`physml.constraints.probconserv`, no noise): the mean a component of ``probconserv_nonnegative`` gets.
    gᵀu = b to round-off; u = ℓ exactly at the held points and above it, up to round-off, elsewhere.

    Shapes as :func:`clamp_to_bound`: mean, var (..., n); G (..., 1, n); b (..., 1), leading axes broadcast.
    Returns a float64 tensor (..., n).
    """
    held_mean, held_var = clamp_to_bound(mean, var, G, b, lower)
    u, _ = probconserv(held_mean, held_var, torch.as_tensor(G, dtype=torch.float64),
                       torch.as_tensor(b, dtype=torch.float64), noise_var=0.0)
    return u


__all__ = ["clamp_to_bound", "most_probable_on_bound"]
