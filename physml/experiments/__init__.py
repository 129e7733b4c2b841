"""Experiment implementations per method family: train, constrain, evaluate (one signature each)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from physml.data import MARKER, changed_files, missing_files
from physml.data.generate import _sha256 as sha256_file

#: The file constrain writes in a predictions folder and evaluate reads (both families); it records the
#: data and networks that made it (attrs ``data_version`` and ``checkpoints``).
PREDICTIONS_FILE = "predictions.h5"


def rerun(step: str, case: str, profile: str, model: str | None = None, force: bool = False) -> str:
    """The command a refusal suggests, ``physml <step> --case <case> [--model <model>] --profile <profile>
    [--force]``: it remakes what was refused for the profile that read it. The CLI adds the run's own
    ``--params`` and ``--root`` where it gave them (``physml.cli._completed``); this module does not know them."""
    model_option = f" --model {model}" if model else ""
    return f"`physml {step} --case {case}{model_option} --profile {profile}{' --force' if force else ''}`"


def data_version(data_dir: str | Path, case: str, profile: str) -> str:
    """The fingerprint that a case's data folder records in its completion marker: what a checkpoint
    trained on it stores, so that new data are never resumed as old (:func:`physml.training.resumable`).

    A folder whose generation did not finish (no ``dataset.json``: a failed generation keeps the splits it
    finished, and those are not trained on), that lost a file the marker lists, or whose files no longer
    have the sha256 the marker recorded (edited, truncated or swapped in from another dataset) → ValueError
    naming it.
    """
    data_dir = Path(data_dir)
    marker = data_dir / MARKER
    if not marker.is_file():
        raise ValueError(f"{data_dir}: no completion marker {MARKER}: the data were not generated there, or their "
                         f"generation did not finish; run {rerun('generate', case, profile)}")
    info = json.loads(marker.read_text())
    missing = missing_files(data_dir, info)
    if missing:
        raise ValueError(f"{data_dir}: files listed in {MARKER} are missing: {', '.join(missing)}; "
                         f"run {rerun('generate', case, profile)}")
    changed = changed_files(data_dir, info)
    if changed:
        raise ValueError(f"{data_dir}: {', '.join(changed)} differ from what {MARKER} recorded when they were "
                         f"generated; run {rerun('generate', case, profile, force=True)}")
    return str(info["fingerprint"])


def checkpoints_digest(model_dir: str | Path) -> str:
    """sha256 over the checkpoints (``*.pt``, by name and bytes) of a model folder: which networks made a
    predictions file (recorded there by constrain, checked by evaluate)."""
    h = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*.pt")):
        h.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return h.hexdigest()
