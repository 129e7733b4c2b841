"""Atomic file writes: a file appears whole under its final name, or not at all.

Datasets and their manifests, checkpoints, summaries, predictions and metrics files are written
through :func:`atomic_path`, so an interrupted stage never leaves a half-written file that a later
stage, DVC or a resumed run would take for a finished one (the evaluation and the report stage a
whole folder in a temporary sibling and move it in instead).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path"]


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` (its folder is created); write the file there.

    When the block succeeds the file is flushed to disk and renamed onto ``final`` (``os.replace``,
    atomic on POSIX); when it raises, the temporary file is removed and ``final`` is left as it was.
    The temporary name carries the process and thread, so concurrent writers never share one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
