"""The predictive distribution every probabilistic model returns and every constraint consumes.

A Gaussian N(mean, Σ) over the n values of one time slice, with Σ either diagonal (``var``) or full
(``cov``); leading axes (functions, time slices, …) are batch axes. Mixtures of Gaussians (latent
samples of an ANP, members of an ensemble) are summarised by their first two moments (law of total
variance / covariance):

    μ = (1/S) Σ_s μ_s,   Σ = (1/S) Σ_s diag(σ_s²) + (1/S) Σ_s (μ_s − μ)(μ_s − μ)ᵀ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]

_SYMMETRY_RTOL = 1e-6


def _finite(name: str, x: object) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def sample_gaussian(mean: np.ndarray, cov: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws of N(mean, cov): mean (..., m); cov (..., m) diagonal or (..., m, m) full; returns (n, ..., m).

    Diagonal: μ + √v ⊙ ε. Full: μ + Σ^½ ε with Σ^½ = Q √Λ Qᵀ the symmetric square root of Σ = Q Λ Qᵀ (eigh;
    Λ clipped at 0), which also takes the singular posterior covariance of an exact (zero-noise)
    constraint: its samples satisfy G u = b up to about √ε (1e-9; the clipped eigenvalues' round-off enters
    through their square root), so project them onto {G u = b} where round-off is wanted
    (``physml.experiments.probconserv._final_slice_samples`` does). Σ^½ is a continuous function of Σ: for a Σ away from
    singular, round-off in Σ moves the draws by about round-off (near a singular Σ it is Hölder-½: 1e-13 in
    Σ moves them by about 1e-6). The factor Q √Λ alone is not continuous: among nearly equal eigenvalues
    eigh may return any rotation of Q, and a low-rank-plus-noise covariance (the ANP's) has many.
    """
    mu, c = _finite("mean", mean), _finite("cov", cov)
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    eps = rng.standard_normal((n,) + mu.shape)
    if c.shape == mu.shape:
        if np.any(c < 0):
            raise ValueError("cov (diagonal) must be ≥ 0")
        return mu + np.sqrt(c) * eps
    m = mu.shape[-1]
    if c.shape != mu.shape + (m,):
        raise ValueError(f"cov must have shape {mu.shape} (diagonal) or {mu.shape + (m,)} (full), got {c.shape}")
    lam, Q = np.linalg.eigh(0.5 * (c + np.swapaxes(c, -1, -2)))
    scale = float(np.max(np.abs(lam))) if lam.size else 0.0
    if np.any(lam < -1e-8 * max(scale, 1e-300)):
        raise ValueError("cov is not positive semi-definite (eigenvalue below −1e-8·max|λ|)")
    factor = (Q * np.sqrt(np.clip(lam, 0.0, None))[..., None, :]) @ np.swapaxes(Q, -1, -2)
    return mu + np.einsum("...ij,n...j->n...i", factor, eps)


def _xp_all_finite(a: Array) -> bool:
    return bool(torch.isfinite(a).all()) if isinstance(a, torch.Tensor) else bool(np.isfinite(a).all())


def _size(a: Array) -> int:
    return a.numel() if isinstance(a, torch.Tensor) else a.size


def _xp_min(a: Array) -> float:
    return float(a.min()) if _size(a) else 0.0


def _abs_max(a: Array) -> float:
    return float(abs(a).max()) if _size(a) else 0.0


def _diagonal(cov: Array) -> Array:
    if isinstance(cov, torch.Tensor):
        return torch.diagonal(cov, dim1=-2, dim2=-1)
    return np.diagonal(cov, axis1=-2, axis2=-1).copy()


@dataclass(frozen=True)
class Predictive:
    """Gaussian predictive: ``mean`` (..., n) with ``var`` (..., n) and optionally ``cov`` (..., n, n).

    Give ``var`` or ``cov`` (or both; then ``var`` must equal ``diag(cov)``). If only ``cov`` is given,
    ``var`` is its diagonal. Arrays are all numpy or all torch. Raises ValueError for NaN/inf,
    negative variance, mismatched shapes or a non-symmetric covariance.
    """

    mean: Array
    var: Array | None = None
    cov: Array | None = None

    def __post_init__(self) -> None:
        arrays = [a for a in (self.mean, self.var, self.cov) if a is not None]
        kinds = {isinstance(a, torch.Tensor) for a in arrays}
        if not all(isinstance(a, (np.ndarray, torch.Tensor)) for a in arrays) or len(kinds) != 1:
            raise ValueError("mean, var and cov must all be numpy arrays or all torch tensors")
        if self.mean.ndim < 1:
            raise ValueError(f"mean must have shape (..., n), got {tuple(self.mean.shape)}")
        if not _xp_all_finite(self.mean):
            raise ValueError("mean contains NaN or inf")
        if self.var is None and self.cov is None:
            raise ValueError("give var (..., n) or cov (..., n, n)")
        if self.cov is not None:
            n = self.mean.shape[-1]
            if tuple(self.cov.shape) != tuple(self.mean.shape) + (n,):
                raise ValueError(f"cov must have shape {tuple(self.mean.shape) + (n,)}, got {tuple(self.cov.shape)}")
            if not _xp_all_finite(self.cov):
                raise ValueError("cov contains NaN or inf")
            transposed = self.cov.transpose(-1, -2) if isinstance(self.cov, torch.Tensor) else np.swapaxes(self.cov, -1, -2)
            asym = self.cov - transposed
            scale = _abs_max(self.cov)
            if _abs_max(asym) > _SYMMETRY_RTOL * max(scale, 1e-300):
                raise ValueError("cov must be symmetric (max |Σ − Σᵀ| too large)")
            diag = _diagonal(self.cov)
            if self.var is not None and tuple(self.var.shape) != tuple(self.mean.shape):
                raise ValueError(f"var must have the shape of mean {tuple(self.mean.shape)}, got {tuple(self.var.shape)}")
            if self.var is None:
                object.__setattr__(self, "var", diag)
            elif _abs_max(self.var - diag) > _SYMMETRY_RTOL * max(scale, 1e-300):
                raise ValueError("var must equal the diagonal of cov")
        if tuple(self.var.shape) != tuple(self.mean.shape):
            raise ValueError(f"var must have the shape of mean {tuple(self.mean.shape)}, got {tuple(self.var.shape)}")
        if not _xp_all_finite(self.var):
            raise ValueError("var contains NaN or inf")
        if _xp_min(self.var) < 0:
            raise ValueError(f"var must be >= 0 everywhere, got minimum {_xp_min(self.var):.3g}")

    @property
    def std(self) -> Array:
        """Marginal standard deviation sqrt(var), shape (..., n)."""
        return self.var.sqrt() if isinstance(self.var, torch.Tensor) else np.sqrt(self.var)

    @property
    def is_torch(self) -> bool:
        return isinstance(self.mean, torch.Tensor)

    def to_numpy(self) -> Predictive:
        """The same distribution with float64 numpy arrays."""

        def conv(a: Array | None) -> np.ndarray | None:
            if a is None:
                return None
            return a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, np.float64)

        return Predictive(conv(self.mean), conv(self.var), conv(self.cov))

    def to_torch(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64) -> Predictive:
        """The same distribution as torch tensors on ``device``."""

        def conv(a: Array | None) -> torch.Tensor | None:
            if a is None:
                return None
            return torch.as_tensor(a).to(device=device, dtype=dtype)

        return Predictive(conv(self.mean), conv(self.var), conv(self.cov))

    def sample(self, n_samples: int, seed: int = 0) -> np.ndarray:
        """Draws u ~ N(mean, Σ) as a float64 array (n_samples, ..., n), through
        :func:`sample_gaussian` (full Σ: its symmetric square root, continuous in Σ)."""
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        p = self.to_numpy()
        return sample_gaussian(p.mean, p.var if p.cov is None else p.cov, n_samples, np.random.default_rng(seed))


def mixture(means: torch.Tensor, variances: torch.Tensor | None, full_cov: bool = False,
            within_cov: torch.Tensor | None = None) -> Predictive:
    """Moment-matched Gaussian of an equal-weight mixture over axis 0 (law of total variance), float64.

    ``means``, ``variances``: (S, ..., n) — S components (latent samples, ensemble members), each
    N(μ_s, diag(σ_s²)). Returns mean (1/S) Σ μ_s and var (1/S) Σ σ_s² + (1/S) Σ (μ_s − μ)²; with
    ``full_cov`` also cov (..., n, n) = (1/S) Σ diag(σ_s²) + (1/S) Σ (μ_s − μ)(μ_s − μ)ᵀ.

    Components with full covariances Σ_s (e.g. each conditioned on a constraint) give ``variances=None`` and
    ``within_cov`` (..., n, n) = (1/S) Σ_s Σ_s, summed by the caller (S full covariances need not be held at
    once); it takes the place of diag((1/S) Σ σ_s²) above.
    """
    if (variances is None) == (within_cov is None):
        raise ValueError("give the components' variances (S, ..., n) or their mean covariance within_cov (..., n, n)")
    if means.dim() < 2 or (variances is not None and means.shape != variances.shape):
        raise ValueError(f"means and variances must share a shape (S, ..., n); got {tuple(means.shape)}, "
                         f"{None if variances is None else tuple(variances.shape)}")
    if within_cov is not None and tuple(within_cov.shape) != tuple(means.shape[1:]) + (means.shape[-1],):
        raise ValueError(f"within_cov must have shape {tuple(means.shape[1:]) + (means.shape[-1],)}, "
                         f"got {tuple(within_cov.shape)}")
    means = means.double()
    mean = means.mean(0)
    dev = means - mean
    if within_cov is not None:
        within = within_cov.double()
        aleatoric = torch.diagonal(within, dim1=-2, dim2=-1)
    else:
        aleatoric = variances.double().mean(0)
    var = aleatoric + (dev**2).mean(0)
    if not full_cov:
        return Predictive(mean, var)
    cov = torch.einsum("s...i,s...j->...ij", dev, dev) / means.shape[0]
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    cov = cov + (0.5 * (within + within.transpose(-1, -2)) if within_cov is not None else torch.diag_embed(aleatoric))
    return Predictive(mean, torch.diagonal(cov, dim1=-2, dim2=-1).clone(), cov)
