"""Stamps that tell a cache whether the weights it was built from may have changed since.

A tensor's in-place version counter moves with every in-place write through autograd's view of it, but not
with every write: fused optimizer kernels (``Adam(fused=True)``, ``AdamW(fused=True)``, ``SGD(fused=True)``,
torch 2.13) update the parameters without bumping it. So a stamp also carries the number of optimizer steps
taken in this process, counted by a global post-step hook on :class:`torch.optim.Optimizer` (registered once,
on import): any optimizer step, fused or not, makes every stamp taken before it stale. Writes through
``.data`` still pass unnoticed; ``load_state_dict``, ``copy_`` and in-place ops under ``torch.no_grad`` do not.
After such a write, :func:`clear_weight_caches` drops every cache a model holds. Weights that are inference
tensors (a model built inside ``torch.inference_mode``) have no version counter and can be written in place
inside that mode: their stamps never compare equal, so nothing is cached from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["clear_weight_caches", "optimizer_steps", "weight_stamp"]

_steps = 0


def _count_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    global _steps
    _steps += 1


register_optimizer_step_post_hook(_count_step)


def optimizer_steps() -> int:
    """Optimizer steps taken in this process since physml was imported (any optimizer, any parameters)."""
    return _steps


def weight_stamp(weights: Sequence[torch.Tensor]) -> tuple:
    """``(optimizer steps, then (storage address, in-place version, dtype, device) per weight)``: equal
    stamps mean the weights were not written in between, except through ``.data``. A cache that compares
    stamps must hold the weights' storage, so that no other tensor can take its address meanwhile. An
    inference tensor (made inside ``torch.inference_mode``) has no version counter, and inside that mode it
    can be written in place (``load_state_dict``): its entry is a fresh object, equal to no other stamp's."""
    return (_steps, *((w.data_ptr(), object() if w.is_inference() else w._version, w.dtype, w.device) for w in weights))


def clear_weight_caches(model: nn.Module) -> int:
    """Drop what every submodule of ``model`` (itself included) has cached from its weights, by calling
    its ``clear_weight_cache()`` where it has one (:class:`~physml.layers.spectral.SpectralConv`'s block
    matrix, :class:`~physml.models.boon.BOONFNO`'s corrections). Needed only after writing weights through
    ``.data``, which a stamp cannot see; the next inference forward rebuilds them. Returns how many
    submodules had a cache to clear."""
    cleared = 0
    for module in model.modules():
        clear = getattr(module, "clear_weight_cache", None)
        if callable(clear):
            clear()
            cleared += 1
    return cleared
