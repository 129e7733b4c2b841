"""Attentive neural process (ANP) on 1-D space-time: (t, x) ↦ u, and its SoftC and trained-ProbConserv variants.

Architecture (Kim et al., "Attentive Neural Processes", ICLR 2019; the black box of ProbConserv,
Hansen et al., ICML 2023, Sec. 4):

- inputs are scaled to [−1, 1] with the case's t- and x-ranges;
- deterministic path: MLP on (t, x, u) of each context → self-attention layers → cross-attention with
  queries = MLP(target (t, x)), keys = MLP(context (t, x)), values = context representations;
- latent path: MLP on (t, x, u) → self-attention → mean over points → Gaussian q(z) with
  σ_z = 0.1 + 0.9·sigmoid(·);
- decoder: MLP on (r, z, target (t, x)) → mean and σ = min_std + softplus(·).

Where it departs from the reference code (amazon-science/probconserv, ``attentive_neural_process/module.py``),
whose architecture the article does not spell out: σ's floor ``min_std`` is 0.01 by default, the reference's
1e-3 (a variance floor of 1e-4 against 1e-6: the Stefan log-likelihood is carried by points at that floor,
DEVELOPERS.md); σ_z is Kim et al.'s 0.1 + 0.9·sigmoid, the reference's exp(½·output); the deterministic path
has one cross-attention layer (``torch.nn.MultiheadAttention`` plus a residual and a LayerNorm), the
reference's two.

Training objective per function (ELBO, Kim et al. Eq. 4), divided by the number of targets Nt:

    L = [ −Σ_targets log N(u_j; μ_j, σ_j²) + KL(q(z | C ∪ T) ‖ q(z | C)) ] / Nt,

with z drawn from the posterior q(z | C ∪ T) (its mean in eval mode, so validation is deterministic).
SoftC-ANP adds, in training mode only, λ·mean over slices of (G μ − b)², μ the model's mean on a uniform
grid of :data:`SOFTC_POINTS` positions at each target time (queried like targets, with the same z; no
labels are needed there), G that grid's trapezoid weights and b the true mass. On the training targets
themselves (10 random positions per slice in the quick profile) the trapezoid rule misses the exact
solution's mass by about as much as the black box errs, so a penalty there would pull towards a biased
target. As in the reference's SoftC-ANP the validation loss (eval mode) is the ELBO alone; unlike the
reference, whose penalty is the squared PDE residual (u_t − (k u_x)_x)² at the targets, the penalty here is
the integral conservation law itself.

ProbConserv's trained variant (``constrained_likelihood``; the reference's "physnp") replaces the NLL by
−Σ_slices log p(u_t | G_t u_t): each slice's Gaussian N(μ, diag σ²) conditioned on the trapezoid mass of its
own targets (:func:`target_nll`). The mean's component along diag(σ²) Gᵀ does not enter (the constraint will
set it), so the network is fitted for what the update leaves, the shape of each slice and a variance that is
calibrated after the update. σ_G² = ``constraint_noise_var`` (default 0, the limit the evaluation uses); the
reference learns σ_G⁻² from 1e2, but its loss holds the term +½ log σ_G² (the observation's own density at
c = G u), which falls without bound as σ_G → 0, so it is fixed here.

Shapes: B functions, Nc contexts, nt target times × nx positions (Nt = nt·nx targets).
Batches are dicts with context_t, context_x, context_u (B, Nc); target_t (B, nt);
target_x, target_u (B, nt, nx); mass (B, nt).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from physml.constraints.conservation import trapezoid_weights
from physml.constraints.gaussian import constrained_log_likelihood
from physml.models._config import SpaceTimeConfig
from physml.models.predictive import Predictive, mixture


@dataclass(frozen=True)
class ANPConfig(SpaceTimeConfig):
    """Hyper-parameters of an ANP; ``physics_weight > 0`` makes it a SoftC-ANP, ``constrained_likelihood`` the ANP
    trained through ProbConserv's constrained likelihood (σ_G² = ``constraint_noise_var``; :func:`target_nll`).

    ``t_range``/``x_range``: the case's domain (inputs are scaled to [−1, 1]; ``x_range`` is also the
    quadrature domain of the SoftC penalty, ``periodic`` its wrap-around rule).
    """

    _label = "ANP"

    case: str
    model: str = "anp"
    hidden: int = 128
    latent: int = 128
    heads: int = 4
    attention_layers: int = 2
    decoder_layers: int = 3
    min_std: float = 0.01
    t_range: tuple[float, float] = (0.0, 1.0)
    x_range: tuple[float, float] = (0.0, 1.0)
    physics_weight: float = 0.0
    periodic: bool = False
    constrained_likelihood: bool = False
    constraint_noise_var: float = 0.0

    def __post_init__(self) -> None:
        self._check_case()
        if self.model not in ("anp", "softc"):
            raise ValueError(f"model must be 'anp' or 'softc', got {self.model!r}")
        self._check_counts("hidden", "latent", "heads", "decoder_layers")
        if not isinstance(self.attention_layers, int) or self.attention_layers < 0:
            raise ValueError(f"attention_layers must be an integer >= 0, got {self.attention_layers!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        self._check_domain()
        self._check_physics_weight()
        self._check_constrained_likelihood()
        if (self.model == "softc") != (self.physics_weight > 0):
            raise ValueError("model 'softc' needs physics_weight > 0 and model 'anp' needs physics_weight = 0")


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SelfAttention(nn.Module):
    """Transformer encoder block: x ← LN(x + MHA(x, x, x)); x ← LN(x + MLP(x)). x: (B, N, h)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden)
        self.feed = mlp([hidden, hidden, hidden])
        self.norm2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attention(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.feed(x))


def check_shapes(shapes: Mapping[str, tuple[int, ...]]) -> None:
    """ValueError naming the inputs whose shapes do not fit together: context_t/x/u one shape (B, Nc) with
    Nc ≥ 1 (the encoders average over the context points), target_x (B, nt, nx) and target_t (B, nt) with
    nt, nx ≥ 1. ``shapes``: input name → shape."""
    c = shapes["context_t"]
    if len(c) != 2 or c[1] < 1 or shapes["context_x"] != c or shapes["context_u"] != c:
        raise ValueError(f"context_t/x/u must share a shape (B, Nc) with Nc >= 1; got "
                         f"{[shapes[k] for k in ('context_t', 'context_x', 'context_u')]}")
    tx = shapes["target_x"]
    if len(tx) != 3 or tx[0] != c[0] or min(tx[1:]) < 1 or shapes["target_t"] != tx[:2]:
        raise ValueError(f"target_x must be (B, nt, nx) and target_t (B, nt) with B = {c[0]} and nt, nx >= 1; "
                         f"got {tx}, {shapes['target_t']}")


def as_batch(batch: Mapping[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The ANP fields of a batch as tensors on ``device``; shapes checked (see module docstring)."""
    out = {}
    for key in ("context_t", "context_x", "context_u", "target_t", "target_x"):
        if key not in batch:
            raise ValueError(f"batch is missing {key!r}")
        out[key] = torch.as_tensor(batch[key]).to(device=device, dtype=dtype)
    for key in ("target_u", "mass"):
        if key in batch:
            out[key] = torch.as_tensor(batch[key]).to(device=device, dtype=dtype)
    check_shapes({key: tuple(value.shape) for key, value in out.items()})
    tx = out["target_x"].shape
    if "target_u" in out and out["target_u"].shape != tx:
        raise ValueError(f"target_u must have the shape of target_x {tuple(tx)}, got {tuple(out['target_u'].shape)}")
    if "mass" in out and out["mass"].shape != tx[:2]:
        raise ValueError(f"mass must have shape (B, nt) = {tuple(tx[:2])}, got {tuple(out['mass'].shape)}")
    for key, value in out.items():
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{key} contains NaN or inf")
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def function_seeds(seed: int, functions: Sequence[int]) -> list[int]:
    """One 63-bit seed per test function, derived from the run's ``seed`` ≥ 0 and the function's index ≥ 0 in
    its split (numpy's ``SeedSequence((seed, index))``), so a function's latent draws do not depend on which
    functions share its ``predict`` call."""
    indices = list(functions)
    if not _is_int(seed) or seed < 0 or not all(_is_int(i) and i >= 0 for i in indices):
        raise ValueError(f"function_seeds takes an int seed >= 0 and int indices >= 0, got seed {seed!r}, "
                         f"indices {indices!r}")
    seeds = []
    for index in indices:
        hi, lo = np.random.SeedSequence((int(seed), int(index))).generate_state(2, np.uint32)
        seeds.append(((int(hi) << 32) | int(lo)) & ((1 << 63) - 1))
    return seeds


def _seeds_per_function(seed: Any, n_functions: int) -> list[int]:
    """``predict``'s ``seed``: an int ≥ 0 (function b gets ``function_seeds(seed, [b])``) or one int in
    [0, 2**63) per function (a sequence or a 1-D integer array)."""
    if _is_int(seed) and seed >= 0:
        return function_seeds(int(seed), range(n_functions))
    if isinstance(seed, (np.ndarray, torch.Tensor)) and seed.ndim == 1:
        seed = seed.tolist()
    if isinstance(seed, Sequence) and len(seed) == n_functions and all(_is_int(s) and 0 <= s < 2**63 for s in seed):
        return [int(s) for s in seed]
    raise ValueError(f"seed must be an int >= 0, or one int in [0, 2**63) per function ({n_functions}), got {seed!r}")


def latent_noise(seeds: Sequence[int], n_samples: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal ε (n_samples, B, size), B = len(seeds): column b drawn from a generator seeded with
    ``seeds[b]`` alone."""
    columns = [torch.randn((n_samples, size), generator=torch.Generator(device=device).manual_seed(s), device=device, dtype=dtype)
               for s in seeds]
    return torch.stack(columns, dim=1) if columns else torch.empty((n_samples, 0, size), device=device, dtype=dtype)


class ComponentMixture:
    """``predict`` and ``predict_components`` of a black box whose predictive is an equal-weight mixture of
    diagonal Gaussians N(μ_s, diag σ_s²): an ANP's latent draws, an ensemble's members. For ``nn.Module``
    subclasses that define ``_components(batch, n_samples, seed)`` → μ_s, σ_s² (S, B, nt, nx) for a batch of
    :func:`as_batch`."""

    def _components(self, b: dict[str, torch.Tensor], n_samples: int,
                    seed: int | Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """μ_s, σ_s² (S, B, nt, nx), in the network's dtype, for a batch ``b`` of :func:`as_batch`."""
        raise NotImplementedError(f"{type(self).__name__} defines no _components, so it has no predictive")

    @torch.no_grad()
    def predict_components(
        self,
        context_t: Any,
        context_x: Any,
        context_u: Any,
        target_t: Any,
        target_x: Any,
        n_samples: int = 100,
        seed: int | Sequence[int] | np.ndarray = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each component's N(μ_s, diag σ_s²) at the targets: float64 means and variances, each (S, B, nt, nx).

        Inputs as :meth:`predict`. The components are the ANP's ``n_samples`` latent draws (``seed`` fixes them,
        each function's from its own stream: :meth:`ANP._components`) or the ensemble's M members (S = M;
        ``n_samples`` and ``seed`` are not used). Evaluated in eval mode; the module's mode is restored.
        """
        was_training = self.training
        self.eval()
        try:
            p = next(self.parameters())
            b = as_batch({"context_t": context_t, "context_x": context_x, "context_u": context_u,
                          "target_t": target_t, "target_x": target_x}, p.device, p.dtype)
            means, variances = self._components(b, n_samples, seed)
            return means.double(), variances.double()
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict(
        self,
        context_t: Any,
        context_x: Any,
        context_u: Any,
        target_t: Any,
        target_x: Any,
        n_samples: int = 100,
        full_cov: bool = False,
        seed: int | Sequence[int] | np.ndarray = 0,
    ) -> Predictive:
        """Predictive N(μ, Σ) at the targets: the moments of the mixture of :meth:`predict_components`.

        Inputs: context_t/x/u (B, Nc), target_t (B, nt), target_x (B, nt, nx) (numpy or torch). Returns float64
        tensors: mean, var (B, nt, nx) by the law of total variance, and with ``full_cov`` the covariance
        (B, nt, nx, nx) of each time slice, (1/S) Σ_s (μ_s − μ)(μ_s − μ)ᵀ + diag((1/S) Σ_s σ_s²)
        (:func:`~physml.models.predictive.mixture`). ``n_samples``, ``seed``: as :meth:`predict_components`.
        """
        means, variances = self.predict_components(context_t, context_x, context_u, target_t, target_x,
                                                   n_samples=n_samples, seed=seed)
        return mixture(means, variances, full_cov=full_cov)


def slice_weights(target_x: torch.Tensor, x_range: tuple[float, float], periodic: bool) -> torch.Tensor:
    """Trapezoid weights G (B, nt, nx) of each target slice, from physml.constraints.conservation (in float64,
    from the positions in their own precision, so a rounded end point counts as the end; → dtype)."""
    w = trapezoid_weights(target_x.detach().cpu().numpy(), x_range, periodic=periodic)
    return torch.as_tensor(w, device=target_x.device, dtype=target_x.dtype)


#: Positions per target time at which a SoftC model's mean enters its penalty (:func:`penalty_batch`).
SOFTC_POINTS = 65


def penalty_batch(batch: Mapping[str, torch.Tensor], x_range: tuple[float, float], periodic: bool,
                  points: int = SOFTC_POINTS) -> dict[str, torch.Tensor]:
    """``batch`` with its targets replaced by a uniform grid of ``points`` positions per target time:
    target_x (B, nt, points) over ``x_range`` (both ends; without the right end on a periodic domain, which
    the left one repeats); no target_u. The SoftC penalty is taken there (see the module docstring)."""
    x0, x1 = x_range
    like = batch["target_t"]
    grid = (torch.linspace(x0, x1, points + 1, dtype=like.dtype, device=like.device)[:-1] if periodic
            else torch.linspace(x0, x1, points, dtype=like.dtype, device=like.device))
    dense = {k: v for k, v in batch.items() if k not in ("target_x", "target_u")}
    dense["target_x"] = grid.expand(*like.shape, points)
    return dense


def conservation_penalty(mean: torch.Tensor, batch: Mapping[str, torch.Tensor], x_range: tuple[float, float], periodic: bool) -> torch.Tensor:
    """SoftC penalty: mean over functions and slices of (G μ − b)², μ (B, nt, nx) at batch["target_x"]
    (:func:`penalty_batch`'s grid in training), G their trapezoid weights, b = batch["mass"] (B, nt)."""
    if "mass" not in batch:
        raise ValueError("the SoftC penalty needs batch['mass'] (B, nt)")
    g = slice_weights(batch["target_x"], x_range, periodic)
    residual = (g * mean).sum(-1) - batch["mass"]
    return (residual**2).mean()


def target_nll(u: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, target_x: torch.Tensor,
               config: ANPConfig | Any) -> torch.Tensor:
    """Negative log-likelihood of each function's targets, (B,), from u, mean, std (B, nt, nx).

    Plain: −Σ_j log N(u_j; μ_j, σ_j²). With ``config.constrained_likelihood`` (ProbConserv's trained variant):
    −Σ_slices log p(u_t | G_t u_t), the Gaussian of the slice conditioned on the trapezoid mass of its own
    targets (G_t: :func:`slice_weights` over ``config.x_range``; :func:`~physml.constraints.constrained_log_likelihood`
    with σ_G² = ``config.constraint_noise_var``), computed in float64 and returned in ``mean``'s dtype.
    """
    if not config.constrained_likelihood:
        return -Normal(mean, std).log_prob(u).flatten(1).sum(-1)
    g = slice_weights(target_x, config.x_range, config.periodic).unsqueeze(-2)
    ll = constrained_log_likelihood(u, mean, std**2, g, noise_var=config.constraint_noise_var)
    return -ll.sum(-1).to(mean.dtype)


class ANP(ComponentMixture, nn.Module):
    """Attentive neural process u(t, x) | contexts (see the module docstring)."""

    def __init__(self, config: ANPConfig | Mapping[str, Any]) -> None:
        super().__init__()
        self.config = config if isinstance(config, ANPConfig) else ANPConfig.from_dict(config)
        c = self.config
        h = c.hidden
        self.det_encoder = mlp([3, h, h, h])
        self.det_attention = nn.ModuleList(SelfAttention(h, c.heads) for _ in range(c.attention_layers))
        self.query = mlp([2, h, h])
        self.key = mlp([2, h, h])
        self.cross = nn.MultiheadAttention(h, c.heads, batch_first=True)
        self.cross_norm = nn.LayerNorm(h)
        self.lat_encoder = mlp([3, h, h, h])
        self.lat_attention = nn.ModuleList(SelfAttention(h, c.heads) for _ in range(c.attention_layers))
        self.lat_head = mlp([h, h, 2 * c.latent])
        self.decoder = mlp([h + c.latent + 2] + [h] * c.decoder_layers + [2])

    @property
    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def _scale(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        (t0, t1), (x0, x1) = self.config.t_range, self.config.x_range
        return torch.stack([2 * (t - t0) / (t1 - t0) - 1, 2 * (x - x0) / (x1 - x0) - 1], dim=-1)

    def _points(self, b: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Context inputs (B, Nc, 3) = scaled (t, x) and u; target inputs (B, Nt, 2)."""
        ctx = torch.cat([self._scale(b["context_t"], b["context_x"]), b["context_u"].unsqueeze(-1)], dim=-1)
        tt = b["target_t"].unsqueeze(-1).expand_as(b["target_x"])
        tgt = self._scale(tt, b["target_x"]).flatten(1, 2)
        return ctx, tgt

    def latent(self, points: torch.Tensor) -> Normal:
        """q(z | points): points (B, N, 3) → Normal with loc/scale (B, latent)."""
        s = self.lat_encoder(points)
        for block in self.lat_attention:
            s = block(s)
        loc, raw = self.lat_head(s.mean(1)).chunk(2, dim=-1)
        return Normal(loc, 0.1 + 0.9 * torch.sigmoid(raw))

    def deterministic(self, ctx: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """r (B, Nt, h): cross-attention of the target inputs (B, Nt, 2) to the contexts (B, Nc, 3)."""
        v = self.det_encoder(ctx)
        for block in self.det_attention:
            v = block(v)
        q, k = self.query(tgt), self.key(ctx[..., :2])
        return self.cross_norm(q + self.cross(q, k, v, need_weights=False)[0])

    def decode(self, r: torch.Tensor, z: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and σ = min_std + softplus(·), each (B, Nt), from r (B, Nt, h), z (B, latent), tgt (B, Nt, 2)."""
        zz = z.unsqueeze(1).expand(-1, r.shape[1], -1)
        out = self.decoder(torch.cat([r, zz, tgt], dim=-1))
        return out[..., 0], self.config.min_std + nn.functional.softplus(out[..., 1])

    def loss(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Mean over functions of the per-target ELBO loss (its NLL the constrained one with ``constrained_likelihood``;
        + the SoftC penalty when training); see the module docstring."""
        p = next(self.parameters())
        b = as_batch(batch, p.device, p.dtype)
        if "target_u" not in b:
            raise ValueError("batch is missing 'target_u'")
        ctx, tgt = self._points(b)
        n_targets = tgt.shape[1]
        u = b["target_u"].flatten(1, 2)
        prior = self.latent(ctx)
        posterior = self.latent(torch.cat([ctx, torch.cat([tgt, u.unsqueeze(-1)], dim=-1)], dim=1))
        z = posterior.rsample() if self.training else posterior.mean
        mean, std = self.decode(self.deterministic(ctx, tgt), z, tgt)
        shape = b["target_x"].shape
        nll = target_nll(b["target_u"], mean.view(shape), std.view(shape), b["target_x"], self.config)
        kl = kl_divergence(posterior, prior).sum(-1)
        loss = ((nll + kl) / n_targets).mean()
        c = self.config
        if c.physics_weight > 0 and self.training:
            dense = penalty_batch(b, c.x_range, c.periodic)
            dense_tgt = self._points(dense)[1]
            dense_mean, _ = self.decode(self.deterministic(ctx, dense_tgt), z, dense_tgt)
            penalty = conservation_penalty(dense_mean.view_as(dense["target_x"]), dense, c.x_range, c.periodic)
            loss = loss + c.physics_weight * penalty
        return loss

    def _components(self, b: dict[str, torch.Tensor], n_samples: int,
                    seed: int | Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's μ_s, σ_s² (S, B, nt, nx) for ``n_samples`` latent draws z_s ~ q(z | C), each function's
        draws from its own stream: an int ``seed`` seeds function b of this batch with ``function_seeds(seed, [b])``;
        a sequence gives one seed per function (length B), so a caller that splits a split into batches passes
        ``function_seeds(seed, indices)`` and gets the draws of one call with all of them."""
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        seeds = _seeds_per_function(seed, b["target_t"].shape[0])
        ctx, tgt = self._points(b)
        prior = self.latent(ctx)
        r = self.deterministic(ctx, tgt)
        eps = latent_noise(seeds, n_samples, prior.loc.shape[-1], ctx.device, ctx.dtype)
        means, variances = [], []
        for s in range(n_samples):
            mean, std = self.decode(r, prior.loc + prior.scale * eps[s], tgt)
            means.append(mean)
            variances.append(std**2)
        shape = (n_samples,) + tuple(b["target_x"].shape)
        return torch.stack(means).view(shape), torch.stack(variances).view(shape)
