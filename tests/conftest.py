"""Shared fixtures: a tiny params.yaml (two cases, one per family) for end-to-end runs through the services."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from physml.config import read_params_yaml

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # as flows/__init__.py sets it


def tiny_params(pc_case: str = "heat", op_case: str = "stokes2") -> dict[str, Any]:
    """params.yaml cut down to one ProbConserv and one BOON case with a few samples and one epoch (and a
    seed study of two seeds in each group)."""
    data = read_params_yaml(ROOT / "params.yaml")
    tiny = copy.deepcopy(data)
    tiny["profile"] = "quick"
    tiny["cases"] = {pc_case: data["cases"][pc_case], op_case: data["cases"][op_case]}
    for case in tiny["cases"].values():
        case["sizes"]["quick"] = {"train": 12, "val": 4, "test": 4}
    if "grid" in tiny["cases"][op_case]:
        tiny["cases"][op_case]["grid"]["quick"] = {"nx": 33, "nt": 4}
    for model in ("anp", "ensemble", "fno"):
        q = tiny["models"][model]["quick"]
        q["train"]["epochs"] = 1
        q["train"]["batch_size"] = 4
    tiny["models"]["anp"]["quick"].update(hidden=8, latent=8, n_latent_samples=4)
    tiny["models"]["ensemble"]["quick"].update(members=2, hidden=8)
    tiny["models"]["fno"]["quick"].update(width=8, modes=4)
    for model in ("anp", "ensemble", "fno"):
        tiny["models"][model]["cases"] = {}
    if "test_grid" in tiny["cases"][pc_case]:
        tiny["cases"][pc_case]["test_grid"]["quick"] = {"nx": 21, "nt": 3}
    tiny["matrix"]["probconserv"]["cases"] = [pc_case]
    tiny["matrix"]["boon"]["cases"] = [op_case]
    tiny["matrix"]["boon"]["seeds"] = {"quick": 2, "paper": 1}
    tiny["matrix"]["probconserv"]["seeds"] = {"quick": 2, "paper": 1}
    return tiny


def fno_modes_for(raw: dict[str, Any], modes: int) -> None:
    """Set ``models.fno.quick.modes`` of a parsed params.yaml to ``modes`` and drop the per-case quick modes, for
    grids cut below what the shipped modes fit (loading checks them against every case's grid)."""
    raw["models"]["fno"]["quick"]["modes"] = modes
    for override in raw["models"]["fno"].get("cases", {}).values():
        override.get("quick", {}).pop("modes", None)


@pytest.fixture
def tiny_params_file(tmp_path: Path) -> Path:
    """A tiny, valid params.yaml in a fresh folder (the folder doubles as the project root)."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return path
