"""Intra-op threads of torch inside one pipeline stage.

Every entry point runs a stage with the same number of torch threads, because the count changes torch's
reduction order and so, through training, the reported numbers: ``PHYSML_TORCH_THREADS`` when set, else
:func:`default_threads` (2, or fewer cores if that is all there is: the two cores of the quick profile's
reference machine). The ``physml`` CLI (hence ``dvc repro``) sets the variable from ``--threads``; the Prefect
flow's tasks and direct calls of :mod:`physml.stages` read the same default, so on one machine the flow
reproduces ``dvc repro``'s numbers. The count is per thread here (OpenMP), so tasks the flow runs side by side
in threads each get their own.
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


DEFAULT_THREADS = 2
"""Torch threads of a stage when ``PHYSML_TORCH_THREADS`` is unset (capped at the cores there are)."""


def default_threads() -> int:
    """:data:`DEFAULT_THREADS`, or the number of cores this process may use if that is fewer."""
    return min(DEFAULT_THREADS, available_cores())


def stage_threads() -> int:
    """Threads for a stage: ``PHYSML_TORCH_THREADS`` (an integer ≥ 1), or :func:`default_threads` when unset."""
    value = os.environ.get(ENV)
    if value is None or value == "":
        return default_threads()
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
