"""BOON's guarantees: whatever the (random) weights and boundary data, the corrected FNO satisfies
Dirichlet values, the Neumann stencil derivative and periodic equality exactly (round-off); on 1-D
grids the two-step elimination alone already makes each Dirichlet layer exact, and the Neumann one
(the reference's) leaves the layer's end values depending on the input's end values only; with exact inverses
a 1-D layer's output does not depend on its input's ends (Neumann: solved from the stencil inside the
correction), so the forward need not set them; post hoc it keeps weights;
it trains through the shared fit(). The overwrite control meets the same conditions by changing the plain
FNO's output at the boundary entries only."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from physml.layers.weight_stamp import clear_weight_caches
from physml.models.boon import NEUMANN_STENCILS, BOONFNO, OverwriteFNO
from physml.models.fno import fno_1d, fno_1d_time, fno_2d_time

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
DTYPES = [torch.float64, torch.float32]
# The one-sided first-derivative stencils, written here from the textbook rather than read from the code:
# u_x(0) ≈ (u₁ − u₀)/h (order 1) and (−3u₀ + 4u₁ − u₂)/(2h) (order 2, the reference's).
STENCILS = {1: (-1.0, 1.0), 2: (-1.5, 2.0, -0.5)}


def stencil_derivative(u: torch.Tensor, dim: int, h: float, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-sided derivative at both ends along ``dim`` (forward at the left, backward at the right)."""
    a = STENCILS[order]
    n = u.shape[dim]
    left = sum(a[k] * u.select(dim, k) for k in range(len(a))) / h
    right = -sum(a[k] * u.select(dim, n - 1 - k) for k in range(len(a))) / h
    return left, right


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


@pytest.mark.parametrize("order", [1, 2])
def test_neumann_stencils_are_one_sided_derivatives_of_their_order(order):
    """The stencils BOON enforces are the textbook ones: exact on polynomials of degree ≤ order (moments
    Σ a_k k^p = [p = 1]), and on a smooth function the error at both ends falls as h^order."""
    a = NEUMANN_STENCILS[order]
    assert tuple(a) == STENCILS[order]
    k = torch.arange(len(a), dtype=torch.float64)
    for power in range(order + 1):
        assert float(sum(c * k[i] ** power for i, c in enumerate(a))) == pytest.approx(float(power == 1), abs=1e-15)
    errors = []
    for n in (41, 81, 161):
        x = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
        left, right = stencil_derivative(torch.sin(3 * x)[None], 1, 1.0 / (n - 1), order)
        errors.append(max(abs(float(left[0]) - 3.0), abs(float(right[0]) - 3 * math.cos(3.0))))
    orders = [math.log2(coarse / fine) for coarse, fine in zip(errors, errors[1:])]
    assert all(abs(p - order) < 0.15 for p in orders), (errors, orders)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dirichlet_values_exact_1d_and_1d_time(dtype):
    torch.manual_seed(0)
    u = torch.randn(5, 40, dtype=dtype)
    model = BOONFNO(fno_1d(width=16, modes=6).to(dtype), "dirichlet")
    g = torch.randn(5, 2, dtype=dtype)
    y = model(u, g)
    assert max(max_err(y[:, 0], g[:, 0]), max_err(y[:, -1], g[:, 1])) <= TOL[dtype]
    plain = model.fno(u)
    assert max_err(plain[:, 0], g[:, 0]) > 1e-2  # the uncorrected FNO misses the data
    model_t = BOONFNO(fno_1d_time(nt=9, width=8, modes=(5, 4)).to(dtype), "dirichlet")
    g_t = torch.randn(5, 9, 2, dtype=dtype)  # different per sample and per time
    y_t = model_t(u, g_t)
    assert y_t.shape == (5, 40, 9)
    assert max(max_err(y_t[:, 0], g_t[..., 0]), max_err(y_t[:, -1], g_t[..., 1])) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", [1, 2])
def test_neumann_stencil_derivative_exact(dtype, order):
    torch.manual_seed(1)
    n = 40
    u = torch.randn(4, n, dtype=dtype)
    g = 3.0 * torch.randn(4, 2, dtype=dtype)
    y = BOONFNO(fno_1d(width=16, modes=6).to(dtype), "neumann", neumann_order=order)(u, g)
    left, right = stencil_derivative(y, 1, 1.0 / (n - 1), order)
    assert max(max_err(left, g[:, 0]), max_err(right, g[:, 1])) <= TOL[dtype]
    g_t = torch.randn(4, 9, 2, dtype=dtype)
    fno_t = fno_1d_time(nt=9, width=8, modes=(5, 4), domain=(0.0, 2.0)).to(dtype)
    y_t = BOONFNO(fno_t, "neumann", neumann_order=order)(u, g_t)
    left, right = stencil_derivative(y_t, 1, 2.0 / (n - 1), order)
    assert max(max_err(left, g_t[..., 0]), max_err(right, g_t[..., 1])) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", [1, 2])
def test_neumann_stencil_derivative_exact_to_its_roundoff_on_the_paper_grid(dtype, order):
    """A stencil derivative of stored values is exact only to about ε Σ_k |a_k u_k| / h: its rounding grows
    with |u| / h, so no absolute tolerance holds on every grid (float32 at 500 points with |u| ≈ 5: ~1e-4).
    On the reference's 500-point grid, with outputs of that size, the derivative must be within 4× that
    bound at every end of every sample."""
    torch.manual_seed(17)
    n = 500
    fno = fno_1d(width=16, modes=16).to(dtype)
    with torch.no_grad():
        fno.proj2.weight.mul_(30.0)
        fno.proj2.bias.fill_(5.0)
    g = 5.0 * torch.randn(6, 2, dtype=dtype)
    y = BOONFNO(fno, "neumann", neumann_order=order)(torch.randn(6, n, dtype=dtype), g).detach()
    h = 1.0 / (n - 1)
    assert y.abs().amax() > 3.0
    left, right = stencil_derivative(y, 1, h, order)
    eps = torch.finfo(dtype).eps
    a = [abs(c) for c in STENCILS[order]]
    size_left = sum(a[k] * y[:, k].abs() for k in range(len(a))) / h  # Σ |a_k u_k| / h
    size_right = sum(a[k] * y[:, n - 1 - k].abs() for k in range(len(a))) / h
    assert ((left - g[:, 0]).abs() <= 4 * eps * size_left).all()
    assert ((right - g[:, 1]).abs() <= 4 * eps * size_right).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_periodic_ends_equal(dtype):
    torch.manual_seed(2)
    u = torch.randn(4, 32, dtype=dtype)
    y = BOONFNO(fno_1d(width=8, modes=5).to(dtype), "periodic")(u)
    assert max_err(y[:, 0], y[:, -1]) <= TOL[dtype]
    y_t = BOONFNO(fno_1d_time(nt=6, width=8, modes=(4, 3)).to(dtype), "periodic")(u)
    assert max_err(y_t[:, 0], y_t[:, -1]) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", ["dirichlet", "neumann", "periodic"])
def test_time_padding_keeps_the_condition_exact(dtype, boundary):
    """With the time axis padded inside the layers (hidden data zero there), the output's boundary
    condition still holds exactly on every real time step, 1-D + time and on the cavity's walls."""
    torch.manual_seed(6)
    n, nt = 32, 7
    u = torch.randn(3, n, dtype=dtype)
    fno = fno_1d_time(nt=nt, width=8, modes=(5, 6), time_padding=5).to(dtype)
    g = None if boundary == "periodic" else torch.randn(3, nt, 2, dtype=dtype)
    y = BOONFNO(fno, boundary, neumann_order=2)(u, g)
    assert y.shape == (3, n, nt)
    if boundary == "dirichlet":
        err = max(max_err(y[:, 0], g[..., 0]), max_err(y[:, -1], g[..., 1]))
    elif boundary == "neumann":
        left, right = stencil_derivative(y, 1, 1.0 / (n - 1), 2)
        err = max(max_err(left, g[..., 0]), max_err(right, g[..., 1]))
    else:
        err = max_err(y[:, 0], y[:, -1])
    assert err <= TOL[dtype]
    if boundary == "dirichlet":
        cav = fno_2d_time(nt=5, width=6, modes=(3, 3, 4), time_padding=3).to(dtype)
        gx, gy = torch.randn(2, 10, 5, 2, dtype=dtype), torch.randn(2, 12, 5, 2, dtype=dtype)
        yc = BOONFNO(cav, "dirichlet")(torch.randn(2, 12, 10, dtype=dtype), [gx, gy])
        walls = [(yc[:, 0, 1:-1], gx[:, 1:-1, :, 0]), (yc[:, -1, 1:-1], gx[:, 1:-1, :, 1]),
                 (yc[:, :, 0], gy[..., 0]), (yc[:, :, -1], gy[..., 1])]
        assert max(max_err(got, want) for got, want in walls) <= TOL[dtype]


def _set_ends(v: torch.Tensor, data: torch.Tensor, boundary: str, h: float, order: int) -> None:
    """Set the ends of ``v`` ``(B, C, n, T)`` in place from ``data`` ``(B, T, 2)``, the same on every channel:
    Dirichlet to the data; Neumann solved from the textbook stencil (:data:`STENCILS`), so that the one-sided
    derivative Σ_k a_k u_k / h at the left end, -Σ_k a_k u_{N-k} / h at the right, equals the data."""
    a = STENCILS[order]
    left, right = data[:, None, :, 0], data[:, None, :, 1]
    n = v.shape[2]
    if boundary == "dirichlet":
        v[:, :, 0], v[:, :, -1] = left, right
        return
    v[:, :, 0] = (h * left - sum(a[k] * v[:, :, k] for k in range(1, len(a)))) / a[0]
    v[:, :, -1] = (-h * right - sum(a[k] * v[:, :, n - 1 - k] for k in range(1, len(a)))) / a[0]


def _probing_reference(fno, u: torch.Tensor, g: torch.Tensor, boundary: str = "dirichlet",
                       order: int = 2) -> torch.Tensor:
    """BOON's forward from its definition, found by probing rather than by BOONFNO's algebra (1-D single step:
    g (B, 2); 1-D + time: g (B, nt, 2); one output channel). In each kernel layer L v = K v + W v + b, the
    input's end values (per channel and time step) are moved by d = A⁻¹ (t − ends(L v)), A (2C × 2C) the
    response of L's output ends to unit input ends at the same time step, read off L applied to unit vectors
    (the same at every time step: L is translation invariant in t). The target t of the layer's end values:
    Dirichlet, the data; Neumann, D p + b as after the reference's elimination of L's end rows, with
    D = diag(A₀₀ − A₀N A_NN⁻¹ A_N0, A_NN), p the input's end values and b the layer's bias (L applied to 0).
    In 1-D this makes L's output ends equal t; in 1-D + time each time step is corrected on its own, ignoring
    the response across time steps (BOONFNO's step 3, module docstring), so the hidden layers' ends only
    approach t. After σ the ends are set from the data (:func:`_set_ends`; zero data on padded time steps),
    and the output's ends from g."""
    import torch.nn.functional as F

    v = fno.padded(fno.lifted(u))
    batch, width, n = v.shape[:3]
    v = v if v.dim() == 4 else v[..., None]  # (B, C, n, T)
    steps = v.shape[-1]
    data = (g[:, None, :] if g.dim() == 2 else g).to(u.dtype)  # (B, nt, 2)
    data = F.pad(data, (0, 0, 0, steps - data.shape[1]))  # (B, T, 2)
    h = 1.0 / (n - 1)

    def layer(k: int, x: torch.Tensor) -> torch.Tensor:
        x = x if fno.nt is not None else x[..., 0]
        out = fno.spectral[k](x) + fno.apply_pointwise(k, x)
        return out if fno.nt is not None else out[..., None]

    for k in range(fno.n_layers):
        zero = torch.zeros(1, width, n, steps, dtype=u.dtype)
        bias = layer(k, zero)[0, :, 0, 0]  # (C,)
        A = torch.zeros(2, width, 2, width, dtype=u.dtype)
        for e, pos in enumerate((0, n - 1)):
            for c in range(width):
                unit = zero.clone()
                unit[0, c, pos, 0] = 1.0
                response = layer(k, unit) - layer(k, zero)  # the linear part, without b
                A[0, :, e, c], A[1, :, e, c] = response[0, :, 0, 0], response[0, :, -1, 0]
        z = layer(k, v)
        ends = torch.stack([z[:, :, 0], z[:, :, -1]], 1)  # (B, 2, C, T)
        if boundary == "dirichlet":
            target = data.permute(0, 2, 1)[:, :, None, :].expand_as(ends)
        else:
            pivot = A[0, :, 0] - A[0, :, 1] @ torch.linalg.solve(A[1, :, 1], A[1, :, 0])
            p0, pn = v[:, :, 0], v[:, :, -1]  # (B, C, T)
            target = torch.stack([torch.einsum("oi,bit->bot", pivot, p0),
                                  torch.einsum("oi,bit->bot", A[1, :, 1], pn)], 1) + bias[None, None, :, None]
        residual = (target - ends).permute(0, 3, 1, 2).reshape(batch, steps, 2 * width, 1)
        d = torch.linalg.solve(A.reshape(2 * width, 2 * width), residual)
        d = d.view(batch, steps, 2, width).permute(0, 2, 3, 1)  # (B, 2, C, T)
        moved = v.clone()
        moved[:, :, 0] += d[:, 0]
        moved[:, :, -1] += d[:, 1]
        v = layer(k, moved)
        if k < fno.n_layers - 1:
            v = F.gelu(v)
            _set_ends(v, data, boundary, h, order)
    out = fno.projected(fno.cropped(v if fno.nt is not None else v[..., 0]))[..., 0]
    _set_ends(out.view(batch, 1, n, -1), g.reshape(batch, -1, 2).to(u.dtype), boundary, h, order)
    return out


@pytest.mark.parametrize("boundary, order", [("dirichlet", 2), ("neumann", 1), ("neumann", 2)])
@pytest.mark.parametrize("grad", [False, True])
def test_forward_is_the_layerwise_correction_found_by_probing(grad, boundary, order):
    """Every kernel layer is corrected, not only the output: the exactness tests read the output's ends, which
    the forward sets at the end anyway, and held with the multi-axis correction removed or with the hidden
    layers corrected towards 0. This compares the whole output with :func:`_probing_reference` (1-D single
    step, and 1-D + time with padded time steps): Dirichlet, every layer's ends moved to the data; Neumann,
    every layer's end values D p + b with D from the probed end blocks (in 1-D each hidden layer solves its
    input's ends from the stencil inside its correction; 1-D + time takes the multi-axis path), and the ends
    set from the stencil after σ and at the output."""
    torch.manual_seed(16)
    cases = [(fno_1d(width=5, modes=4), torch.randn(2, 2)),
             (fno_1d(width=5, modes=9), torch.randn(1, 2)),  # modes at the grid's limit, batch 1
             (fno_1d_time(nt=5, width=5, modes=(4, 3)), torch.randn(2, 5, 2)),
             (fno_1d_time(nt=5, width=5, modes=(4, 3), time_padding=3), torch.randn(2, 5, 2))]
    for fno, g in cases:
        fno, g = fno.double(), g.double()
        u = torch.randn(g.shape[0], 16, dtype=torch.float64)
        with torch.set_grad_enabled(grad):
            y = BOONFNO(fno, boundary, neumann_order=order)(u, g)
        with torch.no_grad():
            expected = _probing_reference(fno, u, g, boundary, order)
            control = OverwriteFNO(fno, boundary, neumann_order=order)(u, g)
        assert max_err(y.detach(), expected) <= 1e-11 * float(expected.abs().max())
        # the control, with the same output ends and uncorrected layers, is 10^5 times the tolerance away
        assert max_err(control, expected) > 1e-6 * float(expected.abs().max())


def _probing_reference_2d(fno, u: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, boundary: str = "dirichlet",
                          order: int = 2) -> torch.Tensor:
    """BOON on a 2-D + time grid from its definition, found by probing: in each kernel layer
    L v = K v + W v + b, for each bounded axis a (x, then y) the input's end values along a are moved at every
    face point by δ_a = A_a⁻¹ (t_a − ends_a(L v)), A_a (2C × 2C) the response of L's ends along a to unit input
    ends at the same face point (read off L applied to unit vectors at one face point: L is translation
    invariant along the other axes). The target t_a: Dirichlet, the walls' data g_a (the mean over output
    channels, zero on padded time steps); Neumann, D_a p_a + b with D_a = diag(A₀₀ − A₀N A_NN⁻¹ A_N0, A_NN) and
    p_a the input's end values along a, as in 1-D (:func:`_probing_reference`). Both axes' δ come from the same
    L v and are added together (each face point on its own, the other axis's move ignored: the layer's walls
    only approach the target). After σ the walls are set from the data (Neumann: solved from the textbook
    stencil, :data:`STENCILS`), x-walls first and y-walls last (the corners are the y-walls'), and so are the
    output's, per output channel. ``u`` (B, nx, ny, c_in); ``gx`` (B, ny, nt, 2, c_out); ``gy`` (B, nx, nt, 2,
    c_out)."""
    import torch.nn.functional as F

    v = fno.padded(fno.lifted(u))  # (B, C, nx, ny, T)
    width, steps = v.shape[1], v.shape[-1]
    hidden = [F.pad(g.to(u.dtype).mean(-1), (0, 0, 0, steps - g.shape[2])) for g in (gx, gy)]  # (B, face, T, 2)
    a = STENCILS[order]

    def layer(k: int, x: torch.Tensor) -> torch.Tensor:
        return fno.spectral[k](x) + fno.apply_pointwise(k, x)

    def set_walls(x: torch.Tensor, walls: list[tuple[torch.Tensor, torch.Tensor]], first_dim: int) -> None:
        """Each bounded axis's two walls of ``x`` from its (first, last) data, the x-walls first."""
        for axis, (first, last) in enumerate(walls):
            dim, n = first_dim + axis, x.shape[first_dim + axis]
            if boundary == "dirichlet":
                x.select(dim, 0).copy_(first.expand_as(x.select(dim, 0)))
                x.select(dim, n - 1).copy_(last.expand_as(x.select(dim, 0)))
                continue
            h = 1.0 / (n - 1)
            x.select(dim, 0).copy_((h * first - sum(a[k] * x.select(dim, k) for k in range(1, len(a)))) / a[0])
            x.select(dim, n - 1).copy_((-h * last - sum(a[k] * x.select(dim, n - 1 - k) for k in range(1, len(a))))
                                       / a[0])

    for k in range(fno.n_layers):
        zero = torch.zeros(1, *v.shape[1:], dtype=u.dtype)
        bias = layer(k, zero)[0, :, 0, 0, 0]  # (C,)
        z = layer(k, v)
        moved = v.clone()
        for axis, g in enumerate(hidden):
            dim = 2 + axis
            n = v.shape[dim]
            A = torch.zeros(2, width, 2, width, dtype=u.dtype)
            for e, pos in enumerate((0, n - 1)):
                for c in range(width):
                    unit = zero.clone()
                    unit.select(dim, pos)[0, c, 0, 0] = 1.0
                    response = layer(k, unit) - layer(k, zero)  # the linear part, without b
                    A[0, :, e, c] = response.select(dim, 0)[0, :, 0, 0]
                    A[1, :, e, c] = response.select(dim, n - 1)[0, :, 0, 0]
            ends = torch.stack([z.select(dim, 0), z.select(dim, n - 1)], 1)  # (B, 2, C, face, T)
            if boundary == "dirichlet":
                target = g.permute(0, 3, 1, 2)[:, :, None]  # (B, 2, 1, face, T): the same on every channel
            else:
                pivot = A[0, :, 0] - A[0, :, 1] @ torch.linalg.solve(A[1, :, 1], A[1, :, 0])
                target = torch.stack([torch.einsum("oi,bift->boft", pivot, v.select(dim, 0)),
                                      torch.einsum("oi,bift->boft", A[1, :, 1], v.select(dim, n - 1))], 1)
                target = target + bias[None, None, :, None, None]
            residual = (target - ends).permute(0, 3, 4, 1, 2).flatten(-2)[..., None]  # (B, face, T, 2C, 1)
            d = torch.linalg.solve(A.reshape(2 * width, 2 * width), residual)[..., 0]
            d = d.unflatten(-1, (2, width)).permute(0, 3, 4, 1, 2)  # (B, 2, C, face, T)
            moved.select(dim, 0).add_(d[:, 0])
            moved.select(dim, n - 1).add_(d[:, 1])
        v = layer(k, moved)
        if k < fno.n_layers - 1:
            v = F.gelu(v)
            set_walls(v, [(g[:, None, ..., 0], g[:, None, ..., 1]) for g in hidden], first_dim=2)
    out = fno.projected(fno.cropped(v))  # (B, nx, ny, nt, c_out)
    set_walls(out, [(g.to(u.dtype)[..., 0, :], g.to(u.dtype)[..., 1, :]) for g in (gx, gy)], first_dim=1)
    return fno.formatted(out)


@pytest.mark.parametrize("boundary, order, time_padding", [("dirichlet", 2, 0), ("dirichlet", 2, 2),
                                                           ("neumann", 1, 0), ("neumann", 2, 2)])
def test_2d_forward_is_the_per_face_point_correction_found_by_probing(boundary, order, time_padding):
    """The cavity's walls are exact whatever the layers do (the forward sets the output's walls at the end), so
    the wall tests cannot tell BOON from the overwrite control: this compares the whole 2-D + time output with
    :func:`_probing_reference_2d` (every layer corrected per face point on each bounded axis), and the control
    (same walls, uncorrected layers) is far from it, inside the domain too."""
    torch.manual_seed(41)
    fno = fno_2d_time(nt=3, in_channels=3, out_channels=3, width=4, modes=(3, 3, 2),
                      time_padding=time_padding).double()
    u = torch.randn(2, 8, 6, 3, dtype=torch.float64)
    gx, gy = torch.randn(2, 6, 3, 2, 3, dtype=torch.float64), torch.randn(2, 8, 3, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        y = BOONFNO(fno, boundary, neumann_order=order)(u, [gx, gy])
        expected = _probing_reference_2d(fno, u, gx, gy, boundary, order)
        control = OverwriteFNO(fno, boundary, neumann_order=order)(u, [gx, gy])
    scale = float(expected.abs().max())
    assert max_err(y, expected) <= 1e-11 * scale
    assert max_err(control, expected) > 1e-6 * scale
    assert max_err(control[:, 1:-1, 1:-1], y[:, 1:-1, 1:-1]) > 1e-6 * scale  # the interior too, not the walls only


@pytest.mark.parametrize("dtype", DTYPES)
def test_cavity_walls_exact(dtype):
    """2-D + time, (u, v, ω) channels: x-walls (B, ny, nt, 2, 3), y-walls (B, nx, nt, 2, 3)."""
    torch.manual_seed(3)
    fno = fno_2d_time(nt=6, in_channels=3, out_channels=3, width=6, modes=(3, 3, 3)).to(dtype)
    u = torch.randn(2, 12, 10, 3, dtype=dtype)
    gx, gy = torch.randn(2, 10, 6, 2, 3, dtype=dtype), torch.randn(2, 12, 6, 2, 3, dtype=dtype)
    y = BOONFNO(fno, "dirichlet")(u, [gx, gy])
    assert y.shape == (2, 12, 10, 6, 3)
    errs = [max_err(y[:, 0, 1:-1], gx[:, 1:-1, :, 0]), max_err(y[:, -1, 1:-1], gx[:, 1:-1, :, 1]),
            max_err(y[:, :, 0], gy[:, :, :, 0]), max_err(y[:, :, -1], gy[:, :, :, 1])]
    assert max(errs) <= TOL[dtype]


def test_square_cavity_walls_keyed_by_axis():
    """On a square grid the x- and y-walls have one shape, so a swapped pair passes every check; keyed by grid
    axis the data say which walls are which: {0: x-walls, 1: y-walls} in either order gives the pair's output,
    and the swapped mapping puts the y-walls' data on the x-walls. Keys that are not the bounded axes are
    refused."""
    torch.manual_seed(31)
    fno = fno_2d_time(nt=4, in_channels=2, out_channels=2, width=4, modes=(3, 3, 2)).double()
    model = BOONFNO(fno, "dirichlet")
    u = torch.randn(2, 10, 10, 2, dtype=torch.float64)
    gx, gy = torch.randn(2, 2, 10, 4, 2, 2, dtype=torch.float64).unbind(1)
    with torch.no_grad():
        pair = model(u, [gx, gy])
        assert torch.equal(model(u, {0: gx, 1: gy}), pair) and torch.equal(model(u, {1: gy, 0: gx}), pair)
        swapped = model(u, {0: gy, 1: gx})
    assert max_err(swapped[:, 0, 1:-1], gy[:, 1:-1, :, 0]) <= TOL[torch.float64]
    assert max_err(pair[:, 0, 1:-1], gx[:, 1:-1, :, 0]) <= TOL[torch.float64]
    for keys in ((0,), (0, 2), (0, 1, 2), ("0", "1"), (0.0, 1.0)):
        with pytest.raises(ValueError, match=r"bc as a mapping must be keyed by the bounded grid axes \(0, 1\)"):
            model(u, dict(zip(keys, (gx, gy, gy))))


@pytest.mark.parametrize("order", sorted(NEUMANN_STENCILS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_neumann_walls_2d_exact_except_the_x_walls_corner_points(dtype, order):
    """2-D + time with Neumann data on both axes: the y-walls' stencil derivative holds everywhere; the
    x-walls' holds on every face point but the two corners (y = lo, y = hi), whose stencil points the
    y-walls' values replace (the last axis is written last)."""
    torch.manual_seed(18)
    nx, ny, nt = 12, 10, 4
    fno = fno_2d_time(nt=nt, width=6, modes=(3, 3, 2)).to(dtype)
    gx, gy = torch.randn(2, ny, nt, 2, dtype=dtype), torch.randn(2, nx, nt, 2, dtype=dtype)
    y = BOONFNO(fno, "neumann", neumann_order=order)(torch.randn(2, nx, ny, dtype=dtype), [gx, gy])
    left, right = stencil_derivative(y, 2, 1.0 / (ny - 1), order)
    assert max(max_err(left, gy[..., 0]), max_err(right, gy[..., 1])) <= TOL[dtype]
    left, right = stencil_derivative(y, 1, 1.0 / (nx - 1), order)
    assert max(max_err(left[:, 1:-1], gx[:, 1:-1, :, 0]), max_err(right[:, 1:-1], gx[:, 1:-1, :, 1])) <= TOL[dtype]


def test_elimination_alone_makes_each_1d_dirichlet_layer_exact():
    """Dirichlet: before the output's boundary entries are set, the kernel applied to the corrected input
    already meets the condition (1-D: the closed-form probes and the two-step elimination are exact)."""
    torch.manual_seed(4)
    n = 48
    model = BOONFNO(fno_1d(width=16, modes=8).double(), "dirichlet")
    v = model.fno.lifted(torch.randn(3, n, dtype=torch.float64))
    g = torch.randn(3, 2, dtype=torch.float64)
    for layer in range(model.fno.n_layers):
        z = model.corrected_layer(layer, v, [g[:, None, :]], enforce=False)
        assert max(max_err(z[:, :, 0], g[:, None, 0]), max_err(z[:, :, -1], g[:, None, 1])) < 1e-10
        v = torch.nn.functional.gelu(z)


def test_neumann_elimination_decouples_the_layers_ends_from_the_interior():
    """Neumann (the reference's elimination): after it, the layer's end values are diag(Ã₀₀, A_NN) P(v) + b,
    the input's own end values through the end blocks A of L = K + W (left: the Schur pivot
    A₀₀ - A₀N A_NN⁻¹ A_N0), whatever the input's interior; before they are set from the stencil. (1-D: on
    multi-axis grids every face point is corrected on its own, with the same-position blocks.)"""
    torch.manual_seed(4)
    n = 32
    model = BOONFNO(fno_1d(width=12, modes=6).double(), "neumann", neumann_order=2)
    fno = model.fno
    v = fno.lifted(torch.randn(3, n, dtype=torch.float64))
    data = [torch.randn(3, 1, 2, dtype=torch.float64)]
    for layer in range(fno.n_layers):
        a0n, k, an0 = fno.spectral[layer].response((n,), 0, [-(n - 1), 0, n - 1])
        a = k + fno.pointwise[layer].weight[:, :, 0]
        schur = a - a0n @ torch.linalg.solve(a, an0)
        bias = fno.pointwise[layer].bias[None, :]
        moved = v.clone()
        moved[:, :, 1:-1] += torch.randn_like(moved[:, :, 1:-1])
        for field in (v, moved):
            z = model.corrected_layer(layer, field, data, enforce=False)
            assert max(max_err(z[:, :, 0] - bias, field[:, :, 0] @ schur.T),
                       max_err(z[:, :, -1] - bias, field[:, :, -1] @ a.T)) < 1e-10
        v = torch.nn.functional.gelu(model.corrected_layer(layer, v, data))


def test_1d_dirichlet_layer_absorbs_its_input_ends_with_exact_inverses():
    """1-D Dirichlet, S = A⁻¹: moving the input's ends by a moves the correction δ by -a, so a corrected layer's
    output does not depend on its input's end values. With pseudo-inverses (rcond > 0) it does."""
    torch.manual_seed(6)
    n = 40
    model = BOONFNO(fno_1d(width=8, modes=6).double(), "dirichlet")
    v = model.fno.lifted(torch.randn(3, n, dtype=torch.float64))
    moved = v.clone()
    moved[..., ::n - 1] += 10 * torch.randn(3, 8, 2, dtype=torch.float64)
    data = [torch.randn(3, 1, 2, dtype=torch.float64)]
    for layer in range(model.fno.n_layers):
        same = model.corrected_layer(layer, moved, data, enforce=False)
        assert torch.allclose(same, model.corrected_layer(layer, v, data, enforce=False), atol=1e-11, rtol=0)
    guarded = BOONFNO(model.fno, "dirichlet", rcond=0.1)
    assert not torch.allclose(guarded.corrected_layer(0, moved, data, enforce=False),
                              guarded.corrected_layer(0, v, data, enforce=False), atol=1e-3)


@pytest.mark.parametrize("order", sorted(NEUMANN_STENCILS))
def test_1d_neumann_layer_that_solves_its_input_ends_absorbs_them(order):
    """1-D Neumann, S = A⁻¹: a hidden layer that solves its input's ends p from the stencil inside its correction
    (residual D p - W e - P(K v), e the input's own ends) gives, whatever e, the output of the layer on the input
    with its ends set to p (the reference's order: ends set after σ, then the layer), to round-off."""
    torch.manual_seed(7)
    n = 40
    model = BOONFNO(fno_1d(width=8, modes=6).double(), "neumann", neumann_order=order)
    v = model.fno.lifted(torch.randn(3, n, dtype=torch.float64))
    g = torch.randn(3, 1, 2, dtype=torch.float64)
    steps = model._layers_1d(n, v)
    for layer, step in enumerate(steps):
        ends_set = model.enforce(v.clone(), [g], (n,))
        expected = model._corrected_1d(step, ends_set, g, faces=False)
        moved = v.clone()
        moved[..., ::n - 1] += 10 * torch.randn(3, 8, 2, dtype=torch.float64)
        for field in (v, moved):
            got = model._corrected_1d(step, field, g, faces=False, solve_ends=True)
            assert torch.allclose(got[..., 1:-1], expected[..., 1:-1], atol=1e-11, rtol=0)
        assert not torch.allclose(model._corrected_1d(step, moved, g, faces=False)[..., 1:-1], expected[..., 1:-1],
                                  atol=1e-3)  # the own-ends target T P(v) does depend on e
        v = torch.nn.functional.gelu(expected)


def test_1d_neumann_layer_that_solves_its_ends_refuses_face_terms_and_channel_data():
    """The stencil target of a layer that solves its input's ends takes the hidden layers' one-channel data, and
    the face terms W δ would not describe the solved ends: either misuse is an error, not a wrong field."""
    n = 40
    model = BOONFNO(fno_1d(width=8, modes=6).double(), "neumann")
    v = model.fno.lifted(torch.randn(3, n, dtype=torch.float64))
    step = model._layer_1d(1, n, v)  # unfolded: faces=True alone would be allowed
    one, per_channel = torch.randn(3, 1, 2, dtype=torch.float64), torch.randn(3, 8, 2, dtype=torch.float64)
    model._corrected_1d(step, v, one, faces=True)
    with pytest.raises(ValueError, match=r"solve_ends .*faces=True"):
        model._corrected_1d(step, v, one, faces=True, solve_ends=True)
    with pytest.raises(ValueError, match=r"one-channel data .*\(3, 8, 2\)"):
        model._corrected_1d(step, v, per_channel, faces=False, solve_ends=True)


@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
def test_1d_forward_that_skips_the_hidden_ends_equals_the_one_that_sets_them(boundary):
    """With exact inverses the 1-D forward does not set the hidden layers' ends after σ (each next correction
    absorbs them; Neumann's solves them from the stencil itself); it must equal the forward that sets them, to
    round-off. With pseudo-inverses (rcond > 0) they are set."""
    torch.manual_seed(8)
    n = 40
    model = BOONFNO(fno_1d(width=8, modes=6).double(), boundary)
    u, bc = torch.randn(3, n, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    assert model._absorbs_input_ends()
    skipped = model(u, bc)
    model._absorbs_input_ends = lambda: False  # the forward that sets every hidden layer's ends
    assert torch.allclose(skipped, model(u, bc), atol=1e-12, rtol=0)
    assert not BOONFNO(model.fno, boundary, rcond=0.1)._absorbs_input_ends()


@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
@pytest.mark.parametrize("make", [lambda: fno_1d(width=8, modes=6), lambda: fno_1d_time(nt=6, width=8, modes=(6, 3))])
def test_inference_shortcuts_give_the_training_forward(boundary, make):
    """Without autograd the forward reuses each layer's cached solve matrix S (on 1-D grids folded into the
    kernel's end response); it must equal the forward with autograd (S rebuilt from the weights every
    time), and an in-place change of a kernel's or a pointwise map's weights must refresh the cache."""
    torch.manual_seed(9)
    model = BOONFNO(make().double(), boundary)
    u = torch.randn(3, 24, dtype=torch.float64)
    bc = torch.randn(3, *((2,) if model.fno.nt is None else (model.fno.nt, 2)), dtype=torch.float64)
    with torch.no_grad():
        cached = model(u, bc)
    assert torch.allclose(cached, model(u, bc).detach(), atol=1e-12, rtol=0)
    with torch.no_grad():
        model.fno.spectral[1].weight.mul_(1.5)
        refreshed = model(u, bc)
    assert torch.allclose(refreshed, model(u, bc).detach(), atol=1e-12, rtol=0)
    assert not torch.allclose(refreshed, cached, atol=1e-6)
    with torch.no_grad():
        model.fno.pointwise[2].weight.mul_(0.5)
        again = model(u, bc)
    assert torch.allclose(again, model(u, bc).detach(), atol=1e-12, rtol=0)
    assert not torch.allclose(again, refreshed, atol=1e-6)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
def test_inference_forward_after_optimizer_steps_uses_the_new_weights(boundary, fused):
    """Adam(fused=True) writes the weights without bumping their version. Inference forwards placed where a
    stale cache would survive: between ``backward()`` and ``step()``, and through a second wrapper (a
    monitor of the post hoc correction) that never runs a training forward itself. After every step each of
    them must equal a fresh model on a copy of the weights."""
    torch.manual_seed(12)
    model = BOONFNO(fno_1d(width=8, modes=6), boundary)
    monitor = BOONFNO(model.fno, boundary)
    u, bc, target = torch.randn(4, 24), torch.randn(4, 2), torch.randn(4, 24)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)
    for _ in range(3):
        optimizer.zero_grad()
        ((model(u, bc) - target) ** 2).mean().backward()
        with torch.no_grad():
            model(u, bc), monitor(u, bc), model.fno(u)  # fill the inference caches with the weights before the step
        optimizer.step()
        with torch.no_grad():
            fresh = copy.deepcopy(model.fno)
            assert torch.equal(model(u, bc), BOONFNO(fresh, boundary)(u, bc))
            assert torch.equal(monitor(u, bc), BOONFNO(fresh, boundary)(u, bc))
            assert torch.equal(model.fno(u), fresh(u))


@pytest.mark.parametrize("make", [lambda: fno_1d(width=8, modes=6), lambda: fno_2d_time(nt=3, width=6, modes=(3, 3, 2))])
def test_clear_weight_caches_after_a_write_through_data(make):
    """A write through ``.data`` moves no version counter, so the inference caches (the kernels' block matrices,
    BOON's corrections) keep the old weights; :func:`clear_weight_caches` drops them all, and the inference
    forward then equals the one with autograd, which builds everything afresh."""
    torch.manual_seed(12)
    model = BOONFNO(make().double(), "dirichlet")
    u = torch.randn(2, 12, *(() if model.fno.n_space == 1 else (10,)), dtype=torch.float64)
    bc = (torch.randn(2, 2, dtype=torch.float64) if model.fno.n_space == 1
          else [torch.randn(2, 10, 3, 2, dtype=torch.float64), torch.randn(2, 12, 3, 2, dtype=torch.float64)])
    with torch.no_grad():
        before = model(u, bc)
    for conv, pointwise in zip(model.fno.spectral, model.fno.pointwise):
        conv.weight.data.mul_(1.5)
        pointwise.weight.data.mul_(0.5)
    with torch.no_grad():
        stale = model(u, bc)
        assert clear_weight_caches(model) == 1 + model.fno.n_layers
        cleared = model(u, bc)
    fresh = model(u, bc).detach()  # with autograd: nothing cached is used
    assert torch.allclose(cleared, fresh, atol=1e-12, rtol=0)
    assert not torch.allclose(stale, fresh, atol=1e-6) and not torch.allclose(fresh, before, atol=1e-6)


def test_a_model_built_in_inference_mode_follows_load_state_dict():
    """Inference tensors have no version counter and inside torch.inference_mode they can be overwritten
    (load_state_dict): the kernels' block matrices and BOON's solve were served stale (BOON 8.7e-2 off)."""
    torch.manual_seed(15)
    u, bc = torch.randn(2, 20), torch.randn(2, 2)
    with torch.inference_mode():
        fno, other = fno_1d(width=6, modes=4), fno_1d(width=6, modes=4)
        model = BOONFNO(fno, "dirichlet")
        fno(u), model(u, bc)  # fill whatever would be cached
        fno.load_state_dict(other.state_dict())
        assert torch.equal(fno(u), other(u))
        torch.testing.assert_close(model(u, bc), BOONFNO(other, "dirichlet")(u, bc), rtol=0, atol=0)


def test_the_neumann_stencil_defaults_to_the_pipelines_second_order():
    """The reference enforces its Neumann data on the second-order one-sided stencil, and so do the pipeline's
    models (experiments.boon.NEUMANN_ORDER): a model built without the argument must do the same."""
    from physml.experiments.boon import NEUMANN_ORDER

    fno = fno_1d(width=4, modes=2)
    assert BOONFNO(fno, "neumann").stencil == OverwriteFNO(fno, "neumann").stencil == NEUMANN_STENCILS[NEUMANN_ORDER]
    assert NEUMANN_ORDER == 2


def test_inference_cache_follows_rcond():
    """``rcond`` is part of what the cached solve is made from: changing it on a model must change S."""
    torch.manual_seed(14)
    model = BOONFNO(fno_1d(width=6, modes=4).double(), "dirichlet")
    u, bc = torch.randn(2, 20, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    with torch.no_grad():
        model(u, bc)
        model.rcond = 0.5
        guarded = model(u, bc)
        assert torch.equal(guarded, BOONFNO(model.fno, "dirichlet", rcond=0.5)(u, bc))


@pytest.mark.parametrize("make", [lambda: fno_1d(width=8, modes=6), lambda: fno_1d_time(nt=6, width=8, modes=(6, 3))])
@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
def test_training_after_an_inference_mode_forward(boundary, make):
    """A first forward under torch.inference_mode (as some validation loops run) builds the grid caches; they
    must still serve a training forward and its backward afterwards (no inference tensors kept)."""
    torch.manual_seed(13)
    model = BOONFNO(make(), boundary)
    u = torch.randn(3, 24)
    bc = torch.randn(3, *((2,) if model.fno.nt is None else (model.fno.nt, 2)))
    with torch.inference_mode():
        model(u, bc)
    model(u, bc).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_inference_cache_is_per_grid_and_dtype():
    """The 1-D inference forward fetches every layer's weights-only part once (cached); a second grid size or a
    dtype change must not reuse another grid's or dtype's entries."""
    torch.manual_seed(4)
    model = BOONFNO(fno_1d(width=6, modes=4), "neumann", neumann_order=2)
    for n, dtype in [(24, torch.float32), (31, torch.float32), (24, torch.float64), (24, torch.float32)]:
        model = model.to(dtype)
        u, bc = torch.randn(2, n, dtype=dtype), torch.randn(2, 2, dtype=dtype)
        with torch.no_grad():
            cached = model(u, bc)
        fresh = model(u, bc).detach()
        assert cached.shape == (2, n) and cached.dtype == dtype
        assert torch.allclose(cached, fresh, atol=1e-6 if dtype == torch.float32 else 1e-12, rtol=0)


def test_post_hoc_keeps_weights_and_meets_the_data():
    """Wrapping a trained FNO changes none of its weights; the wrapper's output meets the data, and it differs
    from the plain output in the interior too (the kernels are corrected, not only the boundary entries)."""
    torch.manual_seed(5)
    fno = fno_1d(width=8, modes=4).double()
    before = {k: v.clone() for k, v in fno.state_dict().items()}
    boon = BOONFNO(fno, "dirichlet")
    u, g = torch.randn(3, 32, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    y = boon(u, g)
    assert boon.fno is fno
    assert all(torch.equal(before[k], v) for k, v in fno.state_dict().items())
    assert {id(p) for p in boon.parameters()} == {id(p) for p in fno.parameters()}
    assert max(max_err(y[:, 0], g[:, 0]), max_err(y[:, -1], g[:, 1])) <= TOL[torch.float64]
    assert max_err(y[:, 1:-1], fno(u)[:, 1:-1]) > 1e-3


@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
def test_conditioning_guard_keeps_the_condition_and_bounds_the_correction(boundary):
    """rcond > 0 (pseudo-inverse blocks) still meets the condition exactly; on a near-singular Dirichlet
    layer (one channel of every kernel's boundary response scaled to ~1e-9) the exact inverses blow the
    input modification up while the guarded one stays of the data's size. (Neumann's target T P(v) is made
    from the same blocks as its solve, so such a channel's scale cancels in the layer's output.)"""
    torch.manual_seed(5)
    n = 32
    u, g = torch.randn(3, n, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    fno = fno_1d(width=8, modes=6).to(torch.float64)
    guarded = BOONFNO(fno, boundary, neumann_order=2, rcond=1e-3)
    y = guarded(u, g)
    if boundary == "dirichlet":
        assert max(max_err(y[:, 0], g[:, 0]), max_err(y[:, -1], g[:, 1])) <= 1e-12
    else:
        left, right = stencil_derivative(y, 1, 1.0 / (n - 1), 2)
        assert max(max_err(left, g[:, 0]), max_err(right, g[:, 1])) <= 1e-10
    with pytest.raises(ValueError, match="rcond"):
        BOONFNO(fno, boundary, rcond=1.0)
    if boundary == "neumann":  # its target T P(v) is made from the same blocks: a channel's scale cancels
        return
    with torch.no_grad():  # a layer whose first output channel barely responds to its inputs
        fno.spectral[0].weight.data[:, 0] *= 1e-9
        fno.pointwise[0].weight.data[0] *= 1e-9
    v = fno.lifted(u)
    data = [g[:, None, :]]  # (B, 1, 2): the same data for every channel
    with torch.no_grad():
        exact = BOONFNO(fno, boundary, neumann_order=2).corrected_layer(0, v, data, enforce=False)
        bounded = BOONFNO(fno, boundary, neumann_order=2, rcond=1e-3).corrected_layer(0, v, data, enforce=False)
    assert float(exact.abs().max()) > 1e3 * float(bounded.abs().max())


@pytest.mark.parametrize("boundary", ["dirichlet", "neumann", "periodic"])
def test_overwrite_control_meets_the_condition_and_changes_only_the_ends(boundary):
    """y = E(FNO(u)): the condition holds to round-off; every entry off the two ends is the FNO's own (1-D
    and 1-D + time); the control shares the FNO's parameters and checks its data like BOON."""
    torch.manual_seed(7)
    n, nt = 24, 5
    u = torch.randn(3, n, dtype=torch.float64)
    fno = fno_1d_time(nt=nt, width=8, modes=(5, 3), time_padding=2).double()
    g = None if boundary == "periodic" else torch.randn(3, nt, 2, dtype=torch.float64)
    control = OverwriteFNO(fno, boundary, neumann_order=2)
    y, plain = control(u, g), fno(u)
    assert {id(p) for p in control.parameters()} == {id(p) for p in fno.parameters()}
    assert torch.equal(y[:, 1:-1], plain[:, 1:-1])
    if boundary == "dirichlet":
        assert max(max_err(y[:, 0], g[..., 0]), max_err(y[:, -1], g[..., 1])) == 0.0
    elif boundary == "neumann":
        left, right = stencil_derivative(y, 1, 1.0 / (n - 1), 2)
        assert max(max_err(left, g[..., 0]), max_err(right, g[..., 1])) <= 1e-10
    else:
        assert max_err(y[:, 0], y[:, -1]) == 0.0
        assert torch.allclose(y[:, 0], (plain[:, 0] + plain[:, -1]) / 2, atol=1e-15)
    with pytest.raises(ValueError, match="bc for grid axis 0 must have shape"):
        OverwriteFNO(fno, "dirichlet")(u, torch.randn(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="grid axis 0 has 5 points.*at least 6"):
        OverwriteFNO(fno_1d(width=4, modes=1), "neumann", neumann_order=2)(torch.randn(2, 5), torch.randn(2, 2))


def test_overwrite_control_on_the_cavity_walls():
    """2-D + time, (u, v): x-walls and y-walls (y-walls own the corners) exact, interior untouched."""
    torch.manual_seed(8)
    fno = fno_2d_time(nt=4, in_channels=2, out_channels=2, width=6, modes=(3, 3, 2)).double()
    u = torch.randn(2, 12, 10, 2, dtype=torch.float64)
    gx, gy = torch.randn(2, 10, 4, 2, 2, dtype=torch.float64), torch.randn(2, 12, 4, 2, 2, dtype=torch.float64)
    y, plain = OverwriteFNO(fno, "dirichlet")(u, [gx, gy]), fno(u)
    assert y.shape == plain.shape == (2, 12, 10, 4, 2)
    assert torch.equal(y[:, 1:-1, 1:-1], plain[:, 1:-1, 1:-1])
    assert max(max_err(y[:, 0, 1:-1], gx[:, 1:-1, :, 0]), max_err(y[:, -1, 1:-1], gx[:, 1:-1, :, 1]),
               max_err(y[:, :, 0], gy[:, :, :, 0]), max_err(y[:, :, -1], gy[:, :, :, 1])) == 0.0


def test_bad_inputs_name_the_argument():
    fno = fno_1d(width=4, modes=2)
    with pytest.raises(ValueError, match="boundary"):
        BOONFNO(fno, "robin")
    with pytest.raises(ValueError, match="neumann_order"):
        BOONFNO(fno, "neumann", neumann_order=3)
    with pytest.raises(ValueError, match="bc for grid axis 0 must have shape"):
        BOONFNO(fno, "dirichlet")(torch.randn(2, 16), torch.randn(2, 3))
    with pytest.raises(ValueError, match="bc is required"):
        BOONFNO(fno, "dirichlet")(torch.randn(2, 16))
    with pytest.raises(ValueError, match="bc must be None"):
        BOONFNO(fno, "periodic")(torch.randn(2, 16), torch.randn(2, 2))
    with pytest.raises(ValueError, match="grid axis 0 has 5 points.*order-2 stencil.*at least 6"):
        BOONFNO(fno_1d(width=4, modes=1), "neumann", neumann_order=2)(torch.randn(2, 5), torch.randn(2, 2))
    with pytest.raises(ValueError, match="axes"):
        BOONFNO(fno, "dirichlet", axes=(1,))
    with pytest.raises(ValueError, match="bc must hold one tensor per bounded axis"):
        cav = fno_2d_time(nt=4, width=4, modes=2)
        BOONFNO(cav, "dirichlet")(torch.randn(1, 8, 8), torch.randn(1, 8, 4, 2))
    for axes in (0, (0.5,), "0"):
        with pytest.raises(ValueError, match="axes must be a sequence of distinct spatial axes"):
            BOONFNO(fno, "dirichlet", axes=axes)
    for order in (True, 1.0):
        with pytest.raises(ValueError, match="neumann_order"):
            BOONFNO(fno, "neumann", neumann_order=order)
    with pytest.raises(ValueError, match="bc must be a torch.Tensor, a list of them in the order of the bounded axes"):
        BOONFNO(fno, "dirichlet")(torch.randn(3, 16), torch.randn(3, 2).numpy())
    with pytest.raises(ValueError, match="finite real floats; got dtype torch.complex64"):
        BOONFNO(fno, "dirichlet")(torch.randn(2, 16), torch.randn(2, 2, dtype=torch.complex64))


@pytest.mark.parametrize("model_class", [BOONFNO, OverwriteFNO])
@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
def test_non_finite_boundary_data_are_refused(boundary, model_class):
    """NaN or inf in ``bc`` would spread through every layer's correction into the whole sample (and in
    training into every gradient); they are refused, naming the samples that hold them."""
    torch.manual_seed(15)
    bc = torch.randn(4, 2)
    bc[1, 0], bc[3, 1] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"bc for grid axis 0 must hold finite real floats; got NaN or inf in "
                                         r"samples \[1, 3\]"):
        model_class(fno_1d(width=4, modes=3), boundary)(torch.randn(4, 16), bc)


def test_periodic_needs_no_stencil_points():
    """The periodic condition carries no stencil, so ``neumann_order`` does not raise its grid minimum."""
    model = BOONFNO(fno_1d(width=4, modes=2), "periodic", neumann_order=2)
    assert model.min_points() == 3
    y = model(torch.randn(2, 5))
    assert max_err(y[:, 0], y[:, -1]) == 0.0


def test_singular_layer_names_the_layer_and_the_guard():
    """A layer whose end blocks are singular (an output channel that is dead at both ends: its kernel and
    pointwise rows zero) cannot be corrected with exact inverses; the error says which layer and that a
    conditioning guard (``rcond`` > 0) makes it usable, and with the guard the condition holds."""
    torch.manual_seed(16)
    fno = fno_1d(width=4, modes=3)
    with torch.no_grad():
        fno.spectral[2].weight[:, 1] = 0.0
        fno.pointwise[2].weight[1] = 0.0
    u, bc = torch.randn(2, 16), torch.randn(2, 2)
    with pytest.raises(ValueError, match=r"BOON layer 2's end blocks along grid axis 0 are singular.*rcond > 0"):
        with torch.no_grad():
            BOONFNO(fno, "dirichlet")(u, bc)
    y = BOONFNO(fno, "dirichlet", rcond=1e-6)(u, bc)
    assert max(max_err(y[:, 0], bc[:, 0]), max_err(y[:, -1], bc[:, 1])) <= TOL[torch.float32]


def heat_dirichlet_data(n_samples: int, n: int, t_end: float, seed: int) -> TensorDataset:
    """Exact heat solutions u_t = u_xx on [0, 1] with u(0) = a, u(1) = b (differ per sample):
    u(T, x) = a + (b - a) x + Σ_k c_k e^{-k²π²T} sin(kπx)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.linspace(0.0, 1.0, n)
    ab = torch.rand(n_samples, 2, generator=gen) * 2 - 1
    c = torch.randn(n_samples, 3, generator=gen)
    k = torch.arange(1, 4, dtype=torch.float32)
    modes = torch.sin(math.pi * k[:, None] * x[None, :])
    steady = ab[:, :1] + (ab[:, 1:] - ab[:, :1]) * x
    u0 = steady + c @ modes
    u_t = steady + (c * torch.exp(-(k * math.pi) ** 2 * t_end)) @ modes
    return TensorDataset(u0, ab, u_t)


def test_fno_and_boon_train_through_fit_and_boon_boundary_is_exact(tmp_path):
    from physml.training import TrainConfig, fit

    train, val = heat_dirichlet_data(48, 32, 0.02, seed=0), heat_dirichlet_data(16, 32, 0.02, seed=1)
    config = TrainConfig(epochs=6, batch_size=8, lr=1e-2, weight_decay=1e-4, device="cpu", seed=0)

    def rel_l2(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        return ((pred - true).norm(dim=-1) / true.norm(dim=-1)).mean()

    results = {}
    for name in ("fno", "boon"):
        torch.manual_seed(0)
        fno = fno_1d(width=12, modes=6)
        model = BOONFNO(fno, "dirichlet") if name == "boon" else fno

        def loss_fn(m, batch, name=name):
            u0, ab, target = batch
            return rel_l2(m(u0, ab) if name == "boon" else m(u0), target)

        with torch.no_grad():
            start = float(loss_fn(model, val.tensors))
        result = fit(model, loss_fn, train, val, config, tmp_path / f"{name}.pt",
                     {"case": "heat_dirichlet_toy", "model": name, **fno.config()}, progress=False)
        assert result.best_val < 0.7 * start
        u0, ab, target = val.tensors
        with torch.no_grad():
            pred = model(u0, ab) if name == "boon" else model(u0)
        results[name] = max_err(pred[:, [0, -1]], ab)
    assert results["boon"] <= 1e-6
    assert results["fno"] > 1e-3


@pytest.mark.parametrize("make", [lambda: fno_1d(width=4, modes=3, n_layers=2),
                                  lambda: fno_1d_time(nt=4, width=4, modes=(3, 2), n_layers=2)], ids=["1d", "1d_time"])
def test_inference_mode_leaves_no_inference_tensor_in_the_caches(make):
    """A frozen model (post hoc evaluation) run once under torch.inference_mode cached its kernel's block
    matrix as an inference tensor, and every later forward with autograd failed ("inference tensors cannot be
    saved for backward"); a model built inside inference_mode could not run at all (no version counter)."""
    torch.manual_seed(3)
    fno = make().requires_grad_(False)
    model = BOONFNO(fno, "dirichlet")
    u = torch.randn(2, 16)
    bc = torch.randn(2, 2) if fno.nt is None else torch.randn(2, 4, 2)
    with torch.inference_mode():
        expected = model(u, bc).clone()
    u.requires_grad_(True)
    out = model(u, bc)
    out.sum().backward()
    assert u.grad is not None and torch.allclose(out.detach(), expected, atol=1e-6)
    with torch.inference_mode():
        built_there = make()
        for m in (built_there, BOONFNO(built_there, "neumann")):
            assert m(u.detach(), *([] if m is built_there else [bc])).shape[:2] == (2, 16)


def _c2r_that_reads_the_zero_frequencys_imaginary_part(original):
    """``torch.fft.irfftn`` as cuFFT computes it on 1-D grids of 2^13 and 2^14 points (pytorch/pytorch#154496):
    an imaginary part at the zero frequency, which a real signal cannot hold and pocketfft drops, comes out as
    ±Im(z₀)/n alternating along the grid."""
    def irfftn(z: torch.Tensor, s=None, dim=None, norm=None) -> torch.Tensor:
        out = original(z, s=s, dim=dim, norm=norm)
        if dim is not None and len(dim) == 1:
            n = out.shape[-1]
            sign = -torch.ones(n, dtype=out.dtype).pow(torch.arange(n))
            out = out - z.imag[..., :1] * sign / n
        return out

    return irfftn


@pytest.mark.parametrize("boundary", ["plain", "dirichlet", "neumann", "periodic"])
def test_1d_outputs_do_not_depend_on_how_the_inverse_transform_treats_the_zero_frequency(boundary, monkeypatch):
    """The kernel's zero-frequency weights are taken real (``SpectralConv.block_weight``), so every spectrum a
    1-D layer hands to the inverse transform is real there and a backend that reads its imaginary part (cuFFT
    at 2^13, 2^14 points) gives the same outputs. With complex weights there the outputs moved, and BOON's
    hidden layers no longer met their data: their closed-form corrections assume the part is dropped."""
    torch.manual_seed(21)
    fno = fno_1d(width=6, modes=5).double()
    model = fno if boundary == "plain" else BOONFNO(fno, boundary)
    u, g = torch.randn(3, 24, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    args = (u,) if boundary in ("plain", "periodic") else (u, g)
    with torch.no_grad():
        fno.spectral[0].weight[:, :, 0, 1].fill_(0.5)  # an imaginary zero-frequency weight the transform must not see
    expected = model(*args).detach()
    monkeypatch.setattr(torch.fft, "irfftn", _c2r_that_reads_the_zero_frequencys_imaginary_part(torch.fft.irfftn))
    clear_weight_caches(model)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            y = model(*args).detach()
        assert max_err(y, expected) <= 1e-12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (cuFFT)")
@pytest.mark.parametrize("n", [8192, 16384])
def test_1d_boon_on_cuda_agrees_with_the_cpu_where_cufft_reads_the_zero_frequencys_imaginary_part(n):
    """On the grids where cuFFT's c2r transform uses an imaginary part at the zero frequency (pytorch/pytorch
    #154496), the 1-D FNO and its Dirichlet BOON give the CPU's outputs."""
    torch.manual_seed(22)
    fno = fno_1d(width=8, modes=16).double()
    u, g = torch.randn(2, n, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    with torch.no_grad():
        expected = [fno(u), BOONFNO(fno, "dirichlet")(u, g)]
        fno_gpu = copy.deepcopy(fno).cuda()
        got = [fno_gpu(u.cuda()).cpu(), BOONFNO(fno_gpu, "dirichlet")(u.cuda(), g.cuda()).cpu()]
    for y, want in zip(got, expected):
        assert max_err(y, want) <= 1e-10 * float(want.abs().max())
