"""FNO and its truncated-Fourier kernel: shapes of the three variants, closed-form kernel responses,
translation equivariance of K, and bad input."""

from __future__ import annotations

import pytest
import torch

from physml.layers.spectral import SpectralConv, SpectralConv1d, SpectralConv2d, SpectralConv3d
from physml.models.fno import FNO, fno_1d, fno_1d_time, fno_2d_time

CASES = [((16,), (5,), 0), ((12, 9), (3, 4), 0), ((12, 9), (3, 4), 1), ((10, 8, 7), (2, 3, 3), 1),
         ((10, 8, 7), (2, 3, 3), 2)]


@pytest.mark.parametrize(("shape", "modes", "axis"), CASES)
def test_closed_form_response_equals_probing_with_unit_vectors(shape, modes, axis):
    """(K e_p)_{p+Δ} from the weights alone equals applying K to a unit vector, for every channel pair."""
    torch.manual_seed(0)
    conv = SpectralConv(3, 2, modes).double()
    offsets = [0, 1, -1, shape[axis] - 1]
    resp = conv.response(shape, axis, offsets)
    p = [s // 2 for s in shape]
    for ci in range(3):
        e = torch.zeros(1, 3, *shape, dtype=torch.float64)
        e[(0, ci, *p)] = 1.0
        out = conv(e)
        for i, d in enumerate(offsets):
            q = list(p)
            q[axis] = (q[axis] + d) % shape[axis]
            assert torch.allclose(out[(0, slice(None), *q)], resp[i, :, ci], atol=1e-15, rtol=0)


@pytest.mark.parametrize(("shape", "modes", "axis"), CASES)
def test_partial_transforms_match_full_transforms(shape, modes, axis):
    """values_at = K(x) on the end hyperplanes; face_spectrum = spectrum of a face-supported field."""
    torch.manual_seed(1)
    conv = SpectralConv(3, 3, modes).double()
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    n = shape[axis]
    ends = [0, 1, n - 1]
    vals = conv.values_at(conv.mix(conv.spectrum(x)), shape, axis, ends)
    full = conv(x)
    assert torch.allclose(vals, torch.stack([full.select(2 + axis, j) for j in ends], -1), atol=1e-13)
    faces = torch.randn(2, 3, *[s for a, s in enumerate(shape) if a != axis], 2, dtype=torch.float64)
    field = torch.zeros(2, 3, *shape, dtype=torch.float64)
    field.select(2 + axis, 0).copy_(faces[..., 0])
    field.select(2 + axis, n - 1).copy_(faces[..., 1])
    assert torch.allclose(conv.face_spectrum(faces, shape, axis, [0, n - 1]), conv.spectrum(field), atol=1e-12)


def test_float32_phases_and_responses_are_rounded_once():
    """In float32 the closed forms carry only their final rounding: the phases e^{±2πi k j / n} at 512
    points and 16 modes (where 2π k j / n reaches ~100 rad) and the kernel's responses agree with the
    float64 ones to a few float32 epsilons, relative to their scale."""
    torch.manual_seed(3)
    conv = SpectralConv(4, 4, (16,))
    n, eps = 512, torch.finfo(torch.float32).eps
    for sign in (1, -1):
        exact = conv.phase(0, n, range(n), sign, torch.complex128, torch.device("cpu"))
        single = conv.phase(0, n, range(n), sign, torch.complex64, torch.device("cpu"))
        assert float((single.to(torch.complex128) - exact).abs().max()) <= eps
    offsets = list(range(-3, 4)) + [n - 1, -(n - 1)]
    with torch.no_grad():
        single = conv.response((n,), 0, offsets)
        exact = conv.double().response((n,), 0, offsets)
    assert float((single.double() - exact).abs().max()) <= 4 * eps * float(exact.abs().max())


@pytest.mark.parametrize("n", [16, 17])
def test_1d_end_operators_equal_the_partial_transforms(n):
    """1-D: values_at reads K(x) at grid points whatever the spectrum's memory layout; add_end_response with
    end_block (one batched real product on the end values) adds mix(face_spectrum(.)), the kernel's output
    spectrum for a field supported at the two ends, in place on the mix's layout and into a copy on another,
    with the same gradients as the transform route; a matrix folded into the end block acts on the rows."""
    torch.manual_seed(2)
    conv = SpectralConv(3, 4, (5,)).double()
    x = torch.randn(2, 3, n, dtype=torch.float64)
    m = conv.mix(conv.spectrum(x))  # (B, C_out, K), mode-major in memory
    positions = [0, 1, n - 2, n - 1]
    full = torch.stack([conv(x)[..., j] for j in positions], -1)
    assert torch.allclose(conv.values_at(m, (n,), 0, positions), full, atol=1e-13)
    assert torch.allclose(conv.values_at(m.contiguous(), (n,), 0, positions), full, atol=1e-13)
    values = torch.randn(2, 2, 3, dtype=torch.float64)  # (B, end, C_in)
    rows = values.reshape(2, 6)  # end-major rows (v₀, v_N)

    def by_transform() -> torch.Tensor:
        return conv.mix(conv.spectrum(x)) + conv.mix(conv.face_spectrum(values.transpose(1, 2), (n,), 0, [0, n - 1]))

    expect = by_transform()
    end_block = conv.end_block(n)
    assert end_block.shape == (5, 6, 8)
    batch_major = m.contiguous()
    assert torch.allclose(conv.add_end_response(batch_major, rows, end_block), expect, atol=1e-13)
    assert torch.equal(batch_major, m)  # another layout: summed into a copy
    fold = torch.randn(6, 6, dtype=torch.float64)  # rows @ fold are the end values
    folded = conv.add_end_response(m.contiguous(), torch.linalg.solve(fold.T, rows.T).T, fold @ end_block)
    assert torch.allclose(folded, expect, atol=1e-12)
    assert torch.allclose(conv.add_end_response(m, rows, end_block), expect, atol=1e-13)
    assert torch.allclose(m, expect, atol=1e-13)  # the mix's layout: summed in place
    by_transform().abs().sum().backward()
    expect_grad = conv.weight.grad.clone()
    conv.weight.grad = None
    conv.add_end_response(conv.mix(conv.spectrum(x)), rows, conv.end_block(n)).abs().sum().backward()
    assert torch.allclose(conv.weight.grad, expect_grad, atol=1e-12)
    with pytest.raises(ValueError, match="1-D kernels"):
        SpectralConv(2, 2, (2, 2)).end_block(8)
    with pytest.raises(ValueError, match=r"1-D spectrum \(B, out, K\)"):
        conv.add_end_response(torch.zeros(2, 4, 5, 3, dtype=torch.cdouble), rows, end_block)
    with pytest.raises(ValueError, match="end block"):
        conv.add_end_response(m, rows[:, :4], end_block)


def _real_at_zero_frequency(conv: SpectralConv) -> torch.Tensor:
    """The kernel's complex weights R ``(in, out, *kept)`` with R at the zero frequency (kept index 0 on every
    axis) replaced by its real part, built from ``conv.weight`` so that gradients reach it."""
    mask = torch.ones_like(conv.weight)
    mask[(slice(None), slice(None), *[0] * conv.ndim, 1)] = 0.0
    return torch.view_as_complex(conv.weight * mask)


@pytest.mark.parametrize("kept", [(5,), (4, 3), (4, 2, 3)])
def test_mix_is_the_complex_channel_product_per_frequency(kept):
    """The block-real mix equals Ŷ_o(k) = Σ_i X̂_i(k) R_io(k) in complex arithmetic, values and gradients,
    on 1, 2 and 3 axes, with R at the zero frequency taken real (a real output holds only its real part);
    its output is mode-major in memory."""
    torch.manual_seed(4)
    conv = SpectralConv(3, 2, tuple((k + 1) // 2 if a < len(kept) - 1 else k for a, k in enumerate(kept))).double()
    x = torch.randn(2, 3, *kept, dtype=torch.complex128, requires_grad=True)
    got = conv.mix(x)
    assert float(conv.weight[(slice(None), slice(None), *[0] * len(kept), 1)].abs().min().detach()) > 0
    want = torch.einsum("bi...,io...->bo...", x, _real_at_zero_frequency(conv))
    assert torch.allclose(got, want, atol=1e-13)
    assert got.permute(*range(2, 2 + len(kept)), 0, 1).is_contiguous()
    seed = torch.randn_like(want)
    grads = torch.autograd.grad((got * seed.conj()).real.sum(), (x, conv.weight))
    expect = torch.autograd.grad((want * seed.conj()).real.sum(), (x, conv.weight))
    for g, e in zip(grads, expect):
        assert torch.allclose(g, e, atol=1e-12)


def test_block_weight_is_cached_at_inference_until_the_weight_changes():
    """Without autograd the block matrix is reused; an in-place update (an optimizer step) or a dtype
    change rebuilds it; with autograd it is built afresh (and carries the graph)."""
    conv = SpectralConv(2, 2, (3,))
    with torch.no_grad():
        first = conv.block_weight()
        assert conv.block_weight() is first
        conv.weight.add_(1.0)
        second = conv.block_weight()
        assert second is not first and not torch.allclose(second, first)
        x = torch.randn(1, 2, 3, dtype=torch.complex64)
        assert torch.allclose(conv.mix(x), torch.einsum("bik,iok->bok", x, _real_at_zero_frequency(conv)), atol=1e-6)
    assert conv.block_weight().requires_grad
    assert conv.block_weight() is not conv.block_weight()
    conv.double()
    with torch.no_grad():
        assert conv.block_weight().dtype == torch.float64


def test_block_weight_cache_follows_a_swapped_weight_tensor():
    """``weight.data = new`` (what loading or re-initialising may do) gives a tensor of the same version 0:
    the cache notices it by its storage, whose old memory it holds so that no new tensor can reuse it."""
    torch.manual_seed(5)
    conv = SpectralConv(4, 4, (3,))
    with torch.no_grad():
        old = conv.block_weight()
        conv.weight.data = torch.rand_like(conv.weight)
        cached = conv.block_weight()
    with torch.enable_grad():
        fresh = conv.block_weight().detach()
    assert torch.equal(cached, fresh) and not torch.equal(cached, old)


def test_block_weight_cache_sees_fused_optimizer_steps():
    """Fused Adam writes the weight without bumping its in-place version (torch 2.13); a block matrix cached
    by an inference forward between ``backward()`` and ``step()`` must still be rebuilt after the step."""
    torch.manual_seed(6)
    conv = SpectralConv(3, 3, (4,))
    optimizer = torch.optim.Adam(conv.parameters(), lr=0.1, fused=True)
    x = torch.randn(2, 3, 4, dtype=torch.complex64)
    for _ in range(2):
        optimizer.zero_grad()
        conv.mix(x).abs().sum().backward()
        with torch.no_grad():
            conv.block_weight()
        version = conv.weight._version
        optimizer.step()
        assert conv.weight._version == version  # the write the version does not see
        with torch.no_grad():
            cached = conv.block_weight()
        with torch.enable_grad():
            assert torch.equal(cached, conv.block_weight().detach())


def test_kernel_is_translation_equivariant_and_band_limited():
    """K commutes with circular shifts (a convolution) and its output has no energy above the kept modes.

    Kept: k1 in [-3, 2], k2 in [0, 1]; on k2 = 0 real output also carries the mirror k1 = +3 of k1 = -3.
    """
    torch.manual_seed(2)
    conv = SpectralConv2d(4, 4, 3, 2).double()
    x = torch.randn(2, 4, 16, 10, dtype=torch.float64)
    shifted = conv(torch.roll(x, shifts=(3, 2), dims=(2, 3)))
    assert torch.allclose(shifted, torch.roll(conv(x), shifts=(3, 2), dims=(2, 3)), atol=1e-13)
    spec = torch.fft.rfftn(conv(x), dim=(2, 3))
    assert spec[:, :, 4:-3].abs().max() < 1e-12 and spec[:, :, 3, 1:].abs().max() < 1e-12
    assert spec[:, :, 3, 0].abs().max() > 1e-3 and spec[:, :, :, 2:].abs().max() < 1e-12


def test_variant_shapes_and_dtype():
    torch.manual_seed(3)
    assert fno_1d(width=8, modes=4)(torch.randn(3, 32)).shape == (3, 32)
    assert fno_1d_time(nt=7, width=8, modes=(4, 3))(torch.randn(3, 32)).shape == (3, 32, 7)
    cav = fno_2d_time(nt=5, in_channels=3, out_channels=3, width=6, modes=(3, 3, 2)).double()
    out = cav(torch.randn(2, 12, 10, 3, dtype=torch.float64))
    assert out.shape == (2, 12, 10, 5, 3) and out.dtype == torch.float64
    vort = fno_2d_time(nt=5, width=6, modes=(3, 3, 2))
    assert vort(torch.randn(2, 12, 10)).shape == (2, 12, 10, 5)
    rebuilt = FNO(**cav.config())
    assert rebuilt.config() == cav.config()


def test_time_padding_pads_inside_the_fourier_layers_only():
    """time_padding appends zero steps to the lifted field's time axis and cuts them off before the
    projection: same output shape, and the forward is the plain layer stack on the padded field."""
    torch.manual_seed(5)
    fno = fno_1d_time(nt=7, width=8, modes=(4, 4), time_padding=4).double()
    u = torch.randn(3, 24, dtype=torch.float64)
    out = fno(u)
    assert out.shape == (3, 24, 7)
    v = torch.nn.functional.pad(fno.lifted(u), (0, 4))
    assert v.shape == (3, 8, 24, 11)
    for layer in range(fno.n_layers):
        v = fno.spectral[layer](v) + fno.apply_pointwise(layer, v)
        v = torch.nn.functional.gelu(v) if layer < fno.n_layers - 1 else v
    assert torch.allclose(out, fno.projected(v[..., :7]).squeeze(-1), atol=1e-13)
    unpadded = FNO(**{**fno.config(), "time_padding": 0}).double()
    unpadded.load_state_dict(fno.state_dict())
    assert (unpadded(u) - out).abs().max() > 1e-2 * out.abs().max()  # the time axis no longer wraps around
    assert FNO(**fno.config()).config()["time_padding"] == 4


def test_constructors_of_fixed_dimension():
    assert SpectralConv1d(2, 3, 4).modes == (4,)
    assert SpectralConv3d(2, 3, 4, 5, 6).modes == (4, 5, 6)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="modes"):
        SpectralConv1d(2, 2, 9)(torch.randn(1, 2, 8))
    with pytest.raises(ValueError, match="n_space"):
        FNO(n_space=3)
    with pytest.raises(ValueError, match="modes"):
        FNO(n_space=1, nt=5, modes=(3, 3, 3))
    with pytest.raises(ValueError, match="u must have shape"):
        fno_1d(width=4, modes=2)(torch.randn(2, 8, 8))
    with pytest.raises(ValueError, match="batch size 0"):
        fno_1d(width=4, modes=2)(torch.randn(0, 8))
    with pytest.raises(ValueError, match=r"u has dtype torch.float64 and the model torch.float32"):
        fno_1d(width=4, modes=2)(torch.randn(2, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="domain"):
        fno_1d(domain=(1.0, 0.0))
    with pytest.raises(ValueError, match="time_padding"):
        fno_1d(time_padding=3)  # single step: no time axis to pad
    with pytest.raises(ValueError, match="time_padding"):
        fno_1d_time(nt=5, time_padding=-1)
    # the time axis is nt + time_padding long inside the layers: its modes are checked at construction
    with pytest.raises(ValueError, match=r"modes\[-1\] = 4 \(time\) .* nt \+ time_padding = 3 \+ 2 = 5 allows at most 3"):
        FNO(n_space=1, nt=3, modes=(3, 4), time_padding=2)
    assert FNO(n_space=1, nt=3, modes=(3, 4), time_padding=3).modes == (3, 4)
    for bad in (3.5, [4, 2.5], True, "8"):  # not truncated to an integer, not iterated as characters
        with pytest.raises(ValueError, match="modes must be an int >= 1 or"):
            fno_1d_time(nt=5, modes=bad)


def test_numpy_integers_are_integers():
    """Sizes read from arrays are numpy integers: they build the same model, and its config stays json."""
    import json

    import numpy as np

    model = fno_1d_time(nt=np.int64(4), width=np.int32(6), modes=np.int64(3), time_padding=np.int64(2))
    config = model.config()
    assert config == fno_1d_time(nt=4, width=6, modes=3, time_padding=2).config()
    assert json.loads(json.dumps(config)) == config and fno_1d(modes=np.int64(3)).modes == (3,)
    assert fno_1d_time(nt=5, modes=np.array([4, 3])).modes == (4, 3)
    assert json.dumps(FNO(n_space=np.int64(1)).config())
    with pytest.raises(ValueError, match="n_space must be 1 or 2"):
        FNO(n_space=True)
