"""Deep ensemble of conditional neural processes: the second probabilistic black box.

Each of the M members is a conditional neural process (Garnelo et al., ICML 2018) with the ANP's
interface: an MLP encodes every context (t, x, u) and the encodings are averaged into r (B, h); an
MLP on (r, target (t, x)) gives a mean μ_m and σ_m = min_std + softplus(·). Each member is trained
with the Gaussian negative log-likelihood of the targets (Lakshminarayanan et al., NeurIPS 2017);
members differ by their random initialisation. They are trained in one ``fit`` with the loss
Σ_m NLL_m: the members share no parameters, so each one's gradient (and its Adam update) is the
same as if it were trained alone on the same batches, unless ``grad_clip`` is set (the clip scales every
member's gradient by the norm of all of them together) or ``physics_weight`` > 0 (the SoftC penalty is taken
on the members' mean). With ``constrained_likelihood`` each NLL_m is that of
the slices conditioned on their targets' mass (ProbConserv's trained variant).

The prediction is the mixture's moments (law of total variance):
μ = (1/M) Σ μ_m,  σ² = (1/M) Σ σ_m² + (1/M) Σ (μ_m − μ)².
Shapes: B functions, Nc contexts, nt target times × nx positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Normal

from physml.models._config import SpaceTimeConfig
from physml.models.anp import ComponentMixture, as_batch, conservation_penalty, mlp, penalty_batch, target_nll


@dataclass(frozen=True)
class EnsembleConfig(SpaceTimeConfig):
    """Hyper-parameters of a deep ensemble (``t_range``/``x_range`` scale the inputs to [−1, 1]);
    ``physics_weight`` > 0 makes it a SoftC ensemble (the penalty of :meth:`DeepEnsemble.loss`, with
    ``periodic`` the wrap-around rule of its quadrature); ``constrained_likelihood`` trains each member through
    ProbConserv's constrained likelihood (:func:`physml.models.anp.target_nll`)."""

    _label = "ensemble"

    case: str
    model: str = "ensemble"
    members: int = 5
    hidden: int = 128
    layers: int = 3
    min_std: float = 0.01
    t_range: tuple[float, float] = (0.0, 1.0)
    x_range: tuple[float, float] = (0.0, 1.0)
    physics_weight: float = 0.0
    periodic: bool = False
    constrained_likelihood: bool = False
    constraint_noise_var: float = 0.0

    def __post_init__(self) -> None:
        self._check_case()
        if self.model != "ensemble":
            raise ValueError(f"model must be 'ensemble', got {self.model!r}")
        self._check_counts("members", "hidden", "layers")
        self._check_domain()
        self._check_physics_weight()
        self._check_constrained_likelihood()


class CNPMember(nn.Module):
    """One conditional neural process: contexts (B, Nc, 3) and targets (B, Nt, 2) → μ, σ (B, Nt)."""

    def __init__(self, hidden: int, layers: int, min_std: float) -> None:
        super().__init__()
        self.min_std = min_std
        self.encoder = mlp([3] + [hidden] * layers)
        self.decoder = mlp([hidden + 2] + [hidden] * layers + [2])

    def forward(self, ctx: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.encoder(ctx).mean(1, keepdim=True).expand(-1, tgt.shape[1], -1)
        out = self.decoder(torch.cat([r, tgt], dim=-1))
        return out[..., 0], self.min_std + nn.functional.softplus(out[..., 1])


class DeepEnsemble(ComponentMixture, nn.Module):
    """M independent CNP members; ``predict`` has the ANP's signature and returns mixture moments."""

    def __init__(self, config: EnsembleConfig | Mapping[str, Any]) -> None:
        super().__init__()
        self.config = config if isinstance(config, EnsembleConfig) else EnsembleConfig.from_dict(config)
        c = self.config
        self.members = nn.ModuleList(CNPMember(c.hidden, c.layers, c.min_std) for _ in range(c.members))

    @property
    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def _points(self, b: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        (t0, t1), (x0, x1) = self.config.t_range, self.config.x_range

        def scale(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([2 * (t - t0) / (t1 - t0) - 1, 2 * (x - x0) / (x1 - x0) - 1], dim=-1)

        ctx = torch.cat([scale(b["context_t"], b["context_x"]), b["context_u"].unsqueeze(-1)], dim=-1)
        tt = b["target_t"].unsqueeze(-1).expand_as(b["target_x"])
        return ctx, scale(tt, b["target_x"]).flatten(1, 2)

    def member_moments(self, b: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's mean and variance, both (M, B, nt, nx), for a batch from :func:`as_batch`."""
        ctx, tgt = self._points(b)
        means, variances = [], []
        for member in self.members:
            mean, std = member(ctx, tgt)
            means.append(mean.view_as(b["target_x"]))
            variances.append((std**2).view_as(b["target_x"]))
        return torch.stack(means), torch.stack(variances)

    def loss(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Σ_m of member m's mean (over functions and targets) Gaussian NLL (with ``constrained_likelihood``, the
        NLL of each slice conditioned on its targets' mass: :func:`physml.models.anp.target_nll`); a SoftC ensemble adds, while
        training, λ·mean over slices of (G μ̄ − b)² with μ̄ = the members' mean on the uniform grid of
        :func:`physml.models.anp.penalty_batch` (the penalty of :func:`physml.models.anp.conservation_penalty`,
        λ = ``physics_weight``)."""
        p = next(self.parameters())
        b = as_batch(batch, p.device, p.dtype)
        if "target_u" not in b:
            raise ValueError("batch is missing 'target_u'")
        means, variances = self.member_moments(b)
        c = self.config
        if c.constrained_likelihood:
            n_targets = b["target_x"][0].numel()
            loss = sum(target_nll(b["target_u"], m, v.sqrt(), b["target_x"], c).mean() / n_targets
                       for m, v in zip(means, variances, strict=True))
        else:
            nll = -Normal(means, variances.sqrt()).log_prob(b["target_u"].unsqueeze(0))
            loss = nll.flatten(1).mean(1).sum()
        if c.physics_weight > 0 and self.training:
            dense = penalty_batch(b, c.x_range, c.periodic)
            dense_means, _ = self.member_moments(dense)
            loss = loss + c.physics_weight * conservation_penalty(dense_means.mean(0), dense, c.x_range, c.periodic)
        return loss

    def _components(self, b: dict[str, torch.Tensor], n_samples: int,
                    seed: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' μ_m, σ_m² (M, B, nt, nx): the mixture is exact, so ``n_samples`` and ``seed`` (the ANP's
        call signature) are not used."""
        return self.member_moments(b)
