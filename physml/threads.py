"""Intra-op threads of torch inside one pipeline stage.

A stage of ``dvc repro`` runs alone (stages are sequential), so it should use every core; the Prefect
flow runs several stages at once in one process, where one thread each avoids oversubscription and
``torch.set_num_threads`` (process-wide) is not fought over. The environment variable
``PHYSML_TORCH_THREADS`` chooses; unset means 1. The ``physml`` CLI sets it from ``--threads``
(default 2, or fewer cores if that is all there is: the thread count changes torch's reduction order,
so a fixed default keeps reported numbers reproducible across machines).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

ENV = "PHYSML_TORCH_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def stage_threads() -> int:
    """Threads for a stage: ``PHYSML_TORCH_THREADS`` (an integer ≥ 1) or 1 when unset."""
    value = os.environ.get(ENV)
    if value is None or value == "":
        return 1
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV} must be an integer >= 1, got {value!r}")
    return n


@contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (default :func:`stage_threads`), then restore."""
    old = torch.get_num_threads()
    torch.set_num_threads(stage_threads() if n is None else n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
