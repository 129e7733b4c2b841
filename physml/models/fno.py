"""Fourier neural operator (Li et al., ICLR 2021), in the three layouts BOON uses.

Architecture (Li et al. 2021, sec. 4; the BOON reference's base operators):

    v₀ = P(a(ξ), ξ)                      lift: input value(s) and grid coordinates ξ → ``width``
    v_{l+1} = σ(K_l v_l + W_l v_l + b_l)  ``n_layers`` Fourier layers, σ = GELU (none after the last)
    u = Q₂ σ(Q₁ v_L)                     project: width → ``proj_width`` (128) → out_channels

K_l: :class:`physml.layers.spectral.SpectralConv` (truncated Fourier kernel); W_l: pointwise 1×1
linear map with bias b_l. The grid axes are the spatial axes, plus time when ``nt`` is given:

============================  =========================  ======================================
variant (factory)             input ``u``                output
============================  =========================  ======================================
1-D single step (fno_1d)      ``(B, nx)``                ``(B, nx)``  — u(T, x)
1-D + time (fno_1d_time)      ``(B, nx)``                ``(B, nx, nt)``  — u(t_k, x)
2-D + time (fno_2d_time)      ``(B, nx, ny[, c_in])``    ``(B, nx, ny, nt[, c_out])``
============================  =========================  ======================================

With ``nt`` the input field is repeated along a new last (time) grid axis and the (x[, y], t)
coordinates are appended, as in the reference's multi-step operators. The solution is not periodic in
time, so (as the reference does) ``time_padding`` zeros may be appended to the lifted field along the
time axis before the Fourier layers and cut off before the projection: the layers' FFT then wraps the
last step around to padding instead of to the first step. A trailing channel axis is
present on input/output only when ``in_channels``/``out_channels`` > 1 (e.g. the cavity's (u, v, ω)).
Everything follows the input's device and dtype.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from physml.layers.spectral import SpectralConv

__all__ = ["FNO", "fno_1d", "fno_1d_time", "fno_2d_time"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), not a bool: the size checks of the FNO and of
    its boundary wrappers (:mod:`physml.models.boon`)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _per_axis(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    if hasattr(value, "ndim") and hasattr(value, "tolist"):  # a numpy array or tensor: its integers
        value = value.tolist()
    values = (value,) * n if is_int(value) else tuple(value) if isinstance(value, Sequence) else ()
    if len(values) != n or any(not is_int(v) or v < 1 for v in values):
        raise ValueError(f"{name} must be an int >= 1 or {n} ints >= 1, got {value!r}")
    return tuple(int(v) for v in values)


class FNO(nn.Module):
    """Fourier neural operator on ``n_space`` spatial axes (1 or 2), optionally unrolled in time.

    Args:
        n_space: number of spatial axes (1 or 2).
        nt: output time steps (time becomes the last grid axis); None → single step u₀ ↦ u(T).
        in_channels, out_channels: fields in and out (trailing axis of input/output when > 1).
        width: hidden channels. modes: kept Fourier modes, one int or one per grid axis.
        n_layers: Fourier layers (4). proj_width: hidden size of the projection (128).
        domain: (lo, hi) of every grid axis (spatial axes, then time); default (0, 1) each.
        time_padding: zero steps appended to the time axis inside the Fourier layers (≥ 0; needs ``nt``).
    """

    def __init__(
        self,
        n_space: int = 1,
        nt: int | None = None,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 64,
        modes: int | Sequence[int] = 16,
        n_layers: int = 4,
        proj_width: int = 128,
        domain: Sequence[Sequence[float]] | None = None,
        time_padding: int = 0,
    ) -> None:
        super().__init__()
        if not is_int(n_space) or n_space not in (1, 2):
            raise ValueError(f"n_space must be 1 or 2, got {n_space!r}")
        n_space = int(n_space)
        if nt is not None and (not is_int(nt) or nt < 2):
            raise ValueError(f"nt must be None or an integer >= 2, got {nt!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width),
                            ("n_layers", n_layers), ("proj_width", proj_width)):
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not is_int(time_padding) or time_padding < 0 or (time_padding and nt is None):
            raise ValueError(f"time_padding must be an integer >= 0, and 0 without nt; got {time_padding!r} "
                             f"with nt={nt!r}")
        self.n_space = n_space
        self.nt = None if nt is None else int(nt)
        self.grid_ndim = n_space + (nt is not None)
        in_channels, out_channels, width = int(in_channels), int(out_channels), int(width)
        n_layers, proj_width, time_padding = int(n_layers), int(proj_width), int(time_padding)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.width = width
        self.modes = _per_axis(modes, self.grid_ndim, "modes")
        self.n_layers = n_layers
        self.proj_width = proj_width
        dom = [(0.0, 1.0)] * self.grid_ndim if domain is None else [tuple(map(float, d)) for d in domain]
        if len(dom) != self.grid_ndim or any(len(d) != 2 or not d[1] > d[0] for d in dom):
            raise ValueError(f"domain must be {self.grid_ndim} pairs (lo, hi) with hi > lo, got {domain!r}")
        self.domain = tuple(dom)
        self.time_padding = time_padding
        if self.nt is not None:  # the time axis is the last grid axis, nt + time_padding long inside the layers
            steps = self.nt + time_padding
            if steps // 2 + 1 < self.modes[-1]:
                raise ValueError(f"modes[-1] = {self.modes[-1]} (time) needs (nt + time_padding) // 2 + 1 >= it; "
                                 f"nt + time_padding = {self.nt} + {time_padding} = {steps} allows at most "
                                 f"{steps // 2 + 1}")

        self.lift = nn.Linear(in_channels + self.grid_ndim, width)
        self.spectral = nn.ModuleList(SpectralConv(width, width, self.modes) for _ in range(n_layers))
        self.pointwise = nn.ModuleList(nn.Conv1d(width, width, 1) for _ in range(n_layers))
        self.proj1 = nn.Linear(width, proj_width)
        self.proj2 = nn.Linear(proj_width, out_channels)

    def config(self) -> dict[str, Any]:
        """Constructor arguments as a json-able dict (``FNO(**fno.config())`` rebuilds it)."""
        return {"n_space": self.n_space, "nt": self.nt, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "width": self.width, "modes": list(self.modes),
                "n_layers": self.n_layers, "proj_width": self.proj_width,
                "domain": [list(d) for d in self.domain], "time_padding": self.time_padding}

    # ---- pieces shared with the BOON forward ---------------------------------------------------
    def grid_shape(self, u: torch.Tensor) -> tuple[int, ...]:
        """Grid shape of an input ``u`` (spatial sizes, then nt); ValueError on a wrong shape, an empty batch
        or a dtype other than the weights'."""
        expect = 1 + self.n_space + (self.in_channels > 1)
        if u.dim() != expect or (self.in_channels > 1 and u.shape[-1] != self.in_channels):
            chan = f", {self.in_channels}" if self.in_channels > 1 else ""
            space = ", ".join(f"n{i}" for i in range(self.n_space))
            raise ValueError(f"u must have shape (B, {space}{chan}), got {tuple(u.shape)}")
        if u.shape[0] == 0:
            raise ValueError("u holds no samples (batch size 0)")
        if u.dtype != self.lift.weight.dtype:
            raise ValueError(f"u has dtype {u.dtype} and the model {self.lift.weight.dtype}; convert one of them "
                             "(u.to(dtype) or model.to(dtype))")
        space = tuple(u.shape[1:1 + self.n_space])
        return space + ((self.nt,) if self.nt is not None else ())

    def coordinates(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Grid coordinates, ``(*shape, grid_ndim)``, uniform on ``domain`` including both ends."""
        axes = [torch.linspace(lo, hi, n, device=device, dtype=dtype) for (lo, hi), n in zip(self.domain, shape)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)

    def spacing(self, shape: Sequence[int], axis: int) -> float:
        """Grid step h = (hi - lo) / (n - 1) along grid ``axis``."""
        lo, hi = self.domain[axis]
        return (hi - lo) / (shape[axis] - 1)

    def lifted(self, u: torch.Tensor) -> torch.Tensor:
        """Lift: ``u`` → ``(B, width, *grid)`` = P(u repeated in time, coordinates)."""
        shape = self.grid_shape(u)
        a = u if self.in_channels > 1 else u.unsqueeze(-1)
        if self.nt is not None:
            a = a.unsqueeze(-2).expand(*a.shape[:-1], self.nt, a.shape[-1])
        coords = self.coordinates(shape, u.device, u.dtype).expand(u.shape[0], *shape, self.grid_ndim)
        v = self.lift(torch.cat([a, coords], dim=-1))
        return v.movedim(-1, 1)

    def padded(self, v: torch.Tensor) -> torch.Tensor:
        """``(B, width, *grid)`` → ``(B, width, *grid[:-1], nt + time_padding)``: zeros after the last step.

        Built contiguous: the lifted field is a channels-last view, and ``F.pad`` would keep that layout,
        which made every later FFT and 1×1 convolution 2-6× slower."""
        if not self.time_padding:
            return v
        out = v.new_zeros(*v.shape[:-1], v.shape[-1] + self.time_padding)
        out[..., :v.shape[-1]] = v
        return out

    def cropped(self, v: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`padded`: the first ``nt`` steps of the time axis."""
        return v[..., :self.nt] if self.time_padding else v

    def apply_pointwise(self, layer: int, v: torch.Tensor) -> torch.Tensor:
        """W_l v + b_l on ``(B, width, *grid)`` (a 1×1 convolution over the flattened grid)."""
        return self.pointwise[layer](v.flatten(2)).view_as(v)

    def projected(self, v: torch.Tensor) -> torch.Tensor:
        """Project ``(B, width, *grid)`` → ``(B, *grid, out_channels)``: Q₂ GELU(Q₁ v)."""
        return self.proj2(F.gelu(self.proj1(v.movedim(1, -1))))

    def formatted(self, out: torch.Tensor) -> torch.Tensor:
        """Drop the channel axis when out_channels == 1."""
        return out.squeeze(-1) if self.out_channels == 1 else out

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Operator output for input ``u``; shapes in the module docstring."""
        v = self.padded(self.lifted(u))
        for layer in range(self.n_layers):
            v = self.spectral[layer](v).add_(self.apply_pointwise(layer, v))  # in place: K v is a fresh tensor
            if layer < self.n_layers - 1:
                v = F.gelu(v)
        return self.formatted(self.projected(self.cropped(v)))


def fno_1d(width: int = 64, modes: int = 16, domain: Sequence[float] = (0.0, 1.0), **kwargs: Any) -> FNO:
    """1-D single-step FNO u₀(x) ↦ u(T, x): ``(B, nx) → (B, nx)`` (BOON: width 64, 16 modes)."""
    return FNO(n_space=1, nt=None, width=width, modes=modes, domain=[domain], **kwargs)


def fno_1d_time(nt: int, width: int = 32, modes: int | Sequence[int] = 12,
                domain: Sequence[float] = (0.0, 1.0), t_domain: Sequence[float] = (0.0, 1.0),
                **kwargs: Any) -> FNO:
    """1-D + time FNO (2-D over (x, t)): ``(B, nx) → (B, nx, nt)`` (BOON: width 32, 12 modes)."""
    return FNO(n_space=1, nt=nt, width=width, modes=modes, domain=[domain, t_domain], **kwargs)


def fno_2d_time(nt: int, in_channels: int = 1, out_channels: int = 1, width: int = 20,
                modes: int | Sequence[int] = 8,
                domain: Sequence[Sequence[float]] = ((0.0, 1.0), (0.0, 1.0)),
                t_domain: Sequence[float] = (0.0, 1.0), **kwargs: Any) -> FNO:
    """2-D + time FNO (3-D over (x, y, t)): ``(B, nx, ny[, c_in]) → (B, nx, ny, nt[, c_out])``.

    For the cavity: vorticity only (in/out 1) or e.g. (u, v, ω) (in/out 3); BOON: width 20, 8 modes.
    """
    return FNO(n_space=2, nt=nt, in_channels=in_channels, out_channels=out_channels, width=width,
               modes=modes, domain=[*domain, t_domain], **kwargs)
