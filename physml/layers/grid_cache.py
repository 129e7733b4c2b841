"""A per-module store for tensors that depend on the grid only (phases, readouts, index and stencil
tensors): built on first use, then reused by every forward on that grid, dtype and device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["GridCache"]


class GridCache(dict):
    """``{key: value}`` with :meth:`get_or_build`; keys must name everything the value depends on."""

    def get_or_build(self, key: tuple, build: Callable[[], Any]) -> Any:
        """The value stored under ``key``, built by ``build()`` and stored on the first call.

        Built outside inference mode even when called inside it: a value first built in an inference-mode
        forward (e.g. a validation loop's) would be an inference tensor, which autograd refuses to save, so
        every later training forward that used it would fail.
        """
        hit = self.get(key)
        if hit is None:
            with torch.inference_mode(False):
                hit = self[key] = build()
        return hit
