"""Probabilistic black boxes of ProbConserv and the registry that rebuilds them from a config dict.

Every model here takes the same batch (context_t/x/u (B, Nc), target_t (B, nt), target_x/u
(B, nt, nx), mass (B, nt)), has ``loss(batch) -> scalar`` for :func:`physml.training.fit` and
``predict(context_t, context_x, context_u, target_t, target_x, n_samples, full_cov, seed) -> Predictive``
with mean/var (B, nt, nx) and optionally cov (B, nt, nx, nx) per time slice.

Model names: "anp" (attentive neural process), "softc" (the ANP trained with the conservation
penalty), "ensemble" (deep ensemble of conditional neural processes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from physml.models.anp import ANP, ANPConfig
from physml.models.ensemble import DeepEnsemble, EnsembleConfig
from physml.models.predictive import Predictive, mixture

MODEL_NAMES = ("anp", "softc", "ensemble")

__all__ = [
    "ANP",
    "ANPConfig",
    "DeepEnsemble",
    "EnsembleConfig",
    "MODEL_NAMES",
    "Predictive",
    "build_model",
    "model_loss",
    "mixture",
]


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """The model described by ``config`` (its "model" field picks the class); the ``build_model`` of
    :func:`physml.training.load_checkpoint`. Unknown model or fields → ValueError."""
    name = config.get("model")
    if name in ("anp", "softc"):
        return ANP(ANPConfig.from_dict(config))
    if name == "ensemble":
        return DeepEnsemble(EnsembleConfig.from_dict(config))
    raise ValueError(f"config field 'model' must be one of {MODEL_NAMES}, got {name!r}")


def model_loss(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """The ``loss_fn`` of :func:`physml.training.fit` for every model here: ``model.loss(batch)``."""
    inner = model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model
    return inner.loss(batch)
