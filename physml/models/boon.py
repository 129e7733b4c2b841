"""BOON: exact boundary corrections of an FNO's kernel layers (Saad et al., ICLR 2023).

Each Fourier layer z = L v + b, L = K + W (truncated-Fourier kernel plus pointwise map), is replaced by
its *boundary-corrected* version along every bounded spatial axis (size N, ends j = 0 and j = N-1):

1. Probe L with unit vectors at the two ends. Here in closed form from the spectral weights
   (:meth:`SpectralConv.response`), once per forward, as C×C blocks (output channel × input channel):
   the end values' responses A_ab = (K e_{j_b})_{j_a} + [a = b] W for ends a, b ∈ {0, N}.
2. Modify the input's boundary entries, v' = v + δ₀ e₀ + δ_N e_N, so that the end values of the output
   take a target: A [δ₀; δ_N] = t - P(K v), P the two end values. Solved by the paper's two-step
   elimination: the left end with the effective pivot (Schur complement) Ã₀₀ = A₀₀ - A₀N A_NN⁻¹ A_N0, then
   the right end with the corrected left: δ₀ = Ã₀₀⁻¹ (r₀ - A₀N A_NN⁻¹ r_N), δ_N = A_NN⁻¹ (r_N - A_N0 δ₀),
   composed into one solve matrix S (:meth:`BOONFNO.elimination`). The targets:

   * Dirichlet: t = g - P(W v + b), so the layer's end values are the data g.
   * Neumann, as the reference eliminates: t = T P(v) with T = diag(Ã₀₀ - W, A_NN - W), so that the
     layer's end values are diag(Ã₀₀, A_NN) P(v): they depend on the input's end values only (L's boundary
     rows eliminated), and the input's ends, set from the stencil at the layer before, carry the data into
     the interior. (Solving instead for the stencil derivative of the layer's output, the data-driven
     analogue of the Dirichlet target, trains worse on heat_neumann; the reference eliminates with K's
     blocks alone, which trains as well but makes post hoc use on a plain FNO blow up, since a plain
     kernel's end blocks are near-singular without W: measured in params.yaml, cases.heat_neumann.)
     Equivalently, the layer's end values are D p + b, D = diag(Ã₀₀, A_NN) and p the input's ends: the
     Dirichlet target with data D p + b. On 1-D grids with exact inverses a hidden layer so solves its
     input's ends p from the stencil inside its correction (:meth:`BOONFNO._stencil_map`), and the ends
     need not be set after σ (below).

   The correction enters the layer through its spectrum (:meth:`SpectralConv.face_spectrum`), so the
   kernel's inverse transform runs once; on 1-D grids the kernel's response to δ is one batched real
   product per kept mode, accumulated into the layer's spectrum (δ is real, and the two ends' spectra
   differ by one phase per mode; at inference the solve S is folded into it), and P(K v) is read straight
   off the spectrum.
3. Set the output's boundary entries to satisfy the condition (Dirichlet: a no-op up to round-off on 1-D
   grids, where step 2 is exact; on multi-axis grids step 2 treats every face point on its own with the
   same-position blocks, as the reference's per-face probes do, and this step makes it exact. Neumann: the
   end values solved from the stencil). The forward pass therefore skips the pointwise map's share at the
   faces (W δ), which this step overwrites.

Activations act on interior points only (Dirichlet and Neumann: each hidden layer's faces are set after
σ; on 1-D grids with exact inverses that is a no-op the forward skips, since the next layer's correction
absorbs any end values its input has, and Neumann's solves them from the stencil itself); after the
projection the output's boundary entries are set once more, so the condition holds to round-off *whatever
the weights*.
Hidden layers are corrected towards the same data (the mean over output channels when there are
several; zeros on the padded time steps of an FNO with ``time_padding``), as in the reference.

Conditions (per sample, per face point, e.g. per time step):

* ``dirichlet``: u = g at both ends.
* ``neumann``: u_x = g at both ends (the x-derivative, not the outward flux), with the one-sided stencil
  of order 1, u_x(x₀) ≈ (u₁ - u₀)/h, or order 2, u_x(x₀) ≈ (-3u₀ + 4u₁ - u₂)/(2h) (mirrored at the right
  end: (u_N - u_{N-1})/h, (3u_N - 4u_{N-1} + u_{N-2})/(2h)). The boundary value is solved from it,
  u₀ = (h g - Σ_{k≥1} a_k u_k)/a₀, so the *stencil* derivative equals g exactly, up to the round-off any
  stencil derivative of stored values carries: about ε Σ_k |a_k u_k| / h (float32 at 500 points with
  |u| ≈ 5: ~1e-4; float64: ~1e-12).
* ``periodic``: the two ends are set to their average (no data).

Boundary data ``bc`` for one bounded grid axis: ``(B, *face, 2)`` with face = the grid shape without that
axis, last axis (left, right); ``(B, *face, 2, c_out)`` when the model has c_out > 1 output channels.
So (B, 2) for 1-D single step, (B, nt, 2) for 1-D + time, and for the 2-D cavity (bounded axes x, y,
grid (nx, ny, nt)) a pair: x-walls ``(B, ny, nt, 2)`` (x = lo, x = hi) and y-walls ``(B, nx, nt, 2)``
(y = lo, y = hi), or a mapping ``{0: x_walls, 1: y_walls}`` keyed by grid axis, which on a square grid (where
the two shapes are equal and a swapped pair would pass every check) says which walls are which; at the corners
the data of the last entry of ``axes`` win (the walls are written in the
order of ``axes``: y with the default (0, 1)). So with Neumann data and the default axes the x-walls'
stencil derivative does not hold at their two corner face points (y = lo, y = hi), whose stencil points
the y-walls' values have replaced.

:class:`OverwriteFNO` is the control: the plain FNO with step 3 alone, on its output (the boundary entries
set, nothing else changed). It meets the condition as exactly, so BOON's gain over it is what correcting
the kernels adds beyond the boundary entries themselves. Both share :class:`BoundaryFNO` (the condition,
the checks of its data and step 3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from physml.layers.grid_cache import GridCache
from physml.layers.spectral import SpectralConv
from physml.layers.weight_stamp import weight_stamp
from physml.models.fno import FNO, is_int

__all__ = ["BOUNDARY_TYPES", "NEUMANN_STENCILS", "BoundaryData", "BoundaryFNO", "BOONFNO", "OverwriteFNO",
           "operator_forward", "operator_loss", "relative_l2_loss"]

BOUNDARY_TYPES = ("dirichlet", "neumann", "periodic")

#: Boundary data ``bc``: one tensor (one bounded axis), one per bounded axis in the order of ``axes``, or a
#: mapping from each bounded grid axis to its tensor (shapes in the module docstring).
BoundaryData = torch.Tensor | Sequence[torch.Tensor] | Mapping[int, torch.Tensor]

#: Left-end one-sided stencils a_k: u_x(x₀) ≈ (1/h) Σ_k a_k u_k (first order; second order).
#: The right end uses b_k = -a_k on u_{N-1-k}.
NEUMANN_STENCILS: dict[int, tuple[float, ...]] = {1: (-1.0, 1.0), 2: (-1.5, 2.0, -0.5)}


def _ends(z: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """The entries of ``z`` at both ends (0 and n - 1) of its axis ``dim`` of size ``n``, as one strided view."""
    return z[(slice(None),) * dim + (slice(None, None, n - 1),)]


class BoundaryFNO(nn.Module):
    """An FNO whose output meets a boundary condition exactly: the condition, the checks of its data and
    the setting of the output's boundary entries (:meth:`enforce`). Shares the FNO's parameters;
    ``model.fno`` is the wrapped model itself, not a copy.

    :class:`BOONFNO` corrects every kernel layer as well; :class:`OverwriteFNO` does nothing else.

    Args:
        fno: the base operator.
        boundary: "dirichlet", "neumann" or "periodic".
        axes: bounded grid axes (spatial only; default all spatial axes: x, or x and y).
        neumann_order: 1 or 2, order of the one-sided stencil (Neumann only; default 2, the reference's).
    """

    def __init__(self, fno: FNO, boundary: str = "dirichlet", axes: Sequence[int] | None = None,
                 neumann_order: int = 2) -> None:
        super().__init__()
        if not isinstance(fno, FNO):
            raise ValueError(f"fno must be a physml.models.fno.FNO, got {type(fno).__name__}")
        if boundary not in BOUNDARY_TYPES:
            raise ValueError(f"boundary must be one of {BOUNDARY_TYPES}, got {boundary!r}")
        if not is_int(neumann_order) or neumann_order not in NEUMANN_STENCILS:
            raise ValueError(f"neumann_order must be one of {tuple(NEUMANN_STENCILS)}, got {neumann_order!r}")
        given = axes
        axes = tuple(range(fno.n_space)) if axes is None else tuple(axes) if isinstance(axes, Sequence) else None
        if (axes is None or not axes or len(set(axes)) != len(axes)
                or any(not is_int(a) or not 0 <= a < fno.n_space for a in axes)):
            raise ValueError(f"axes must be a sequence of distinct spatial axes (ints in [0, {fno.n_space})), "
                             f"got {given!r}")
        self.fno = fno
        self.boundary = boundary
        self.axes = tuple(int(a) for a in axes)
        self.neumann_order = neumann_order
        self._grid_cache = GridCache()
        self.stencil = NEUMANN_STENCILS[neumann_order] if boundary == "neumann" else (1.0,)

    # ---- input checks ---------------------------------------------------------------------------
    def min_points(self) -> int:
        """Fewest grid points a bounded axis needs: 3, and 2 × stencil length (ends must not overlap)."""
        return max(3, 2 * len(self.stencil))

    def _targets(self, bc: BoundaryData | None, shape: tuple[int, ...],
                 batch: int, like: torch.Tensor) -> list[torch.Tensor | None]:
        """Validated data per bounded axis, as ``(B, c_out, *face, 2)`` in the dtype/device of ``like``."""
        for axis in self.axes:
            if shape[axis] < self.min_points():
                raise ValueError(
                    f"grid axis {axis} has {shape[axis]} points; the {self.boundary} condition"
                    f"{f' with the order-{self.neumann_order} stencil' if self.boundary == 'neumann' else ''}"
                    f" needs at least {self.min_points()}")
        if self.boundary == "periodic":
            if bc is not None:
                raise ValueError("bc must be None for periodic boundaries (they carry no data)")
            return [None] * len(self.axes)
        if bc is None:
            raise ValueError(f"bc is required for {self.boundary} boundaries")
        if isinstance(bc, Mapping):  # keyed by grid axis: walls of equal shape cannot be swapped unnoticed
            keys = list(bc)
            if not all(is_int(k) for k in keys) or set(keys) != set(self.axes):
                raise ValueError(f"bc as a mapping must be keyed by the bounded grid axes {self.axes} (one tensor "
                                 f"each), got keys {keys}")
            items = [bc[axis] for axis in self.axes]
        elif isinstance(bc, (torch.Tensor, list, tuple)):
            items = [bc] if isinstance(bc, torch.Tensor) else list(bc)
            if len(items) != len(self.axes):
                raise ValueError(f"bc must hold one tensor per bounded axis {self.axes}, got {len(items)}")
        else:
            raise ValueError(f"bc must be a torch.Tensor, a list of them in the order of the bounded axes {self.axes}, "
                             f"or a mapping from those axes to them; got {type(bc).__name__}")
        c_out = self.fno.out_channels
        out = []
        for axis, g in zip(self.axes, items):
            face = tuple(s for a, s in enumerate(shape) if a != axis)
            want = (batch, *face, 2) + ((c_out,) if c_out > 1 else ())
            if not isinstance(g, torch.Tensor) or tuple(g.shape) != want:
                got = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
                raise ValueError(f"bc for grid axis {axis} must have shape {want} (B, *face, 2"
                                 f"{', c_out' if c_out > 1 else ''}), got {got}")
            if g.is_complex() or not (g.is_floating_point() and torch.isfinite(g).all()):
                bad = (torch.nonzero(~torch.isfinite(g).reshape(batch, -1).all(dim=1)).flatten().tolist()
                       if g.is_floating_point() else [])
                raise ValueError(f"bc for grid axis {axis} must hold finite real floats; got "
                                 + (f"NaN or inf in samples {bad}" if bad else f"dtype {g.dtype}"))
            g = g.to(device=like.device, dtype=like.dtype)
            g = g.unsqueeze(-1) if c_out == 1 else g
            out.append(g.movedim(-1, 1))  # (B, c_out, *face, 2)
        return out

    # ---- the boundary functional and the enforcement ---------------------------------------------
    def _functional(self, n: int, h: float) -> tuple[list[int], list[float], list[int], list[float]]:
        """Positions and weights of the left and right boundary functionals on an axis of n points."""
        if self.boundary == "dirichlet":
            return [0], [1.0], [n - 1], [1.0]
        a = self.stencil
        left_pos = list(range(len(a)))
        right_pos = [n - 1 - k for k in range(len(a))]
        return left_pos, [c / h for c in a], right_pos, [-c / h for c in a]

    def enforce(self, z: torch.Tensor, targets: list[torch.Tensor | None], shape: tuple[int, ...]) -> torch.Tensor:
        """Set the boundary entries of ``z`` ``(B, C, *grid)`` so the condition holds exactly (in place).

        ``targets[i]``: ``(B, 1 or C, *face, 2)`` for bounded axis ``axes[i]`` (None for periodic).
        """
        for axis, g in zip(self.axes, targets):
            dim = 2 + axis
            n = shape[axis]
            ends = _ends(z, dim, n)
            if self.boundary == "periodic":
                ends.copy_(ends.mean(dim, keepdim=True))
            elif self.boundary == "dirichlet":
                ends.copy_(g.movedim(-1, dim))
            else:
                near, weights, scale = self._neumann_ends(n, self.fno.spacing(shape, axis), z)
                values = torch.addcmul(z.index_select(dim, near).movedim(dim, -1) @ weights, g, scale)
                ends.copy_(values.movedim(-1, dim))
        return z

    def _neumann_ends(self, n: int, h: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each end value solved from its functional (:meth:`_functional`, weights w at positions p, w₀ at
        the end): u_end = (g - Σ_{k≥1} w_k u_{p_k}) / w₀, as ``near @ weights + g * scale`` with the indices
        of the points near the ends (left, then right), ``weights`` ``(2(P-1), 2)`` = -w_k / w₀ and
        ``scale`` ``(2,)`` = 1 / w₀. Cached per grid, dtype and device."""
        def compute() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            left_pos, left_w, right_pos, right_w = self._functional(n, h)
            near = torch.as_tensor(left_pos[1:] + right_pos[1:], device=like.device)
            weights = torch.zeros(len(near), 2, dtype=like.dtype, device=like.device)
            weights[:len(left_pos) - 1, 0] = torch.as_tensor([-w / left_w[0] for w in left_w[1:]], dtype=like.dtype)
            weights[len(left_pos) - 1:, 1] = torch.as_tensor([-w / right_w[0] for w in right_w[1:]], dtype=like.dtype)
            scale = torch.as_tensor([1.0 / left_w[0], 1.0 / right_w[0]], dtype=like.dtype, device=like.device)
            return near, weights, scale

        return self._grid_cache.get_or_build(("neumann_ends", n, h, like.dtype, like.device), compute)


class Elimination(NamedTuple):
    """One layer's correction along one axis (:meth:`BOONFNO.elimination`)."""

    solve: torch.Tensor  #: S ``(2C, 2C)``: δ = S r, r channel-major (c, end), δ end-major (end, c)
    end_map: torch.Tensor | None  #: Neumann: T ``(2C, 2C)``, channel-major both ways, target t = T P(v); else None
    end_values: torch.Tensor | None  #: Neumann: D's blocks (Ã₀₀, A_NN) ``(2, C, C)``, the end values D P(v) + b; else None


class _Layer1d(NamedTuple):
    """What one corrected layer on a 1-D grid needs besides its input and data (:meth:`BOONFNO._layers_1d`)."""

    layer: int  #: its index in the FNO (W v + b is :meth:`FNO.apply_pointwise` of it)
    conv: SpectralConv  #: the kernel K
    block: torch.Tensor  #: K's block weights ``(K, 2C, 2C)`` (:meth:`SpectralConv.block_weight`)
    solve_t: torch.Tensor | None  #: Sᵀ ``(2C, 2C)`` (:meth:`BOONFNO.elimination`): δ = r Sᵀ; None if folded
    end_block: torch.Tensor  #: E ``(K, 2C, 2C)``, K's end response (:meth:`SpectralConv.end_block`), or Sᵀ E
    end_map_t: torch.Tensor | None  #: Neumann: Tᵀ ``(2C, 2C)``, channel-major (:meth:`BOONFNO.elimination`)
    stencil: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None  #: Neumann: :meth:`BOONFNO._stencil_map`
    readout: torch.Tensor  #: the end values on a compact spectrum, complex ``(2, K)`` (:meth:`BOONFNO._ends_readout`)


class BOONFNO(BoundaryFNO):
    """An FNO whose kernel layers are boundary-corrected (BOON). Shares the FNO's parameters.

    Use it to train (its parameters are the FNO's) or post hoc on a trained :class:`FNO` (same
    weights, corrected forward); ``boon.fno`` is the wrapped model itself, not a copy.

    Args:
        fno, boundary, axes, neumann_order: as :class:`BoundaryFNO`.
        rcond: conditioning guard of the elimination. 0 (default): exact inverses of the C×C blocks.
            > 0: Moore–Penrose pseudo-inverses that drop singular values below ``rcond`` × the largest,
            so a near-singular block (as in the kernels of an FNO trained without the correction) gives
            a bounded input modification instead of an exploding one. The output's boundary entries are
            set exactly either way (step 3), so the condition holds to round-off whatever ``rcond``.
    """

    def __init__(self, fno: FNO, boundary: str = "dirichlet", axes: Sequence[int] | None = None,
                 neumann_order: int = 2, rcond: float = 0.0) -> None:
        super().__init__(fno, boundary, axes, neumann_order)
        if not (0.0 <= float(rcond) < 1.0):
            raise ValueError(f"rcond must lie in [0, 1), got {rcond!r}")
        self.rcond = float(rcond)
        self._weight_cache: dict[tuple, tuple] = {}

    # ---- one corrected layer --------------------------------------------------------------------
    def elimination(self, layer: int, shape: tuple[int, ...], axis: int) -> Elimination:
        """``layer``'s correction along ``axis``: the solve matrix S ``(2C, 2C)``, the input modification
        δ = S r for the residual r = t - P(K v) (P: the two end values), with r in channel-major order
        (c, end) and δ in end-major order (end, c), so that the two ends' modifications are contiguous
        blocks; and for Neumann the end map T and the two blocks of D = diag(Ã₀₀, A_NN) (``end_values``, below).

        The blocks A_ab (C×C, ends a, b) are the end values' responses of L = K + W to unit vectors at the
        ends (closed form, :meth:`SpectralConv.response`; W on the blocks a = b). Dirichlet's target is
        t = g - P(W v + b), so the layer's end values come out as g. Neumann's is t = T P(v), with the end
        map T = diag(Ã₀₀ - W, A_NN - W) (so that P(L(v + δ)) = D P(v), D = diag(Ã₀₀, A_NN)): the layer's end
        values depend on the input's end values only, as after the reference's elimination, and the layer's
        ends are then solved from the stencil (:meth:`BoundaryFNO.enforce`). D's blocks are returned as well,
        for the 1-D hidden layers that solve their input's ends themselves (:meth:`_stencil_map`).

        S is the paper's two-step elimination written as one matrix. With
        X = A₀N A_NN⁻¹ and the inverted effective pivot P = Ã₀₀⁻¹ = (A₀₀ - X A_N0)⁻¹:
        δ₀ = P (r₀ - X r_N), then δ_N = A_NN⁻¹ (r_N - A_N0 δ₀), so in end-major blocks
        S = [[P, -P X], [-A_NN⁻¹ A_N0 P, A_NN⁻¹ + A_NN⁻¹ A_N0 P X]]. With exact inverses (``rcond`` = 0)
        that is the block inverse of A = [[A₀₀, A₀N], [A_N0, A_NN]], so S is computed as one inverse of the
        assembled 2C×2C matrix (LU with pivoting across both ends, and fewer small products to differentiate
        in every training step); with ``rcond`` > 0, P and A_NN⁻¹ (also in Ã₀₀) are guarded pseudo-inverses.
        Without autograd (inference) both are cached per layer, grid and axis until the layer's weights
        may have changed (:meth:`_weights_cached`), so repeated forwards skip them. A singular A with
        ``rcond`` = 0 (e.g. a dead channel) is a ValueError that names the layer.
        """
        return self._weights_cached(("solve", layer, tuple(shape), axis), self._layer_weights(layer),
                                    lambda: self._elimination(layer, shape, axis))

    def _layer_weights(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights ``layer``'s correction is made from (:meth:`_correction_weights`)."""
        return self._correction_weights(self.fno.spectral[layer], self.fno.pointwise[layer])

    @staticmethod
    def _correction_weights(conv: SpectralConv, pointwise: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights a layer's correction is made from: its kernel's and its pointwise map's."""
        return conv.weight, pointwise.weight

    def clear_weight_cache(self) -> None:
        """Drop the corrections cached from the weights (:meth:`_weights_cached`). The kernels cache their block
        matrices themselves; :func:`~physml.layers.weight_stamp.clear_weight_caches` on the model clears both."""
        self._weight_cache.clear()

    def _weights_cached(self, key: tuple, weights: Sequence[torch.Tensor], build: Callable[[], Any]) -> Any:
        """``build()``, made from ``weights``; without autograd cached under ``key`` until one of them may have
        changed or ``rcond`` did (:func:`~physml.layers.weight_stamp.weight_stamp`: storage, in-place
        version, any optimizer step since, fused ones included; writes through ``.data`` pass unnoticed: after
        one, :func:`~physml.layers.weight_stamp.clear_weight_caches`).
        A call with autograd builds afresh and drops every cached entry, so training holds no stale copies."""
        if torch.is_grad_enabled():
            self._weight_cache.clear()
            return build()
        stamp = (self.rcond, weight_stamp(weights))
        hit = self._weight_cache.get(key)
        if hit is None or hit[0] != stamp:
            hit = self._weight_cache[key] = (stamp, tuple(w.detach() for w in weights), build())
        return hit[2]

    def _elimination(self, layer: int, shape: tuple[int, ...], axis: int) -> Elimination:
        try:
            return self._elimination_blocks(layer, shape, axis)
        except torch.linalg.LinAlgError as err:
            raise ValueError(f"BOON layer {layer}'s end blocks along grid axis {axis} are singular ({err}); "
                             "pass rcond > 0 (e.g. 1e-6) to use guarded pseudo-inverses") from err

    def _elimination_blocks(self, layer: int, shape: tuple[int, ...], axis: int) -> Elimination:
        """:meth:`elimination` built from the layer's current weights (not cached)."""
        n = shape[axis]
        resp = self.fno.spectral[layer].response(shape, axis, [-(n - 1), 0, n - 1])  # (3, C_out, C_in)
        w_pw = self.fno.pointwise[layer].weight[:, :, 0]  # (C_out, C_in)
        a00 = ann = resp[1] + w_pw
        a0n, an0 = resp[0], resp[2]
        if self.rcond == 0.0:
            solve = torch.linalg.inv(torch.cat([torch.cat([a00, a0n], dim=1), torch.cat([an0, ann], dim=1)], dim=0))
        else:
            ann_inv = self._inverse(ann)
            x = a0n @ ann_inv
            schur = a00 - x @ an0  # Ã₀₀
            pivot_inv = self._inverse(schur)
            back = ann_inv @ an0 @ pivot_inv
            solve = torch.cat([torch.cat([pivot_inv, -pivot_inv @ x], dim=1),
                               torch.cat([-back, ann_inv + back @ x], dim=1)], dim=0)
        c = solve.shape[0] // 2
        solve = solve.view(2, c, 2, c).transpose(2, 3).reshape(2 * c, 2 * c)  # rows (end, c), columns (c, end)
        if self.boundary == "dirichlet":
            return Elimination(solve, None, None)
        if self.rcond == 0.0:
            schur = a00 - a0n @ torch.linalg.solve(ann, an0)
        end_map = torch.zeros(c, 2, c, 2, dtype=solve.dtype, device=solve.device)  # rows (c, end), cols (c, end)
        end_map[:, 0, :, 0] = schur - w_pw
        end_map[:, 1, :, 1] = ann - w_pw
        return Elimination(solve, end_map.view(2 * c, 2 * c), torch.stack([schur, ann]))

    def _inverse(self, a: torch.Tensor) -> torch.Tensor:
        """A⁻¹, or with ``rcond`` > 0 the pseudo-inverse without the singular values below rcond·σ_max."""
        return torch.linalg.inv(a) if self.rcond == 0.0 else torch.linalg.pinv(a, rtol=self.rcond)

    def corrected_layer(self, layer: int, v: torch.Tensor, targets: list[torch.Tensor | None],
                        enforce: bool = True) -> torch.Tensor:
        """BOON-corrected ``K_l v + W_l v + b_l`` for ``v`` ``(B, C, *grid)``; returns ``(B, C, *grid)``.

        ``enforce=False`` returns the output before its boundary entries are set (to measure how exact
        the elimination alone is).
        """
        shape = tuple(v.shape[2:])
        if self.boundary == "periodic":
            self.fno.spectral[layer].check_grid(shape)
            z = self.fno.spectral[layer](v).add_(self.fno.apply_pointwise(layer, v))
        else:
            z = self._corrected(layer, v, targets, faces=not enforce)
        return self.enforce(z, targets, shape) if enforce else z

    def _corrected(self, layer: int, v: torch.Tensor, targets: list[torch.Tensor | None],
                   faces: bool) -> torch.Tensor:
        """Dirichlet/Neumann corrected layer ``(B, C, *grid)``, exact everywhere when ``faces``.

        ``faces=False`` skips the face terms W δ: the face entries are then left for :meth:`enforce`,
        which overwrites them anyway (the forward pass's case); the entries off the faces are the same.
        W v + b is computed on the whole grid first, as the plain layer needs it, and read at the faces.
        """
        fno = self.fno
        shape = tuple(v.shape[2:])
        conv = fno.spectral[layer]
        conv.check_grid(shape)
        if len(shape) == 1:
            return self._corrected_1d(self._layer_1d(layer, shape[0], v), v, targets[0], faces)
        pointwise = fno.apply_pointwise(layer, v)
        block = conv.block_weight()  # once: the mix and the correction's product share it
        spec = conv.mix(conv.spectrum(v), block)
        extra = None
        face_updates = []
        for axis, g in zip(self.axes, targets):
            n = shape[axis]
            dim = 2 + axis
            ends = [0, n - 1]
            solve, end_map, _ = self.elimination(layer, shape, axis)
            kernel_ends = conv.values_at(spec, shape, axis, ends)  # (B, C, *face, 2): P(K v)
            if end_map is None:  # Dirichlet: t = g - P(W v + b)
                at_faces = _ends(pointwise, dim, n).movedim(dim, -1)
                residual = (g - (kernel_ends + at_faces)).movedim(1, -2).flatten(-2)  # (B, *face, 2C), channel-major
            else:  # Neumann: t = T P(v)
                v_ends = _ends(v, dim, n).movedim(dim, -1)
                residual = (v_ends.movedim(1, -2).flatten(-2) @ end_map.T
                            - kernel_ends.movedim(1, -2).flatten(-2))
            deltas = residual @ solve.T  # (B, *face, 2C), end-major
            deltas = deltas.unflatten(-1, (2, -1)).movedim(-1, 1)  # (B, C, *face, 2)
            face_spec = conv.face_spectrum(deltas, shape, axis, ends)
            extra = face_spec if extra is None else extra + face_spec
            if faces:
                face_updates.append((dim, n, self._face_update(fno.pointwise[layer], deltas)))
        z = conv.to_grid(spec + conv.mix(extra, block), shape).add_(pointwise)
        for dim, n, upd in face_updates:
            z.select(dim, 0).add_(upd[..., 0])
            z.select(dim, n - 1).add_(upd[..., 1])
        return z

    def _layer_1d(self, layer: int, n: int, like: torch.Tensor, fold: bool = False) -> _Layer1d:
        """``layer``'s :class:`_Layer1d` on a 1-D grid of ``n`` points, in the dtype/device of ``like``.

        ``fold``: fold the solve into the end response (``end_block`` = Sᵀ E, ``solve_t`` None), so the residual
        r itself goes through the layer's one end-response product, without δ = S r and its small products.
        Only where the step is reused (inference, cached): Sᵀ E costs K·(2C)³ multiply-adds, 2CK/B times
        the solve it replaces, and that again in every backward.
        """
        conv = self.fno.spectral[layer]
        conv.check_grid((n,))
        block = conv.block_weight()
        solve, end_map, end_values = self.elimination(layer, (n,), 0)
        solve_t = solve.T
        end_block = conv.end_block(n, block)
        if fold:
            solve_t, end_block = None, (solve_t @ end_block).contiguous()
        end_map_t = None if end_map is None else end_map.T
        stencil = None if end_values is None else self._stencil_map(layer, end_values, n, like)
        return _Layer1d(layer, conv, block, solve_t, end_block, end_map_t, stencil, self._ends_readout(conv, n, like))

    def _stencil_map(self, layer: int, end_values: torch.Tensor, n: int,
                     like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Neumann, 1-D: the target of a hidden layer that solves its input's ends from the stencil itself.

        The layer's end values are to be D p + b, with D = diag(Ã₀₀, A_NN) (``end_values``, its two blocks, from
        :meth:`elimination`) and p the input's end values solved from the stencil and the hidden layers' data g
        (one channel, :meth:`_hidden_target`): p = Σ_s α_s v_s + β g over the points s near each end
        (:meth:`BoundaryFNO._neumann_ends`). As a Dirichlet-type residual r = t - P(W v + b) - P(K v) on the input
        v as it is (its own ends e), the target's part t - P(W v + b) is D p - W e: linear in v at the ends and
        near them, and in g, so it is ``v[..., positions]`` ``(B, C·S)`` channel-major times M_v ``(C·S, 2C)``
        plus g ``(B, 2)`` times M_g ``(2, 2C)`` (columns channel-major (c, end)). With exact inverses the
        correction then absorbs e (:meth:`_absorbs_input_ends`): the layer's output equals the one on the
        input with its ends set to p, so the forward does not set them.

        Returns ``positions`` ``(S,)`` (the two ends, then the near points of :meth:`_neumann_ends`), M_v and M_g.
        """
        c = self.fno.width
        near, weights, scale = self._neumann_ends(n, self.fno.spacing((n,), 0), like)
        w_pw = self.fno.pointwise[layer].weight[:, :, 0]  # (C_out, C_in)
        eye = torch.eye(2, dtype=weights.dtype, device=weights.device)
        on_d = torch.cat([torch.zeros_like(eye), weights])  # (S, end): the ends, then the near points
        on_w = torch.cat([eye, torch.zeros_like(weights)])
        v_map = torch.einsum("ja,aoi->ijoa", on_d, end_values) - torch.einsum("ja,oi->ijoa", on_w, w_pw)
        g_map = torch.einsum("ab,ao->aob", torch.diag(scale), end_values.sum(-1))  # D β g, g the same on every channel
        positions = torch.cat([torch.as_tensor([0, n - 1], device=near.device), near])
        return positions, v_map.reshape(c * len(on_d), 2 * c), g_map.reshape(2, 2 * c)

    def _layers_1d(self, n: int, like: torch.Tensor) -> list[_Layer1d]:
        """Every layer's :class:`_Layer1d` on a 1-D grid of ``n`` points, in the dtype/device of ``like``.

        With autograd built afresh (the block weights and the solve matrix carry gradients); without it
        built once, with the solve folded into the end response, and cached until a weight of any layer
        may have changed (:meth:`_weights_cached`), so an inference forward spends one lookup on all of them.
        """
        weights = [w for modules in zip(self.fno.spectral, self.fno.pointwise)  # not indexed per layer: cheaper
                   for w in self._correction_weights(*modules)]
        fold = not torch.is_grad_enabled()
        return self._weights_cached(("layers_1d", n, like.dtype, like.device), weights,
                                    lambda: [self._layer_1d(i, n, like, fold) for i in range(self.fno.n_layers)])

    def _corrected_1d(self, step: _Layer1d, v: torch.Tensor, g: torch.Tensor, faces: bool,
                      solve_ends: bool = False) -> torch.Tensor:
        """:meth:`_corrected` on a 1-D grid, without transforms of the faces.

        ``step``: the layer (:meth:`_layers_1d`), ``v`` ``(B, C, n)``, ``g`` ``(B, 1 or C, 2)``. With the
        pointwise part W v + b and the mixed compact spectrum m of v (mode-major in memory): the residual
        r = t - P(K v), P(K v) read off m (:meth:`_kernel_ends`), t = g - P(W v + b) (Dirichlet) or T P(v)
        (Neumann, :meth:`elimination`; with ``solve_ends`` the layer's input ends are first solved from the
        stencil, :meth:`_stencil_map`); then δ = S r at the two
        ends, and the corrected spectrum m' = m + E δ, E the kernel's response to end values
        (:meth:`SpectralConv.end_block`): one batched real product accumulated into m
        (:meth:`SpectralConv.add_end_response`); with S folded into E (``solve_t`` None) the product takes
        r itself. ``faces`` (the face terms W δ) needs δ, so an unfolded step.
        """
        batch, channels, n = v.shape
        if solve_ends and (faces or g.shape[1] != 1):
            raise ValueError("solve_ends takes the hidden layers' one-channel data (B, 1, 2) and no face terms "
                             f"(its W δ would not describe the solved ends); got data {tuple(g.shape)}, faces={faces}")
        pointwise = self.fno.apply_pointwise(step.layer, v)  # W v + b
        spec = step.conv.mix(step.conv.spectrum(v), step.block)
        kernel_ends = self._kernel_ends(spec, step.readout)  # P(K v)
        if step.end_map_t is None:  # Dirichlet: t = g - P(W v + b)
            residual = torch.sub(g, pointwise[..., ::n - 1]).sub_(kernel_ends).view(batch, 2 * channels)
        elif solve_ends:  # Neumann, the input's ends solved from the stencil: t - P(W v + b) = D p - W e
            positions, v_map, g_map = step.stencil
            target = torch.addmm(g.reshape(batch, 2) @ g_map, v.index_select(-1, positions).view(batch, -1), v_map)
            residual = target.view(batch, channels, 2).sub_(kernel_ends).view(batch, 2 * channels)
        else:  # Neumann: t = T P(v)
            target = v[..., ::n - 1].reshape(batch, 2 * channels) @ step.end_map_t
            residual = target.view(batch, channels, 2).sub_(kernel_ends).view(batch, 2 * channels)
        rows = residual if step.solve_t is None else residual @ step.solve_t  # r, or δ = S r (end-major)
        z = step.conv.to_grid(step.conv.add_end_response(spec, rows, step.end_block), (n,)).add_(pointwise)
        if faces:
            if step.solve_t is None:
                raise ValueError("the face terms W δ need δ: pass an unfolded layer (fold=False)")
            deltas = rows.view(batch, 2, channels).transpose(1, 2)
            z[..., ::n - 1] += self._face_update(self.fno.pointwise[step.layer], deltas)
        return z

    def _ends_readout(self, conv: SpectralConv, n: int, like: torch.Tensor) -> torch.Tensor:
        """1-D: the two end values read off a compact spectrum, complex ``(2, K)``: P(f)_end = Re Σ_k ρ_end,k f̂_k.
        Cached per grid, dtype and device (every layer keeps the same modes)."""
        def compute() -> torch.Tensor:
            complex_dtype = torch.promote_types(like.dtype, torch.complex64)
            readout = conv.readout(0, n, [0, n - 1], torch.complex128, like.device)  # (K, 2), rounded once below
            return readout.T.to(complex_dtype).contiguous()

        return self._grid_cache.get_or_build(("ends_readout", n, like.dtype, like.device), compute)

    @staticmethod
    def _kernel_ends(spec: torch.Tensor, readout: torch.Tensor) -> torch.Tensor:
        """The two end values of the field whose compact spectrum is ``spec`` ``(B, C, K)``, as
        ``(B, C, 2)``: one complex product of ``readout`` ``(2, K)`` (:meth:`_ends_readout`) with the spectrum's
        mode-major memory (copied once if it has another layout), real part."""
        batch, channels, modes = spec.shape
        ends = (readout @ spec.permute(2, 0, 1).reshape(modes, batch * channels)).real  # (2, B·C)
        return ends.view(2, batch, channels).permute(1, 2, 0)

    @staticmethod
    def _face_update(pointwise: nn.Module, deltas: torch.Tensor) -> torch.Tensor:
        """W δ for input modifications δ ``(B, C, *face, 2)`` (the pointwise map's share at the faces)."""
        return torch.einsum("oi,bi...e->bo...e", pointwise.weight[:, :, 0], deltas)

    def forward(self, u: torch.Tensor, bc: BoundaryData | None = None) -> torch.Tensor:
        """Corrected operator output: same shapes as :meth:`FNO.forward`; ``bc`` as in the module doc."""
        fno = self.fno
        shape = fno.grid_shape(u)
        v = fno.padded(fno.lifted(u))
        inner = tuple(v.shape[2:])  # the layers' grid: the time axis padded (FNO.time_padding)
        out_targets = self._targets(bc, shape, u.shape[0], v)
        hidden = [None if g is None else self._hidden_target(g) for g in out_targets]
        # 1-D Dirichlet/Neumann: every layer's weights-only part fetched once (cached at inference)
        steps = self._layers_1d(inner[0], v) if len(inner) == 1 and self.boundary != "periodic" else None
        set_hidden_ends = self.boundary != "periodic" and (steps is None or not self._absorbs_input_ends())
        # v is rebound at once (no name keeps a layer's pre-activation alive into the next layer), so the
        # allocator hands each new field the block just freed, still in cache, as the plain FNO's loop does
        for layer in range(fno.n_layers):
            if self.boundary == "periodic":  # σ maps the layer's equal ends to equal values
                v = self.corrected_layer(layer, v, hidden)
            else:
                v = (self._corrected(layer, v, hidden, faces=False) if steps is None
                     else self._corrected_1d(steps[layer], v, hidden[0], faces=False,
                                             solve_ends=layer > 0 and not set_hidden_ends))
            if layer == fno.n_layers - 1:
                break
            v = F.gelu(v)
            # Dirichlet/Neumann: each layer's face entries are set once, after σ (σ on the interior
            # only: for Dirichlet the faces are g, for Neumann they are solved from the activated
            # interior), unless the next layer's correction absorbs them (:meth:`_absorbs_input_ends`;
            # Neumann's then solves them from the stencil itself).
            # The last layer's faces only reach the output's faces, which are set at the end.
            if set_hidden_ends:
                self.enforce(v, hidden, inner)
        out = self.enforce(fno.projected(fno.cropped(v)).movedim(-1, 1), out_targets, shape)  # (B, c_out, *grid)
        return fno.formatted(out.movedim(1, -1))

    def _absorbs_input_ends(self) -> bool:
        """Whether, on a 1-D grid, the hidden layers' corrections make their outputs independent of their
        inputs' end values, so that the forward need not set those ends after σ.

        Dirichlet: the correction moves the input's ends by δ = S r, r = g - P(L v + b). Changing the input's
        ends by a (v → v + a₀ e₀ + a_N e_N) changes r by -A a, so with S = A⁻¹ (exact inverses, ``rcond`` = 0)
        δ changes by -a: the corrected input v + a + δ, and so the layer's output, stay the same. Setting
        the hidden layers' ends after σ is then a no-op up to round-off, and the forward skips it. Neumann: the
        same holds for the residual D p - W e - P(K v) of a layer that solves its input's ends p from the
        stencil itself (:meth:`_stencil_map`), whose output so equals the one on the input with its ends set
        to p. With pseudo-inverses (``rcond`` > 0) S ≠ A⁻¹ and the ends are set. On multi-axis grids every
        face point is corrected on its own (step 2 is not exact there), so the faces are always set.
        """
        return self.boundary in ("dirichlet", "neumann") and self.rcond == 0.0

    def _hidden_target(self, g: torch.Tensor) -> torch.Tensor:
        """The hidden layers' data from the output's ``g`` ``(B, c_out, *face, 2)``: the mean over output
        channels, and zeros on the padded time steps (time is the faces' last axis), as the reference pads
        its boundary data."""
        g = g if g.shape[1] == 1 else g.mean(dim=1, keepdim=True)
        return F.pad(g, (0, 0, 0, self.fno.time_padding)) if self.fno.time_padding else g


class OverwriteFNO(BoundaryFNO):
    """The plain FNO with only its output's boundary entries set to meet the condition; no kernel correction.

    y = E(FNO(u)), E = :meth:`BoundaryFNO.enforce`: Dirichlet ends replaced by the data, Neumann ends solved
    from the stencil, periodic ends averaged. Every other entry is the FNO's own. The control of the BOON
    experiments: the cheapest post hoc way to an exact condition, so the share of BOON's gain that is more
    than the boundary entries themselves is BOON's error against this one's, not against the FNO's.
    Arguments as :class:`BoundaryFNO`; shapes and ``bc`` as :class:`BOONFNO`.
    """

    def forward(self, u: torch.Tensor, bc: BoundaryData | None = None) -> torch.Tensor:
        fno = self.fno
        shape = fno.grid_shape(u)
        targets = self._targets(bc, shape, u.shape[0], u)
        out = fno(u)
        out = out.unsqueeze(-1) if fno.out_channels == 1 else out  # (B, *grid, c_out)
        return fno.formatted(self.enforce(out.movedim(-1, 1), targets, shape).movedim(1, -1))


# ---- training of the FNO family --------------------------------------------------------------------------
# Here, beside the models, so that the code a training's checkpoint fingerprints (physml.training.code_version:
# the modules of the model and of its loss, and what they import) is the models' and nothing the experiment
# runner imports besides. dvc.yaml's train_boon lists these files among its deps, and also the runner
# (experiments/boon.py, variants.py): an edit there retrains too, though it leaves the fingerprint as it was.


def operator_forward(model: nn.Module, inputs: torch.Tensor, bc: Sequence[torch.Tensor]) -> torch.Tensor:
    """``model(inputs)``, with the boundary data ``bc`` (one tensor per bounded axis) for a :class:`BoundaryFNO`."""
    if isinstance(model, BoundaryFNO):
        return model(inputs, list(bc) if len(bc) > 1 else bc[0])
    return model(inputs)


def relative_l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖pred − target‖₂ / ‖target‖₂, norms over every non-batch axis (Li et al. 2021)."""
    diff = (pred - target).flatten(1).norm(dim=1)
    return (diff / target.flatten(1).norm(dim=1).clamp_min(torch.finfo(target.dtype).tiny)).mean()


def operator_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ``loss_fn`` of :func:`physml.training.fit` for the FNO family: batch = (inputs, targets, *bc), loss =
    :func:`relative_l2_loss` of :func:`operator_forward`."""
    inputs, targets, *bc = batch
    return relative_l2_loss(operator_forward(model, inputs, bc), targets)
