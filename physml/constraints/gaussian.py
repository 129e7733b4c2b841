"""Exact conditioning of a Gaussian on linear constraints — the one update every linear constraint uses.

Given a predictive distribution u ~ N(μ, Σ) and observations of linear functionals G u = b (optionally
with Gaussian noise N(0, σ² I)), the posterior is Gaussian with

    μ' = μ − Σ Gᵀ (G Σ Gᵀ + σ² I)⁻¹ (G μ − b)
    Σ' = Σ − Σ Gᵀ (G Σ Gᵀ + σ² I)⁻¹ G Σ

(standard Gaussian conditioning; ProbConserv, Hansen et al. ICML 2023, Eq. 5 with σ_G = σ).
It is computed with the Cholesky factor L of the k × k matrix S = G Σ Gᵀ + σ² I and W = L⁻¹ G Σ:

    μ' = μ − Wᵀ L⁻¹ (G μ − b),   Σ' = Σ − Wᵀ W.

For a diagonal Σ = diag(v) nothing of size n × n is formed: G Σ = G ⊙ v, and diag(Σ') = v − Σ_k W²_k,
so one update costs O(k² n) per slice instead of the O(n³) of a dense formulation. A full Σ' is
formed in the Joseph form (I − KG) Σ (I − KG)ᵀ + σ² K Kᵀ, K = Σ Gᵀ S⁻¹, which keeps it positive
semi-definite to round-off when S is ill-conditioned; it costs O(k n²).
"""

from __future__ import annotations

import math
import warnings
from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

_SINGULAR_RTOL = 1e-13
"""S = G Σ Gᵀ + σ² I is declared singular when a squared Cholesky pivot is ≤ this × its own diagonal entry of
S: the test does not depend on the units of G's rows (scaling row i scales S_ii and that pivot alike)."""
_NEGATIVE_RTOL = 1e-4
"""A full Σ' whose variances go below −this × the largest prior variance means Σ was not positive
semi-definite. Round-off stays far above it: the Joseph form's own near 1e-15; a low-rank Σ rounded through
float32 (eps 6e-8), whose constrained directions the update removes, leaves up to about n·eps ≈ 1e-5. An
indefinite Σ gives negatives of order 1 (Σ = [[1, 2], [2, 1]] conditioned on u₁ = 0: −3)."""
_TINY_PIVOT = torch.finfo(torch.float64).tiny / _SINGULAR_RTOL
"""Below this a diagonal entry of S is refused as zero: _SINGULAR_RTOL × it would underflow, and the
relative pivot test would pass any positive pivot."""
_SYMMETRY_RTOL = 1e-8
"""A full covariance must satisfy max|Σ − Σᵀ| ≤ tol × max variance (max|Σ_ij| ≤ max Σ_ii), tol = max(this,
16 ε) with ε the machine epsilon of the dtype the caller passed: a float32 Σ built as A Aᵀ is asymmetric by a few
float32 ε (about 1e-7), which is round-off, not an error (:func:`_symmetry_tolerance`)."""


def _as_f64(name: str, value: object, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=torch.float64)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real numeric array or tensor, got {type(value).__name__}") from exc
    if arr.flags.writeable:
        return torch.from_numpy(arr).to(device)
    # a read-only buffer (e.g. np.broadcast_to) is shared, not copied (a copy would materialise the broadcast);
    # nothing here writes into an input, so torch's warning about writing through it does not apply
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(arr).to(device)


def _check_finite(name: str, x: torch.Tensor) -> None:
    # A finite sum proves every entry finite (one pass); only an overflowing sum needs the full check.
    if x.numel() and bool(torch.isfinite(x.sum())):
        return
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; all entries must be finite")


_BLOCK = 256
"""Row-block size for X ± Xᵀ: a blocked transpose is ~3× faster than torch's strided one at n ≥ 1000."""


def _sym_blocks(X: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs (X[..., rows, :], X[..., :, rows]ᵀ) over row blocks of a (..., n, n) tensor."""
    n = X.shape[-1]
    return [(X[..., i : i + _BLOCK, :], X[..., :, i : i + _BLOCK].mT) for i in range(0, n, _BLOCK)]


def _max_asymmetry(X: torch.Tensor) -> float:
    """max |X − Xᵀ| over all batch entries."""
    return max(float(torch.sub(a, bt).abs_().amax()) for a, bt in _sym_blocks(X)) if X.numel() else 0.0


def _symmetry_tolerance(given: object) -> float:
    """The relative symmetry tolerance for a covariance passed as ``given``: max(``_SYMMETRY_RTOL``, 16 ε), ε the
    machine epsilon of its floating dtype (float64 when it has none)."""
    dtype = getattr(given, "dtype", None)
    if isinstance(dtype, torch.dtype):
        eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    else:
        eps = float(np.finfo(dtype).eps) if dtype is not None and np.issubdtype(dtype, np.floating) else 0.0
    return max(_SYMMETRY_RTOL, 16.0 * eps)


def _check_symmetric(name: str, cov: torch.Tensor, given: object = None) -> None:
    """ValueError unless the full covariance ``cov`` (..., n, n) is symmetric to :func:`_symmetry_tolerance` of
    the caller's ``given`` array times its largest variance (max|Σ_ij| ≤ max_i Σ_ii for a covariance, so the
    largest variance is the scale)."""
    scale = float(torch.diagonal(cov, dim1=-2, dim2=-1).amax()) if cov.numel() else 0.0
    asym = _max_asymmetry(cov)
    tol = _symmetry_tolerance(given)
    if asym > tol * scale:
        raise ValueError(f"{name} must be symmetric: max|Σ − Σᵀ| = {asym:.3g} > {tol:.3g} · max variance")


def _symmetrize(X: torch.Tensor) -> torch.Tensor:
    """(X + Xᵀ) / 2, built row block by row block."""
    parts = [torch.add(a, bt).mul_(0.5) for a, bt in _sym_blocks(X)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)


def _batch_index(flat: int, batch_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, batch_shape)) if batch_shape else ()


def condition(
    mean: ArrayLike,
    cov: ArrayLike,
    G: ArrayLike,
    b: ArrayLike,
    noise_var: float | ArrayLike = 0.0,
    full_cov: bool = False,
    keep_dtype: bool = False,
    factor: bool = False,
) -> tuple[ArrayLike, ArrayLike]:
    """Condition N(mean, cov) on G u = b + ε, ε ~ N(0, noise_var · I); return (posterior mean, posterior cov).

    μ' = μ − Σ Gᵀ (G Σ Gᵀ + σ² I)⁻¹ (G μ − b),  Σ' = Σ − Σ Gᵀ (G Σ Gᵀ + σ² I)⁻¹ G Σ
    (ProbConserv, Hansen et al. 2023, Eq. 5). With ``noise_var = 0`` the posterior mean satisfies G μ' = b
    to round-off and Σ' has zero variance along the constrained directions.

    Shapes (leading batch axes ``...`` — e.g. functions × time slices — broadcast between arguments):

    - ``mean``: (..., n)
    - ``cov``: (..., n, n) a full symmetric covariance, or (..., n) the diagonal (variances). Which one is
      read from the number of axes: one more than ``mean`` is full, as many as ``mean`` is diagonal. So a
      full covariance shared by a batch of means carries the batch axes (``cov[None]`` or
      ``expand``): an (n, n) array with a (B, n) mean is B rows of variances.
    - ``G``: (..., k, n); ``b``: (..., k)
    - ``noise_var``: a scalar or (..., k), ≥ 0

    Returns ``(mean', cov')`` with mean' of shape (..., n); cov' is (..., n, n) for a full input or
    ``full_cov=True``, else the (..., n) diagonal of Σ' (round-off negatives clipped to 0). The result is
    a NumPy array if ``mean`` is one, otherwise a tensor on ``mean``'s device (differentiable). The
    computation runs in float64; ``keep_dtype=True`` casts the outputs back to ``mean``'s dtype.

    ``factor=True`` (diagonal ``cov`` only) returns ``(mean', W)`` instead, W (..., k, n) = L⁻¹ G Σ with L the
    Cholesky factor of G Σ Gᵀ + σ² I, so that Σ' = diag(cov) − Wᵀ W: the update as a rank-k downdate, for callers that combine many conditioned
    Gaussians (a mixture's components) in O(k n²) each instead of forming every n × n Σ'.

    Σ' and the gain Σ Gᵀ S⁻¹ depend on ``cov``, ``G`` and ``noise_var`` only, so they are computed once per
    entry of *their* broadcast batch: batch axes that only ``mean`` or ``b`` carry (e.g. S draws of the
    prior conditioned pathwise by Matheron's rule, u' = u − Σ Gᵀ S⁻¹ (G u − b), with ``cov`` of shape
    (..., 1, n, n)) cost O(k n) per entry, and along them cov' is a broadcast view (stride 0, read-only
    for NumPy), not S copies.

    Raises ValueError for non-finite inputs, negative variances or noise, a non-symmetric full
    covariance, inconsistent shapes, a singular or indefinite G Σ Gᵀ + σ² I (naming the batch index), and a full covariance that is not
    positive semi-definite where the update shows it.
    """
    return _condition(mean, cov, G, b, noise_var, full_cov, keep_dtype, cov_name="cov", factor=factor)


def _condition(mean: ArrayLike, cov: ArrayLike, G: ArrayLike, b: ArrayLike, noise_var: float | ArrayLike,
               full_cov: bool, keep_dtype: bool, cov_name: str, factor: bool = False) -> tuple[ArrayLike, ArrayLike]:
    """:func:`condition`, its messages naming the covariance ``cov_name`` (the caller's argument)."""
    as_numpy = not isinstance(mean, torch.Tensor)
    device = mean.device if isinstance(mean, torch.Tensor) else torch.device("cpu")
    out_dtype = None
    if keep_dtype:  # only a floating dtype is kept: an integer mean' would be truncated off the constraint
        dtype = mean.dtype if isinstance(mean, (np.ndarray, torch.Tensor)) else np.asarray(mean).dtype
        floating = dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(dtype, np.floating)
        out_dtype = dtype if floating else None

    mu = _as_f64("mean", mean, device)
    S0 = _as_f64(cov_name, cov, device)
    Gt = _as_f64("G", G, device)
    bt = _as_f64("b", b, device)
    sig = _as_f64("noise_var", noise_var, device)

    if mu.ndim < 1:
        raise ValueError(f"mean must have shape (..., n), got shape {tuple(mu.shape)}")
    n = mu.shape[-1]
    if Gt.ndim < 2 or Gt.shape[-1] != n:
        raise ValueError(f"G must have shape (..., k, n) with n = {n} (mean's last axis), got {tuple(Gt.shape)}")
    k = Gt.shape[-2]
    if bt.ndim < 1 or bt.shape[-1] != k:
        raise ValueError(f"b must have shape (..., k) with k = {k} (G's rows), got {tuple(bt.shape)}")
    if S0.ndim >= 2 and S0.shape[-2:] == (n, n) and S0.ndim == mu.ndim + 1:
        diagonal = False
    elif S0.ndim >= 1 and S0.shape[-1] == n and S0.ndim == mu.ndim:
        diagonal = True
    else:
        raise ValueError(
            f"{cov_name} must have shape (..., {n}) (diagonal) or (..., {n}, {n}) (full) matching mean's "
            f"{tuple(mu.shape)}, got {tuple(S0.shape)}"
        )
    if sig.ndim > 0 and sig.shape[-1] not in (1, k):
        raise ValueError(f"noise_var must be a scalar or have shape (..., k) with k = {k}, got {tuple(sig.shape)}")
    cov_batch = S0.shape[:-1] if diagonal else S0.shape[:-2]
    try:
        batch = torch.broadcast_shapes(mu.shape[:-1], cov_batch, Gt.shape[:-2], bt.shape[:-1], sig.shape[:-1])
        gain_batch = torch.broadcast_shapes(cov_batch, Gt.shape[:-2], sig.shape[:-1])  # what Σ' depends on
    except RuntimeError as exc:
        shared_full = diagonal and S0.ndim >= 2 and S0.shape[-2] == n
        hint = (f"; {cov_name} {tuple(S0.shape)} has as many axes as mean, so it is read as variances: a full "
                f"covariance shared by the batch needs its batch axes ({cov_name}[None] or expand)"
                if shared_full else "")
        raise ValueError(
            f"leading (batch) axes do not broadcast: mean {tuple(mu.shape[:-1])}, {cov_name} {tuple(cov_batch)}, "
            f"G {tuple(Gt.shape[:-2])}, b {tuple(bt.shape[:-1])}, noise_var {tuple(sig.shape[:-1])}{hint}"
        ) from exc

    for name, x in (("mean", mu), (cov_name, S0), ("G", Gt), ("b", bt), ("noise_var", sig)):
        _check_finite(name, x)
    if bool((sig < 0).any()):
        raise ValueError("noise_var must be ≥ 0 (a variance)")
    variances = S0 if diagonal else torch.diagonal(S0, dim1=-2, dim2=-1)
    if bool((variances < 0).any()):
        raise ValueError(f"{cov_name} has negative variances; variances must be ≥ 0")
    if not diagonal:
        _check_symmetric(cov_name, S0, cov)
    if factor and (not diagonal or full_cov):
        raise ValueError(f"factor=True takes a diagonal {cov_name} (..., n) and full_cov=False")

    mu = mu.expand(*batch, n)
    bt = bt.expand(*batch, k)
    Gt = Gt.expand(*gain_batch, k, n)

    if k == 0:
        new_mu = mu.clone()
        if factor:
            return _finish(new_mu, Gt.new_zeros((*gain_batch, 0, n)), (*batch, 0, n), as_numpy, out_dtype)
        if diagonal:
            v = S0.expand(*gain_batch, n)
            new_cov = torch.diag_embed(v) if full_cov else v.clone()
        else:
            new_cov = S0.expand(*gain_batch, n, n).clone()
        return _finish(new_mu, new_cov, (*batch, *new_cov.shape[len(gain_batch):]), as_numpy, out_dtype)

    if diagonal:
        v = S0.expand(*gain_batch, n)
        A = Gt * v.unsqueeze(-2)  # G Σ, (..., k, n)
    else:
        S0 = S0.expand(*gain_batch, n, n)
        A = Gt @ S0  # G Σ, (..., k, n)
    S = A @ Gt.mT  # G Σ Gᵀ, (..., k, k)
    # a scalar noise_var stays a tensor here (not float()), so that its gradient reaches S as it reaches _joseph
    noise = torch.diag_embed(sig.expand(*gain_batch, k)) if sig.ndim > 0 else sig * torch.eye(k, dtype=torch.float64,
                                                                                              device=device)
    S = S + noise
    S = 0.5 * (S + S.mT)

    L, info = torch.linalg.cholesky_ex(S)
    pivots = torch.diagonal(L, dim1=-2, dim2=-1) ** 2
    diag_s = torch.diagonal(S, dim1=-2, dim2=-1)
    bad = (info != 0) | ((pivots <= _SINGULAR_RTOL * diag_s) | (diag_s < _TINY_PIVOT)).any(dim=-1)
    if bool(bad.any()):
        flat = int(torch.nonzero(bad.reshape(-1))[0, 0])
        indefinite = "" if diagonal else (
            ", or the full covariance is not positive semi-definite (G Σ Gᵀ has a negative direction)")
        raise ValueError(
            f"G Σ Gᵀ + noise_var·I is singular or indefinite at batch index {_batch_index(flat, tuple(gain_batch))}: "
            "the constraints are linearly dependent or the covariance has no variance along them"
            f"{indefinite}; use independent rows of G, a positive noise_var, or positive variances on the "
            "constrained entries"
        )

    # L⁻¹ of the small k × k factor, then batched products: a triangular solve with the wide (k × n)
    # right-hand side directly was measured up to 100× slower in torch's batched CPU path.
    eye_k = torch.eye(k, dtype=torch.float64, device=device).expand_as(L)
    Linv = torch.linalg.solve_triangular(L, eye_k, upper=False)  # (..., k, k)
    W = Linv @ A  # L⁻¹ G Σ, (gain batch, k, n)
    r = (Gt @ mu.unsqueeze(-1)).squeeze(-1) - bt  # G μ − b, (..., k)
    y = Linv @ r.unsqueeze(-1)  # L⁻¹ r, (..., k, 1)
    new_mu = mu - (W.mT @ y).squeeze(-1)

    if factor:
        return _finish(new_mu, W, (*batch, k, n), as_numpy, out_dtype)
    if diagonal and not full_cov:
        new_cov = (v - (W * W).sum(dim=-2)).clamp_min(0.0)
    else:
        new_cov = _joseph(torch.diag_embed(v) if diagonal else S0, A, Gt, Linv, W, sig, tuple(gain_batch), n, k)
        if not diagonal:
            lowest = float(torch.diagonal(new_cov.detach(), dim1=-2, dim2=-1).amin()) if new_cov.numel() else 0.0
            if lowest < -_NEGATIVE_RTOL * float(variances.detach().amax()):
                raise ValueError(f"{cov_name} is not positive semi-definite: the conditioned covariance has a variance "
                                 f"of {lowest:.3g} (a valid covariance keeps them ≥ 0 up to round-off)")
    return _finish(new_mu, new_cov, (*batch, *new_cov.shape[len(gain_batch):]), as_numpy, out_dtype)


def _joseph(
    base: torch.Tensor,
    A: torch.Tensor,
    Gt: torch.Tensor,
    Linv: torch.Tensor,
    W: torch.Tensor,
    sig: torch.Tensor,
    batch: tuple[int, ...],
    n: int,
    k: int,
) -> torch.Tensor:
    """Σ' in Joseph form (I − KG) Σ (I − KG)ᵀ + K diag(σ²) Kᵀ with K = Σ Gᵀ S⁻¹, in O(n² k).

    Algebraically equal to Σ − Wᵀ W, but a congruence of Σ: round-off cannot drive eigenvalues far
    below zero even when S is ill-conditioned (measured: min eigenvalue ≥ −1e-15·‖Σ‖ on random draws
    where Σ − WᵀW gave −1e-11·‖Σ‖). Expanded: M = Σ − (GΣ)ᵀ Kᵀ, Σ' = M − K (G M) + K diag(σ²) Kᵀ.
    """
    K = (Linv.mT @ W).mT  # Σ Gᵀ S⁻¹ = (L⁻ᵀ L⁻¹ G Σ)ᵀ, (..., n, k)
    Kf = K.reshape(-1, n, k)
    M = torch.baddbmm(base.reshape(-1, n, n), A.mT.reshape(-1, n, k), Kf.mT, alpha=-1.0)
    GM = Gt.reshape(-1, k, n) @ M
    if M.requires_grad or GM.requires_grad or Kf.requires_grad:
        out = torch.baddbmm(M, Kf, GM, alpha=-1.0)
    else:
        out = M.baddbmm_(Kf, GM, alpha=-1.0)  # in place: one n × n buffer fewer for large n
    noise = sig.expand(*batch, k).reshape(-1, 1, k) if sig.ndim > 0 else sig
    if bool((noise != 0).any()):
        out = out + (Kf * noise) @ Kf.mT
    return _symmetrize(out).reshape(*batch, n, n)


def _finish(
    new_mu: torch.Tensor, new_cov: torch.Tensor, cov_shape: tuple[int, ...], as_numpy: bool, out_dtype: object
) -> tuple[ArrayLike, ArrayLike]:
    """Cast, then broadcast Σ' (computed on the gain's batch) to ``cov_shape`` as a view, not a copy."""
    if as_numpy:
        m, c = new_mu.detach().cpu().numpy(), new_cov.detach().cpu().numpy()
        if out_dtype is not None:
            m, c = m.astype(out_dtype, copy=False), c.astype(out_dtype, copy=False)
        return m, (c if c.shape == cov_shape else np.broadcast_to(c, cov_shape))
    if out_dtype is not None:
        new_mu, new_cov = new_mu.to(out_dtype), new_cov.to(out_dtype)
    return new_mu, new_cov.expand(cov_shape)


def probconserv(
    mean: ArrayLike,
    var: ArrayLike,
    G: ArrayLike,
    b: ArrayLike,
    noise_var: float | ArrayLike = 0.0,
    full_cov: bool = False,
    factor: bool = False,
) -> tuple[ArrayLike, ArrayLike]:
    """ProbConserv update (Hansen et al. 2023, Eq. 5): condition on G u = b with the model's own (co)variance.

    Shapes as in :func:`condition`; ``var`` is the (..., n) diagonal or (..., n, n) full covariance.
    The evaluation setting of the paper ("limit") is ``noise_var = 0``. ``factor``: as in :func:`condition`.
    """
    return _condition(mean, var, G, b, noise_var, full_cov, keep_dtype=False, cov_name="var", factor=factor)


def hardc(mean: ArrayLike, var: ArrayLike, G: ArrayLike, b: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """HardC: the ProbConserv update with Σ replaced by the identity; the variance is left as the model's.

    μ' = μ − Gᵀ (G Gᵀ)⁻¹ (G μ − b) is the least-squares (Euclidean) projection of μ onto {G u = b}
    (Hansen et al. 2023, "HardC-ANP"). ``var`` (shape (..., n) or (..., n, n), read against ``mean`` as
    :func:`condition` reads ``cov``; its batch axes broadcast to μ'’s) is returned unchanged, as a float64
    array/tensor of the same kind as ``mean``.
    """
    mu = mean if isinstance(mean, torch.Tensor) else np.asarray(mean, dtype=np.float64)
    ones = torch.ones_like(mu, dtype=torch.float64) if isinstance(mu, torch.Tensor) else np.ones_like(mu)
    new_mu, _ = condition(mu, ones, G, b)
    device = new_mu.device if isinstance(new_mu, torch.Tensor) else torch.device("cpu")
    out_var = _as_f64("var", var, device)
    _check_finite("var", out_var)
    n, batch, mean_ndim = new_mu.shape[-1], tuple(new_mu.shape[:-1]), mu.ndim
    if out_var.ndim == mean_ndim and out_var.shape[-1] == n:  # as condition reads it: the variances
        var_batch = tuple(out_var.shape[:-1])
    elif out_var.ndim == mean_ndim + 1 and out_var.shape[-2:] == (n, n):  # a full covariance per mean
        var_batch = tuple(out_var.shape[:-2])
    else:
        var_batch = None
    try:
        fits = var_batch is not None and torch.broadcast_shapes(var_batch, batch) == batch
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"var must have shape (..., {n}) or (..., {n}, {n}) with batch axes that broadcast to "
                         f"mean's {batch}, got {tuple(out_var.shape)}")
    variances = out_var if out_var.ndim == mean_ndim else torch.diagonal(out_var, dim1=-2, dim2=-1)
    if bool((variances < 0).any()):
        raise ValueError("var has negative variances; variances must be ≥ 0")
    if out_var.ndim != mean_ndim:
        _check_symmetric("var", out_var, var)
    return new_mu, (out_var.cpu().numpy() if isinstance(new_mu, np.ndarray) else out_var)


def constrained_log_likelihood(
    u: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    G: torch.Tensor,
    noise_var: float = 0.0,
) -> torch.Tensor:
    """log p(u | G u) of u under N(mean, diag(var)) conditioned on its own constraint values c = G u.

    The likelihood ProbConserv's trained variant is fitted with (the reference code's "physnp" training loss:
    the prior's log-likelihood plus the constraint's minus the log normaliser). By Bayes' rule, with r = u − μ and
    S = G diag(var) Gᵀ + σ² I (σ² = ``noise_var``),

        σ² > 0:  log p(u | c) = log N(u; μ, diag var) + log N(c; G u, σ² I) − log N(c; G μ, S)
                              = log N(u; μ, diag var) − (k/2) log(2π σ²) − log N(G r; 0, S),
        σ² = 0:  log p(u | c) = log N(u; μ, diag var) − ½ log det(G Gᵀ) − log N(G r; 0, G diag(var) Gᵀ),

    the second a density on the affine set {v : G v = c} with respect to its (n − k)-dimensional volume
    (the coarea formula: G u has density (det G Gᵀ)^(−1/2) ∫ p over that set). Each is the log
    density at u of the Gaussian :func:`condition` returns for b = G u: N(μ', Σ') (with Σ' singular along Gᵀ
    when σ² = 0). For σ² = 0 the mean's component along diag(var) Gᵀ, the direction the update moves it in,
    does not enter: the constraint sets it.

    Shapes: ``u``, ``mean``, ``var`` (..., n) with var > 0; ``G`` (..., k, n) with independent rows; leading axes
    broadcast. Returns (...) in float64, differentiable in ``mean``, ``var`` and ``G``. Tensors only (a loss).
    Non-finite inputs, non-broadcasting shapes, var ≤ 0 or dependent rows → ValueError.
    """
    if not all(isinstance(a, torch.Tensor) for a in (u, mean, var, G)):
        raise ValueError("constrained_log_likelihood takes torch tensors u, mean, var and G")
    for name, a in (("u", u), ("mean", mean), ("var", var), ("G", G)):
        _check_finite(name, a.detach())
    if not (math.isfinite(noise_var) and noise_var >= 0):
        raise ValueError(f"noise_var must be finite and >= 0, got {noise_var!r}")
    u, mean, var, G = (a.to(torch.float64) for a in (u, mean, var, G))
    n = mean.shape[-1]
    if u.shape[-1] != n or var.shape[-1] != n or G.ndim < 2 or G.shape[-1] != n:
        raise ValueError(f"u, mean, var must be (..., n) and G (..., k, n) with one n; got {tuple(u.shape)}, "
                         f"{tuple(mean.shape)}, {tuple(var.shape)}, {tuple(G.shape)}")
    try:
        torch.broadcast_shapes(u.shape[:-1], mean.shape[:-1], var.shape[:-1], G.shape[:-2])
    except RuntimeError as exc:
        raise ValueError(f"leading (batch) axes do not broadcast: u {tuple(u.shape[:-1])}, mean {tuple(mean.shape[:-1])}, "
                         f"var {tuple(var.shape[:-1])}, G {tuple(G.shape[:-2])}") from exc
    if not bool((var > 0).all()):
        raise ValueError("var must be > 0 everywhere (the conditional density needs a proper prior)")
    k = G.shape[-2]
    r = u - mean
    log_prior = -0.5 * (r * r / var + torch.log(2 * math.pi * var)).sum(-1)
    S = (G * var.unsqueeze(-2)) @ G.mT + noise_var * torch.eye(k, dtype=torch.float64, device=G.device)
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info != 0).any()):
        raise ValueError("G diag(var) Gᵀ + noise_var·I is singular: the rows of G are dependent")
    y = torch.linalg.solve_triangular(L, (G @ r.unsqueeze(-1)), upper=False).squeeze(-1)
    log_mass = -0.5 * (y * y).sum(-1) - torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1) \
        - 0.5 * k * math.log(2 * math.pi)
    if noise_var > 0:
        log_observation = torch.full_like(log_mass, -0.5 * k * math.log(2 * math.pi * noise_var))
    else:
        LG, info = torch.linalg.cholesky_ex(G @ G.mT)
        if bool((info != 0).any()):
            raise ValueError("G Gᵀ is singular: the rows of G are dependent")
        log_observation = -torch.log(torch.diagonal(LG, dim1=-2, dim2=-1)).sum(-1)
    return log_prior + log_observation - log_mass
