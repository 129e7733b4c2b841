"""Experiment implementations per method family: train, constrain, evaluate (one signature each)."""

from __future__ import annotations

import json
from pathlib import Path

from physml.data import MARKER, missing_files


def data_version(data_dir: str | Path) -> str:
    """The fingerprint that a case's data folder records in its completion marker: what a checkpoint
    trained on it stores, so that new data are never resumed as old (:func:`physml.training.resumable`).

    A folder whose generation did not finish (no ``dataset.json``: a failed generation keeps the splits it
    finished, and those are not trained on) or that lost a file the marker lists → ValueError naming it.
    """
    data_dir = Path(data_dir)
    marker = data_dir / MARKER
    if not marker.is_file():
        raise ValueError(f"{data_dir}: no completion marker {MARKER}: the data were not generated there, or their "
                         f"generation did not finish; run `physml generate` for this case")
    info = json.loads(marker.read_text())
    missing = missing_files(data_dir, info)
    if missing:
        raise ValueError(f"{data_dir}: files listed in {MARKER} are missing: {', '.join(missing)}; "
                         f"run `physml generate` for this case")
    return str(info["fingerprint"])
