"""What both families' seed studies share: the folder of each seed, the check of each error and the summary
they write (``seeds.json``). A seed study trains the plain networks again with the seeds s_1 … s_n of
:meth:`physml.config.ParamsModel.study_seeds` (the first is the project seed, whose networks it reuses) and
evaluates every constraint on each, so that a difference between two constraints can be told from the seed's
own spread (:mod:`physml.report`). The seed-study stages of both families depend on this module (dvc.yaml)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["finite_error", "seed_folder", "seed_summary"]


def seed_folder(seed: int, project_seed: int, model_dir: str | Path, study_dir: str | Path) -> Path:
    """The model folder of ``seed`` in a seed study: the main training's (``model_dir``) for the project seed,
    whose networks the study reuses, and ``study_dir/seed_<seed>`` for every other seed, which the study trains."""
    return Path(model_dir) if seed == project_seed else Path(study_dir) / f"seed_{seed}"


def finite_error(error: float, metric: str, what: str, out_path: str | Path) -> float:
    """``error`` (a value of ``metric``) as a float, or ValueError naming ``what`` (case × model × constraint, seed)
    if it is NaN or inf: as evaluate refuses one, a seed study writes no file (``out_path``) whose mean would be
    NaN."""
    error = float(error)
    if not math.isfinite(error):
        raise ValueError(f"{what}: non-finite {metric} ({error}); nothing written to {out_path}")
    return error


def seed_summary(case: str, model: str, seeds: Sequence[int], metric: str, errors: Mapping[str, Sequence[float]],
                 ahead: str) -> dict[str, Any]:
    """The summary a seed study writes (``seeds.json``), for both method families::

        {"case", "model", "seeds": [s_1, …, s_n],
         metric: {constraint: [e_1, …, e_n]},                 # e_i: evaluate's metric for seed s_i
         metric + "_mean": {constraint: (1/n) Σ_i e_i},
         metric + "_spread": {constraint: sample standard deviation √(Σ_i (e_i − ē)² / (n − 1)) (0 for n = 1)},
         ahead + "_ahead": #{i : e_i(ahead) ≤ e_i(none)}}      # when both ``ahead`` and "none" are constraints

    ``errors``: constraint → its n errors, in the order of ``seeds``.
    """
    errors = {c: [float(e) for e in v] for c, v in errors.items()}
    result: dict[str, Any] = {
        "case": case, "model": model, "seeds": list(seeds), metric: errors,
        f"{metric}_mean": {c: float(np.mean(v)) for c, v in errors.items()},
        f"{metric}_spread": {c: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for c, v in errors.items()},
    }
    if "none" in errors and ahead in errors:
        result[f"{ahead}_ahead"] = sum(a <= f for a, f in zip(errors[ahead], errors["none"]))
    return result
