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
(the Laplace approximation at the MAP). Where no point reaches the bound, A is empty and the result is
ProbConserv's update itself.
"""

from __future__ import annotations

import torch

#: Relative slack of the mass test b ≥ ℓ Σ_j g_j (below it no u ≥ ℓ has the mass).
_FEASIBLE_RTOL = 1e-12


def clamp_to_bound(mean: torch.Tensor, var: torch.Tensor, G: torch.Tensor, b: torch.Tensor,
                   lower: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian to condition on gᵀu = b so that the posterior mean is the MAP on {gᵀu = b, u ≥ ``lower``}:
    ``mean`` with the active set's entries set to ``lower`` and ``var`` with 0 there (module docstring).

    Shapes: mean, var (..., n) (var ≥ 0, a diagonal covariance); G (..., 1, n) with entries ≥ 0; b (..., 1);
    leading axes broadcast (e.g. S components × B functions × nt slices against G (B, nt, 1, n)). Returns
    float64 tensors of the broadcast shape (..., n). ValueError if G has more than one row or a negative
    entry, or a slice's mass b is below ℓ Σ_j g_j, which no u ≥ ℓ reaches.

    The active set is found exactly: the breakpoints sorted in decreasing order, the slice's λ solved on
    each segment where the first k points are free, the segment whose λ lies in it kept (one does: φ is
    monotone; where round-off leaves none, the one it misses least).
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
    g, mass = G[..., 0, :], b[..., 0]
    mean, var, g = torch.broadcast_tensors(mean, var, g)
    mass = mass.expand(mean.shape[:-1])
    floor = lower * g.sum(-1)
    short = mass < floor - _FEASIBLE_RTOL * torch.maximum(floor.abs(), mass.abs())
    if bool(short.any()):
        raise ValueError(f"a slice's mass b is below ℓ Σ g (ℓ = {lower}), which no u ≥ ℓ reaches: "
                         f"b = {float(mass[short][0]):.6g}, ℓ Σ g = {float(floor[short][0]):.6g}")
    slope = var * g
    # λ_j: free below it; a point that cannot move (v g = 0) is free for ever if above ℓ, else at ℓ for ever
    breaks = torch.where(slope > 0, (mean - lower) / slope.where(slope > 0, torch.ones_like(slope)),
                         torch.where(mean >= lower, torch.inf, -torch.inf))
    order = torch.argsort(breaks, dim=-1, descending=True)
    sorted_breaks = breaks.gather(-1, order)
    c = (g * mean).gather(-1, order).cumsum(-1)  # Σ over the first k (free) points of g_j μ_j
    a = (g * slope).gather(-1, order).cumsum(-1)  # … of g_j² v_j
    g_free = g.gather(-1, order).cumsum(-1)
    # on the segment with the first k = 1..n points free: C_k − λ A_k + ℓ (Σ g − G_k) = b
    lam = (c + lower * (g.sum(-1, keepdim=True) - g_free) - mass.unsqueeze(-1)) / a.where(a > 0, torch.ones_like(a))
    below = sorted_breaks  # λ < λ_(k) keeps the k-th point free
    above = torch.cat([sorted_breaks[..., 1:], torch.full_like(sorted_breaks[..., :1], -torch.inf)], dim=-1)
    miss = torch.relu(lam - below) + torch.relu(above - lam)  # 0 on the segment λ solves
    miss = torch.where(a > 0, miss, torch.inf)
    free_count = miss.argmin(-1, keepdim=True) + 1  # the segment that holds λ (first of ties)
    free_sorted = torch.arange(mean.shape[-1], device=mean.device) < free_count
    free = torch.zeros_like(free_sorted).scatter(-1, order, free_sorted)
    return torch.where(free, mean, torch.full_like(mean, lower)), torch.where(free, var, torch.zeros_like(var))


__all__ = ["clamp_to_bound"]
