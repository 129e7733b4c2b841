"""A per-module store for tensors that depend on the grid only (phases, readouts, index and stencil
tensors): built on first use, then reused by every forward on that grid, dtype and device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["GridCache"]


class GridCache(dict):
    """``{key: value}`` with :meth:`get_or_build`; keys must name everything the value depends on."""

    def get_or_build(self, key: tuple, build: Callable[[], Any]) -> Any:
        """The value stored under ``key``, built by ``build()`` and stored on the first call."""
        hit = self.get(key)
        if hit is None:
            hit = self[key] = build()
        return hit
