"""Truncated-Fourier kernel layers (the K of an FNO layer) and their boundary responses.

K(v) = F⁻¹( R · (F v)|kept )  (Li et al., "Fourier neural operator for parametric PDEs", ICLR 2021,
eq. 4–5): real FFT over the grid axes, keep the lowest ``modes`` frequencies per axis (both signs on
every axis but the last, which is the half-spectrum axis of ``rfftn``), mix channels with one complex
matrix per kept frequency, inverse FFT.

The kept frequencies are stored *compactly*: on every axis but the last the indices ``[0, m)`` then
``[n - m, n)`` (true frequencies ``0..m-1, -m..-1``), on the last axis ``[0, m)``. The complex weights
are one tensor of shape ``(in, out, 2 m_1, ..., 2 m_{d-1}, m_d)`` (the four/eight "corner" weights of
the reference FNO are blocks of it), stored as real numbers with a trailing axis of size 2 so that
``.double()`` / ``.to(dtype)`` convert them with the rest of the model.

Because K is linear and translation invariant, its response to a unit vector is known in closed form
from the weights (:meth:`SpectralConv.response`); BOON's correction (physml.models.boon) uses that and
the partial transforms below instead of probing the layer with unit vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from physml.layers.grid_cache import GridCache
from physml.layers.weight_stamp import weight_stamp

__all__ = ["SpectralConv", "SpectralConv1d", "SpectralConv2d", "SpectralConv3d"]


class SpectralConv(nn.Module):
    """d-dimensional truncated-Fourier kernel: ``(B, in, n_1, ..., n_d) → (B, out, n_1, ..., n_d)``.

    Args:
        in_channels, out_channels: channel counts (≥ 1).
        modes: kept frequencies per axis, one int per axis (length d). On every axis but the last the
            grid size must satisfy ``n ≥ 2·modes``; on the last ``n // 2 + 1 ≥ modes``.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int]) -> None:
        super().__init__()
        modes = tuple(int(m) for m in modes)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
        if not modes or any(m < 1 for m in modes):
            raise ValueError(f"modes must be a non-empty sequence of integers >= 1, got {modes}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = modes
        self.ndim = len(modes)
        kept = tuple(2 * m for m in modes[:-1]) + (modes[-1],)
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(in_channels, out_channels, *kept, 2))
        self._grid_cache = GridCache()
        self._block: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    # ---- helpers on the compact spectrum -------------------------------------------------------
    def complex_weight(self) -> torch.Tensor:
        """The complex weights R, shape ``(in, out, *kept)`` (the mix uses only the real part of R at the
        zero frequency, :meth:`block_weight`)."""
        return torch.view_as_complex(self.weight)

    def check_grid(self, shape: Sequence[int]) -> None:
        """ValueError unless the grid ``shape`` (d sizes) can hold the kept modes."""
        if len(shape) != self.ndim:
            raise ValueError(f"grid must have {self.ndim} axes, got shape {tuple(shape)}")
        for axis, (n, m) in enumerate(zip(shape, self.modes)):
            last = axis == self.ndim - 1
            if (last and n // 2 + 1 < m) or (not last and n < 2 * m):
                need = f"n // 2 + 1 >= {m}" if last else f"n >= {2 * m}"
                raise ValueError(f"grid axis {axis} has n = {n} points; modes = {m} needs {need}")

    def frequencies(self, axis: int, device: torch.device | None = None) -> torch.Tensor:
        """True integer frequencies of the compact kept indices along ``axis``."""
        m = self.modes[axis]
        if axis == self.ndim - 1:
            return torch.arange(m, device=device)
        return torch.cat([torch.arange(m, device=device), torch.arange(-m, 0, device=device)])

    def gather(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Full ``rfftn`` spectrum ``(B, C, n_1, ..., n_d//2+1)`` → compact kept ``(B, C, *kept)``."""
        for axis, m in enumerate(self.modes):
            dim = 2 + axis
            if axis == self.ndim - 1:
                spectrum = spectrum.narrow(dim, 0, m)
            else:
                n = spectrum.shape[dim]
                spectrum = torch.cat([spectrum.narrow(dim, 0, m), spectrum.narrow(dim, n - m, m)], dim=dim)
        return spectrum

    def scatter(self, compact: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Compact ``(B, C, *kept)`` → the spectrum of a grid ``shape`` with zeros on every axis but the last.

        The last (half-spectrum) axis keeps its kept length: ``irfftn`` with ``s=shape`` zero-pads it
        itself, without a copy.
        """
        for axis, m in enumerate(self.modes[:-1]):
            dim = 2 + axis
            zeros = compact.new_zeros(*compact.shape[:dim], shape[axis] - 2 * m, *compact.shape[dim + 1:])
            compact = torch.cat([compact.narrow(dim, 0, m), zeros, compact.narrow(dim, m, m)], dim=dim)
        return compact

    def block_weight(self) -> torch.Tensor:
        """R as one real block matrix per kept frequency: ``(K, 2·in, 2·out)``, K = the number of kept
        frequencies, rows (i, re/im) and columns (o, re/im) interleaved as ``view_as_real`` lays them out.
        At the zero frequency (the first block) R is taken real: a real field's spectrum is real there, so the
        mixed spectrum is too (an imaginary part there is undefined input to a c2r transform), and on 1-D
        grids every backend's inverse transform returns the same field (on more axes the rest of the last
        axis's zero-frequency plane is still left to the transform's Hermitian symmetrisation). On the CPU
        this changes no output and no gradient.

        A complex row x times R_k is the real row [x_r, x_i] times [[Re R_k, Im R_k], [-Im R_k, Re R_k]], so
        the channel mix is one batched *real* product over the kept frequencies: forward + backward 1.4×
        (1-D + time) to 2.7-3.8× (cavity) faster than the complex einsum on two CPU cores; in 1-D (16 kept
        modes, width 64) it ranged from 1.1× faster to 1.2× slower between the VMs measured
        (benchmarks/boon_speed.py prints the ratios). Without autograd
        the matrix is cached until the weight may have changed (:func:`~physml.layers.weight_stamp.weight_stamp`:
        its storage, its in-place version, or any optimizer step since); with autograd it is built on every
        call, so a caller that needs it twice in one forward passes it on.
        """
        w = self.weight
        grad = torch.is_grad_enabled() and w.requires_grad
        stamp = weight_stamp((w,))
        if not grad and self._block is not None and self._block[0] == stamp:
            return self._block[2]
        # built as a normal tensor even inside torch.inference_mode(): a cached inference tensor would break a
        # later forward with autograd on frozen weights ("inference tensors cannot be saved for backward")
        # (inference_mode(False) alone would switch autograd on: the grad mode is set explicitly)
        with torch.inference_mode(False), torch.set_grad_enabled(grad):
            re, im = w.unbind(-1)
            rows = torch.stack([w, torch.stack([-im, re], dim=-1)], dim=1)  # (in, re/im, out, *kept, re/im)
            nk = self.ndim
            rows = rows.permute(*range(3, 3 + nk), 0, 1, 2, 3 + nk)  # (*kept, in, re/im, out, re/im)
            block = rows.reshape(-1, 2 * self.in_channels, 2 * self.out_channels)
            # R at the zero frequency (kept index 0 on every axis) taken real: pocketfft's c2r drops an
            # imaginary part there, cuFFT's adds it at 2^13 and 2^14 points (pytorch/pytorch#154496)
            block[0, 0::2, 1::2] = 0
            block[0, 1::2, 0::2] = 0
        self._block = None if grad else (stamp, w.detach(), block)
        return block

    def clear_weight_cache(self) -> None:
        """Drop the cached :meth:`block_weight` (see :func:`~physml.layers.weight_stamp.clear_weight_caches`)."""
        self._block = None

    def mix(self, compact: torch.Tensor, block: torch.Tensor | None = None) -> torch.Tensor:
        """Channel mixing per kept frequency: ``(B, in, *kept) → (B, out, *kept)``, Ŷ_o = Σ_i X̂_i R_io.

        One batched real product with :meth:`block_weight` (or ``block``, the same matrix). The output is
        *mode-major* in memory, ``(*kept, B, out)``, the layout :meth:`contract_axis` and
        :meth:`add_end_response` read without a copy.
        """
        block = self.block_weight() if block is None else block
        batch, kept = compact.shape[0], compact.shape[2:]
        modes_first = compact.permute(*range(2, 2 + self.ndim), 0, 1).contiguous()  # (*kept, B, in)
        rows = torch.view_as_real(modes_first).view(-1, batch, 2 * self.in_channels)
        out = torch.view_as_complex(torch.bmm(rows, block).view(*kept, batch, self.out_channels, 2))
        return out.permute(self.ndim, self.ndim + 1, *range(self.ndim))

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Compact kept spectrum of ``x`` ``(B, in, *grid)`` → ``(B, in, *kept)``."""
        dims = tuple(range(2, 2 + self.ndim))
        return self.gather(torch.fft.rfftn(x, dim=dims))

    def to_grid(self, compact: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Inverse transform of a compact spectrum onto a grid ``shape``: ``(B, C, *shape)``."""
        dims = tuple(range(2, 2 + self.ndim))
        return torch.fft.irfftn(self.scatter(compact, shape), s=tuple(shape), dim=dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """K(x) for ``x`` of shape ``(B, in, n_1, ..., n_d)``; returns ``(B, out, n_1, ..., n_d)``."""
        if x.dim() != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, {self.ndim} grid axes), got {tuple(x.shape)}"
            )
        shape = tuple(x.shape[2:])
        self.check_grid(shape)
        return self.to_grid(self.mix(self.spectrum(x)), shape)

    # ---- closed-form responses and partial transforms (used by BOON) ---------------------------
    def phase(self, axis: int, n: int, positions: Sequence[int], sign: int, dtype: torch.dtype,
              device: torch.device) -> torch.Tensor:
        """e^{sign·2πi k j / n} for the kept frequencies k of ``axis`` and grid indices j in ``positions``.

        Returns ``(K_axis, len(positions))`` in the complex ``dtype``, computed in double precision from the
        exact fraction of a turn (:meth:`_turns`), so a complex64 phase is rounded once, at the end; cached per
        arguments (it depends on the grid only), so a forward pass does not rebuild it.
        """
        def compute() -> torch.Tensor:
            return torch.exp(sign * 2j * math.pi * self._turns(axis, n, positions, device)).to(dtype)

        return self._grid_cache.get_or_build(("phase", axis, n, tuple(positions), sign, dtype, device), compute)

    def _turns(self, axis: int, n: int, positions: Sequence[int], device: torch.device) -> torch.Tensor:
        """(k j mod n) / n for the kept frequencies k of ``axis`` and the integers j in ``positions``: the
        fraction of a turn of e^{2πi k j / n}, ``(K_axis, len(positions))`` in float64. The product k j is
        reduced modulo n in integers first, so the angle is exact before it is scaled (in float32, 2π k j / n
        itself reaches ~100 rad at 512 points and 16 modes, and its phase would carry 50× float32's
        epsilon)."""
        k = self.frequencies(axis, device)
        j = torch.as_tensor(list(positions), device=device, dtype=k.dtype)
        return torch.remainder(torch.outer(k, j), n).to(torch.float64) / n

    def _last_axis_weights(self, n_last: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Hermitian multiplicity of each kept last-axis frequency: 1 at 0 (and Nyquist), else 2."""
        k = torch.arange(self.modes[-1], device=device)
        c = torch.full((self.modes[-1],), 2.0, device=device, dtype=dtype)
        c[k == 0] = 1.0
        if n_last % 2 == 0:
            c[k == n_last // 2] = 1.0
        return c

    def response(self, shape: Sequence[int], axis: int, offsets: Sequence[int]) -> torch.Tensor:
        """Closed-form kernel entries ``(K e_{p,i})_{p + Δ e_axis, o}`` for the shifts Δ in ``offsets``.

        For real input, ``irfftn(Z)(q) = (1/N) Σ_{kept k} c_k Re(Z_k e^{2πi k·q/n})`` with c_k = 2 on the
        interior of the half-spectrum axis and 1 at its 0 (and Nyquist) frequency; a unit vector at p has
        Z_k = R_k e^{-2πi k·p/n}, so the response at q = p + Δ e_axis is
        ``(1/N) Σ_k c_k Re(R_k e^{2πi k_axis Δ / n_axis})`` — the same for every p (translation
        invariance). Returns ``(len(offsets), out, in)``; no data and no FFT involved.
        """
        self.check_grid(shape)
        w = self.weight  # (in, out, *kept, re/im)
        weights = self._response_weights(tuple(shape), axis, tuple(offsets), w.dtype, w.device)  # (kept·2, D)
        resp = w.reshape(self.in_channels * self.out_channels, -1) @ weights
        return resp.view(self.in_channels, self.out_channels, -1).permute(2, 1, 0)

    def _response_weights(self, shape: tuple[int, ...], axis: int, offsets: tuple[int, ...], dtype: torch.dtype,
                          device: torch.device) -> torch.Tensor:
        """:meth:`response` as one real matrix on the weights' memory: ``(prod(kept)·2, D)`` with entries
        c_k cos(θ_dk) / N on the real parts and -c_k sin(θ_dk) / N on the imaginary parts, θ_dk =
        2π k_axis Δ_d / n_axis (Re(R e^{iθ}) = Re R cos θ - Im R sin θ). Cached per grid, axis, offsets,
        dtype and device."""
        def compute() -> torch.Tensor:
            kept = self.weight.shape[2:-1]
            theta = 2 * math.pi * self._turns(axis, shape[axis], offsets, device).T  # (D, K_axis), float64
            along = [1] * self.ndim
            along[axis] = -1
            theta = theta.view(len(offsets), *along)
            last = [1] * (self.ndim - 1) + [-1]
            c = self._last_axis_weights(shape[-1], device, torch.float64).view(*last) / math.prod(shape)
            cos = (torch.cos(theta) * c).expand(len(offsets), *kept)
            sin = (torch.sin(theta) * c).expand(len(offsets), *kept)
            return torch.stack([cos, -sin], dim=-1).reshape(len(offsets), -1).T.to(dtype).contiguous()

        return self._grid_cache.get_or_build(("response", shape, axis, offsets, dtype, device), compute)

    def values_at(self, compact: torch.Tensor, shape: Sequence[int], axis: int,
                  positions: Sequence[int]) -> torch.Tensor:
        """Values of ``to_grid(compact, shape)`` on the hyperplanes ``axis = j`` for j in ``positions``.

        Cost O(B·C·kept·len(positions)) plus a transform of the face only, instead of a full inverse
        FFT. Returns ``(B, C, *face_shape, len(positions))`` with face_shape = shape without ``axis``.
        """
        n = shape[axis]
        readout = self.readout(axis, n, positions, compact.dtype, compact.device)  # (K_axis, P)
        face = self.contract_axis(compact, axis, readout.T)  # (B, C, *kept_without_axis, P)
        if self.ndim == 1:
            return face.real
        if axis == self.ndim - 1:
            face_dims = tuple(range(2, 2 + self.ndim - 1))
            if face_dims:
                face = self._scatter_except(face.movedim(-1, 2), shape, axis, full_last=True)
                face = torch.fft.ifftn(face, dim=tuple(d + 1 for d in face_dims)).movedim(2, -1)
            return face.real
        face = face.movedim(-1, 2)  # (B, C, P, *kept_without_axis)
        face = self._scatter_except(face, shape, axis, full_last=False)
        face_shape = [s for a, s in enumerate(shape) if a != axis]
        face = torch.fft.irfftn(face, s=face_shape, dim=tuple(range(3, 3 + len(face_shape))))
        return face.movedim(2, -1)

    @staticmethod
    def contract_axis(compact: torch.Tensor, axis: int, matrix: torch.Tensor) -> torch.Tensor:
        """Σ_k matrix[p, k] compact[b, c, ..., k (on ``axis``), ...]: ``(B, C, *kept)`` → ``(B, C, *kept_without_axis, P)``.

        The channel mix leaves its output mode-major in memory, ``(*kept, B, C)``; viewed as
        ``(lead, K_axis, rest)`` (lead: the kept axes before ``axis``) the contraction is one batched
        matrix product on it, without a copy (a spectrum in another layout is copied once by ``reshape``).
        """
        kept = compact.shape[2:]
        lead = math.prod(kept[:axis])
        rows = compact.permute(*range(2, compact.dim()), 0, 1).reshape(lead, kept[axis], -1)
        out = (matrix @ (rows[0] if lead == 1 else rows)).view(*kept[:axis], matrix.shape[0], *kept[axis + 1:],
                                                               *compact.shape[:2])
        return out.permute(-2, -1, *[d for d in range(len(kept)) if d != axis], axis)

    def readout(self, axis: int, n: int, positions: Sequence[int], dtype: torch.dtype,
                device: torch.device) -> torch.Tensor:
        """e^{2πi k j / n} / n along ``axis``, times the multiplicity c_k on the half-spectrum axis:
        ``(K_axis, P)``, cached like :meth:`phase`. On a 1-D grid the field's values at ``positions`` are
        ``contract_axis(compact, 0, readout.T).real``, and linear combinations of them fold into it."""
        def compute() -> torch.Tensor:
            phase = self.phase(axis, n, positions, 1, torch.complex128, device)  # rounded to dtype once, below
            if axis == self.ndim - 1:
                phase = self._last_axis_weights(n, device, torch.float64)[:, None] * phase
            return (phase / n).to(dtype)

        return self._grid_cache.get_or_build(("readout", axis, n, tuple(positions), dtype, device), compute)

    def _scatter_except(self, compact: torch.Tensor, shape: Sequence[int], skip: int,
                        full_last: bool) -> torch.Tensor:
        """Scatter compact axes (all but ``skip``) of ``(B, C, P, *kept_without_skip)`` to full size."""
        axes = [a for a in range(self.ndim) if a != skip]
        for pos, axis in enumerate(axes):
            dim = 3 + pos
            m = self.modes[axis]
            last = axis == self.ndim - 1
            if last and not full_last:
                n = shape[axis] // 2 + 1
                zeros = compact.new_zeros(*compact.shape[:dim], n - m, *compact.shape[dim + 1:])
                compact = torch.cat([compact, zeros], dim=dim)
            else:
                n = shape[axis]
                zeros = compact.new_zeros(*compact.shape[:dim], n - 2 * m, *compact.shape[dim + 1:])
                compact = torch.cat([compact.narrow(dim, 0, m), zeros, compact.narrow(dim, m, m)], dim=dim)
        return compact

    def end_block(self, n: int, block: torch.Tensor | None = None) -> torch.Tensor:
        """1-D only: K's output spectrum for a field on ``n`` points that is zero except at its two ends, as one
        real matrix per kept frequency, ``(K, 2·in, 2·out)``: rows (end, i), the real end values v₀ then v_N;
        columns (o, re/im) interleaved as :meth:`mix` lays its output out.

        That field's DFT is x_k = v₀ + ω_k v_N, ω_k = e^{-2πik(n-1)/n}, so its row through the block weights
        (``block``, or :meth:`block_weight`) is [Re x_k, Im x_k] B_k = v₀ B_k^re + v_N (Re ω_k B_k^re +
        Im ω_k B_k^im), with B_k^re, B_k^im the block's rows that take the real and the imaginary parts:
        E_k = [B_k^re; Re ω_k B_k^re + Im ω_k B_k^im]. Built from the block (elementwise), so it carries
        gradients with it.
        """
        if self.ndim != 1:
            raise ValueError(f"end_block is defined on 1-D kernels, this one has {self.ndim} axes")
        block = self.block_weight() if block is None else block
        rows = block.view(self.modes[0], self.in_channels, 2, 2 * self.out_channels)
        real_rows, imag_rows = rows[:, :, 0], rows[:, :, 1]
        complex_dtype = torch.promote_types(block.dtype, torch.complex64)
        omega = torch.view_as_real(self.phase(0, n, (n - 1,), -1, complex_dtype, block.device)[:, 0])  # (K, re/im)
        far = torch.addcmul(omega[:, 0, None, None] * real_rows, omega[:, 1, None, None], imag_rows)
        return torch.cat([real_rows, far], dim=1)

    @staticmethod
    def add_end_response(compact: torch.Tensor, rows: torch.Tensor, end_block: torch.Tensor) -> torch.Tensor:
        """1-D: ``compact`` ``(B, out, K)`` plus ``rows`` ``(B, R)`` times ``end_block`` ``(K, R, 2·out)`` per kept
        frequency: with :meth:`end_block` (R = 2·in) and rows the real end values (v₀, v_N), that is K's output
        spectrum for a field zero except at its two ends, ``compact + mix(face_spectrum(v, (n,), 0, [0, n - 1]))``
        with v = ``rows.view(B, 2, in).transpose(1, 2)``; a matrix M folded in on the left (``M @ end_block``)
        takes rows r with r M = the end values instead (BOON folds its solve in so).

        One batched real product, accumulated into the spectrum's mode-major memory (the layout :meth:`mix`
        leaves): ``compact`` is updated in place when it has that layout (else a mode-major copy is), and
        the sum is returned.
        """
        if compact.dim() != 3 or rows.dim() != 2 or end_block.shape != (compact.shape[2], rows.shape[1],
                                                                         2 * compact.shape[1]):
            raise ValueError(f"add_end_response needs a 1-D spectrum (B, out, K), rows (B, R) and an end block "
                             f"(K, R, 2·out); got {tuple(compact.shape)}, {tuple(rows.shape)}, {tuple(end_block.shape)}")
        batch, out, modes = compact.shape
        mode_major = compact.permute(2, 0, 1)
        if not mode_major.is_contiguous():
            mode_major = mode_major.contiguous()
        real = torch.view_as_real(mode_major).view(modes, batch, 2 * out)
        real.baddbmm_(rows.unsqueeze(0).expand(modes, *rows.shape), end_block)
        return mode_major.permute(1, 2, 0)

    def face_spectrum(self, faces: torch.Tensor, shape: Sequence[int], axis: int,
                      positions: Sequence[int]) -> torch.Tensor:
        """Compact kept spectrum of a field that is zero except on the hyperplanes ``axis = j``.

        ``faces``: ``(B, C, *face_shape, len(positions))``, the field's values on those hyperplanes.
        Returns ``(B, C, *kept)``, equal to ``spectrum(field)`` (the DFT of a field supported on one
        hyperplane is the face's DFT times e^{-2πi k_axis j / n_axis}).
        """
        n = shape[axis]
        face_dims = tuple(range(2, 2 + self.ndim - 1))
        if axis == self.ndim - 1:
            spec = torch.fft.fftn(faces, dim=face_dims) if face_dims else faces.to(torch.promote_types(
                faces.dtype, torch.complex64))
            for pos, a in enumerate(range(self.ndim - 1)):
                d = 2 + pos
                m = self.modes[a]
                spec = torch.cat([spec.narrow(d, 0, m), spec.narrow(d, shape[a] - m, m)], dim=d)
        else:
            spec = torch.fft.rfftn(faces, dim=face_dims)
            axes = [a for a in range(self.ndim) if a != axis]
            for pos, a in enumerate(axes):
                d = 2 + pos
                m = self.modes[a]
                if a == self.ndim - 1:
                    spec = spec.narrow(d, 0, m)
                else:
                    spec = torch.cat([spec.narrow(d, 0, m), spec.narrow(d, spec.shape[d] - m, m)], dim=d)
        phase = self.phase(axis, n, positions, -1, spec.dtype, spec.device).T  # (P, K_axis)
        out = spec @ phase  # (B, C, *kept_without_axis, K_axis)
        return out.movedim(-1, 2 + axis)


class SpectralConv1d(SpectralConv):
    """1-D kernel: ``(B, in, n) → (B, out, n)``, keeping ``modes`` frequencies (n // 2 + 1 ≥ modes)."""

    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__(in_channels, out_channels, (modes,))


class SpectralConv2d(SpectralConv):
    """2-D kernel: ``(B, in, n1, n2) → (B, out, n1, n2)``; n1 ≥ 2·modes1, n2 // 2 + 1 ≥ modes2."""

    def __init__(self, in_channels: int, out_channels: int, modes1: int, modes2: int) -> None:
        super().__init__(in_channels, out_channels, (modes1, modes2))


class SpectralConv3d(SpectralConv):
    """3-D kernel: ``(B, in, n1, n2, n3) → (B, out, n1, n2, n3)``; n1, n2 ≥ 2·modes, n3 // 2 + 1 ≥ modes3."""

    def __init__(self, in_channels: int, out_channels: int, modes1: int, modes2: int, modes3: int) -> None:
        super().__init__(in_channels, out_channels, (modes1, modes2, modes3))
