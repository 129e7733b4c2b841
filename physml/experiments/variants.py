"""How each operator case is posed to an FNO, and the Fourier modes its grid can hold (torch-free).

:mod:`physml.experiments.boon` builds and trains the networks from these; :mod:`physml.config` reads them
when params.yaml is loaded, so that ``models.fno.modes`` is checked against each case's grid there, with
the key path and the allowed range, rather than when a stage builds the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """How a case is posed as an operator-learning problem.

    ``n_space``: spatial axes (1 or 2); ``multistep``: output all nt times (time as the last grid axis)
    rather than u(T); ``boundary``: "dirichlet" or "neumann"; ``channels``: field channels used (cavity:
    (0, 1) = (u, v)); ``param_inputs``: parameters fed as constant input channels.
    """

    n_space: int
    multistep: bool
    boundary: str
    channels: tuple[int, ...] = ()
    param_inputs: tuple[str, ...] = ()

    @property
    def out_channels(self) -> int:
        return max(1, len(self.channels))

    @property
    def in_channels(self) -> int:
        return self.out_channels + len(self.param_inputs)

    @property
    def axes(self) -> tuple[str, ...]:
        """Names of the FNO's grid axes, in the model layout's order (x first, time last)."""
        return ("x", "y")[: self.n_space] + (("t",) if self.multistep else ())

    def fno_grid(self, nx: int, nt: int, time_padding: int) -> list[int]:
        """Sizes of the grid the Fourier layers transform: ``nx`` per spatial axis, then ``nt + time_padding``
        on a multi-step case's time axis (the zero steps appended inside the layers)."""
        return [nx] * self.n_space + ([nt + time_padding] if self.multistep else [])


VARIANTS: dict[str, Variant] = {
    "burgers_dirichlet": Variant(n_space=1, multistep=False, boundary="dirichlet"),
    "heat_neumann": Variant(n_space=1, multistep=True, boundary="neumann"),
    "stokes2": Variant(n_space=1, multistep=True, boundary="dirichlet"),
    "wave": Variant(n_space=1, multistep=True, boundary="dirichlet", param_inputs=("c",)),
    "cavity": Variant(n_space=2, multistep=True, boundary="dirichlet", channels=(0, 1)),
}


def variant(case: str) -> Variant:
    """The case's :class:`Variant`; ValueError naming the cases that have one."""
    if case not in VARIANTS:
        raise ValueError(f"case: {case!r} has no BOON variant; allowed: {', '.join(VARIANTS)}")
    return VARIANTS[case]


def mode_caps(grid: Sequence[int]) -> list[int]:
    """Most Fourier modes each axis of ``grid`` holds: n//2 on every axis but the last, n//2 + 1 on the last
    (the half spectrum of the real FFT, ``rfftn``)."""
    return [n // 2 for n in grid[:-1]] + [grid[-1] // 2 + 1]


def modes_per_axis(modes: int | Sequence[int], grid: Sequence[int]) -> list[int]:
    """``modes`` for each axis of ``grid``: one number for every axis, or one per axis.

    ValueError when a list has another length than the grid has axes, or when an axis asks for more modes
    than :func:`mode_caps` allows; the message gives the allowed range of each axis.
    """
    per_axis = [int(modes)] * len(grid) if isinstance(modes, int) else [int(m) for m in modes]
    caps = mode_caps(grid)
    if len(per_axis) != len(grid):
        raise ValueError(f"{list(modes)} gives {len(per_axis)} axes, but the FNO grid {list(grid)} has {len(grid)}; "
                         f"give one number for every axis or {len(grid)} (allowed per axis: "
                         f"{', '.join(f'[1, {c}]' for c in caps)})")
    if any(m > c for m, c in zip(per_axis, caps)):
        raise ValueError(f"{modes} is more than the FNO grid {list(grid)} holds; allowed per axis: "
                         f"{', '.join(f'[1, {c}]' for c in caps)} (n//2, n//2 + 1 on the last)")
    return per_axis


__all__ = ["VARIANTS", "Variant", "mode_caps", "modes_per_axis", "variant"]
