"""The pipeline's stages as plain functions: what ``dvc repro`` (through the CLI) and the Prefect flows call.

    generate ──► train ──► constrain ──► evaluate ──► report

Every stage reads and writes files under one project root, laid out by :class:`Layout`, and returns the
path it wrote, so orchestrators pass paths and run ids, never tensors. A stage keyed by ``(case, model)``
dispatches on the problem's family to :mod:`physml.experiments.probconserv` or
:mod:`physml.experiments.boon`, which share one signature per stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from physml import pdes
from physml.config import ParamsModel


@dataclass(frozen=True)
class Layout:
    """Where each stage's outputs live for one profile (all relative to ``root``)."""

    root: Path
    profile: str

    def data(self, case: str) -> Path:
        return self.root / "data" / self.profile / case

    def models(self, case: str, model: str) -> Path:
        return self.root / "models" / self.profile / case / model

    def predictions(self, case: str, model: str) -> Path:
        return self.root / "predictions" / self.profile / case / model

    def metrics(self, case: str, model: str) -> Path:
        """Holds ``<constraint>.json`` (one DVC metrics file per case × model × constraint) and ``figures/``."""
        return self.root / "metrics" / self.profile / case / model

    def reports(self) -> Path:
        return self.root / "reports" / self.profile


def experiment_module(case: str) -> ModuleType:
    """The experiment implementation for ``case``'s family (ProbConserv or BOON)."""
    family = pdes.get(case).family
    if family == "probconserv":
        from physml.experiments import probconserv

        return probconserv
    from physml.experiments import boon

    return boon


def _check_model(params: ParamsModel, case: str, model: str) -> None:
    for group_name in ("probconserv", "boon"):
        group = getattr(params.matrix, group_name)
        if case in group.cases:
            if model not in group.models:
                raise ValueError(f"matrix.{group_name}.models: {model!r} is not configured for {case}; allowed: {', '.join(group.models)}")
            return
    raise ValueError(f"matrix: case {case!r} is in no experiment group; configured: "
                     f"{', '.join(params.matrix.probconserv.cases + params.matrix.boon.cases)}")


def generate(case: str, params: ParamsModel, root: Path, progress: bool = True) -> Path:
    """Write every split of ``case`` (see :func:`physml.data.generate.generate_case`)."""
    from physml.data.generate import generate_case

    return generate_case(case, params, Path(root) / "data", progress=progress)


def train(case: str, model: str, params: ParamsModel, root: Path, progress: bool = True) -> Path:
    """Train every network ``case`` × ``model`` needs (e.g. the plain and the SoftC black box)."""
    _check_model(params, case, model)
    lay = Layout(Path(root), params.profile)
    return experiment_module(case).train(case, model, params, lay.data(case), lay.models(case, model), progress=progress)


def constrain(case: str, model: str, params: ParamsModel, root: Path) -> Path:
    """Predict the test split and apply every constraint of the matrix; writes the predictions file."""
    _check_model(params, case, model)
    lay = Layout(Path(root), params.profile)
    return experiment_module(case).constrain(
        case, model, params, lay.data(case), lay.models(case, model), lay.predictions(case, model)
    )


def evaluate(case: str, model: str, params: ParamsModel, root: Path) -> dict[str, dict[str, float]]:
    """Metrics (``<constraint>.json``) and figures of every constraint for ``case`` × ``model``."""
    _check_model(params, case, model)
    lay = Layout(Path(root), params.profile)
    return experiment_module(case).evaluate(
        case, model, params, lay.data(case), lay.predictions(case, model), lay.metrics(case, model)
    )
