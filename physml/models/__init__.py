"""Probabilistic black boxes of ProbConserv, the FNO family of BOON, and the registry that rebuilds
every model from its checkpoint config dict (:func:`build_model`).

Every model here takes the same batch (context_t/x/u (B, Nc), target_t (B, nt), target_x/u
(B, nt, nx), mass (B, nt)), has ``loss(batch) -> scalar`` for :func:`physml.training.fit` and
``predict(context_t, context_x, context_u, target_t, target_x, n_samples, full_cov, seed) -> Predictive``
with mean/var (B, nt, nx) and optionally cov (B, nt, nx, nx) per time slice.

Model names: "anp" (attentive neural process), "softc" (the ANP trained with the conservation
penalty), "ensemble" (deep ensemble of conditional neural processes); an "anp" or "ensemble" config with
``constrained_likelihood`` is trained through ProbConserv's constrained likelihood. Each has
``predict_components`` too: the Gaussians (latent draws, members) whose mixture ``predict`` returns. The operator models of
:mod:`physml.experiments.boon` are picked by a "variant" field instead: "plain" (:class:`FNO`) or
"boon" (:class:`BOONFNO`, the FNO with BOON's boundary-corrected kernels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from physml.models.anp import ANP, ANPConfig
from physml.models.boon import BOONFNO
from physml.models.ensemble import DeepEnsemble, EnsembleConfig
from physml.models.fno import FNO
from physml.models.predictive import Predictive, mixture

MODEL_NAMES = ("anp", "softc", "ensemble")

__all__ = [
    "ANP",
    "ANPConfig",
    "BOONFNO",
    "DeepEnsemble",
    "EnsembleConfig",
    "FNO",
    "MODEL_NAMES",
    "Predictive",
    "build_model",
    "mixture",
]


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """The model described by ``config``; the ``build_model`` of :func:`physml.training.load_checkpoint`.

    A "variant" field picks the FNO family: ``{"variant": "plain" | "boon", "fno": {...}, "boundary": ...,
    "neumann_order": ...}`` → :class:`FNO` (constructor arguments ``config["fno"]``) or that FNO wrapped
    by :class:`BOONFNO`. Otherwise the "model" field picks the class (:data:`MODEL_NAMES`). Unknown
    model, variant or fields → ValueError.
    """
    if "variant" in config:
        return _build_fno(config)
    name = config.get("model")
    if name in ("anp", "softc"):
        return ANP(ANPConfig.from_dict(config))
    if name == "ensemble":
        return DeepEnsemble(EnsembleConfig.from_dict(config))
    raise ValueError(f"config field 'model' must be one of {MODEL_NAMES}, got {name!r}")


def _build_fno(config: Mapping[str, Any]) -> nn.Module:
    """:class:`FNO` or :class:`BOONFNO` from a model_config of :mod:`physml.experiments.boon` (same parameters)."""
    fno = FNO(**{k: v for k, v in config["fno"].items()})
    if config["variant"] == "plain":
        return fno
    if config["variant"] == "boon":
        return BOONFNO(fno, config["boundary"], neumann_order=int(config["neumann_order"]))
    raise ValueError(f"model_config.variant must be 'plain' or 'boon', got {config['variant']!r}")
