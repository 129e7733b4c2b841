"""Experiment implementations per method family: train, constrain, evaluate (one signature each)."""

from __future__ import annotations

import json
from pathlib import Path

from physml.data import MARKER, is_complete


def data_version(data_dir: str | Path) -> str:
    """The fingerprint that a case's data folder records in its completion marker: what a checkpoint
    trained on it stores, so that new data are never resumed as old (:func:`physml.training.resumable`).

    A folder whose generation did not finish (no ``dataset.json``, or a split file it lists is missing)
    → ValueError: a failed generation keeps the splits it finished, and those are not trained on.
    """
    data_dir = Path(data_dir)
    if not is_complete(data_dir):
        raise ValueError(f"{data_dir}: the data are incomplete (no completion marker {MARKER}, or a split it "
                         f"lists is missing); generation did not finish there — run `physml generate` for this case")
    return str(json.loads((data_dir / MARKER).read_text())["fingerprint"])
