"""What the configs of the ProbConserv black boxes (:class:`~physml.models.anp.ANPConfig`,
:class:`~physml.models.ensemble.EnsembleConfig`) have in common: a case name, the Gaussian noise floor
σ ≥ ``min_std`` and the space-time domain ``t_range`` × ``x_range`` that scales the inputs (t, x) to
[−1, 1]; the training objective's options (a SoftC penalty, or the constrained likelihood); and their
json-able form, the ``model_config`` of a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any, ClassVar, TypeVar

_C = TypeVar("_C", bound="SpaceTimeConfig")


class SpaceTimeConfig:
    """Mixin of a frozen dataclass config with the fields ``case``, ``min_std``, ``t_range``, ``x_range``.

    The dataclass declares the fields (so their order, defaults and positional arguments stay its own)
    and calls the ``_check_*`` methods from its ``__post_init__``; ``_label`` names the model in the
    error of :meth:`from_dict`.
    """

    _label: ClassVar[str]
    case: str
    min_std: float
    t_range: tuple[float, float]
    x_range: tuple[float, float]

    def _check_case(self) -> None:
        if not isinstance(self.case, str) or not self.case:
            raise ValueError("case must be a non-empty string")

    def _check_counts(self, *names: str) -> None:
        """Each field in ``names`` is an integer ≥ 1 (layer widths, counts)."""
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def _check_domain(self) -> None:
        """0 < ``min_std`` < ∞; ``t_range``/``x_range`` finite (low, high) with high > low, stored as float tuples."""
        if not (0 < self.min_std < math.inf):
            raise ValueError(f"min_std must be finite and > 0, got {self.min_std!r}")
        for name in ("t_range", "x_range"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"{name} must be finite (low, high) with high > low, got {getattr(self, name)!r}")
            object.__setattr__(self, name, (float(lo), float(hi)))

    def _check_physics_weight(self) -> None:
        """The SoftC penalty weight ``physics_weight`` (a field of the dataclass) is finite and ≥ 0."""
        weight = getattr(self, "physics_weight")
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"physics_weight must be finite and >= 0, got {weight!r}")

    def _check_constrained_likelihood(self) -> None:
        """``constrained_likelihood`` is a bool, excluded with a SoftC penalty; ``constraint_noise_var`` is finite,
        ≥ 0, and 0 unless the likelihood is constrained (it has no other use)."""
        constrained, noise = getattr(self, "constrained_likelihood"), getattr(self, "constraint_noise_var")
        if not isinstance(constrained, bool):
            raise ValueError(f"constrained_likelihood must be true or false, got {constrained!r}")
        if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"constraint_noise_var must be finite and >= 0, got {noise!r}")
        if noise > 0 and not constrained:
            raise ValueError("constraint_noise_var > 0 needs constrained_likelihood = true")
        if constrained and getattr(self, "physics_weight") > 0:
            raise ValueError("constrained_likelihood and a SoftC penalty (physics_weight > 0) exclude each other")

    def to_dict(self) -> dict[str, Any]:
        """json-able dict (tuples become lists), the ``model_config`` of a checkpoint."""
        out = asdict(self)
        out["t_range"], out["x_range"] = list(self.t_range), list(self.x_range)
        return out

    @classmethod
    def from_dict(cls: type[_C], values: Mapping[str, Any]) -> _C:
        """The config of :meth:`to_dict`'s dict (lists become tuples); an unknown field → ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown {cls._label} config field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        values = dict(values)
        for name in ("t_range", "x_range"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)
