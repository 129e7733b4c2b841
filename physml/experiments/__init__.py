"""Experiment implementations per method family: train, constrain, evaluate (one signature each)."""

from __future__ import annotations

import json
from pathlib import Path

from physml.data import MARKER


def data_version(data_dir: str | Path) -> str | None:
    """The fingerprint that a case's data folder records in its completion marker (None without one): what
    a checkpoint trained on it stores, so that new data are never resumed as old (:func:`physml.training.resumable`)."""
    marker = Path(data_dir) / MARKER
    return json.loads(marker.read_text()).get("fingerprint") if marker.is_file() else None
