"""The benchmark's reference forwards compute what their names say (timings themselves are not tested)."""

import sys
from pathlib import Path

import torch

from physml.models.fno import fno_1d

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from boon_speed import plain_with_kernel_product, real_parameters  # noqa: E402


def test_floor_forward_is_the_plain_forward_plus_the_end_response() -> None:
    """With δ = 0 the floor forward is the plain FNO (so its extra time is the product alone); with δ ≠ 0
    the product's result is used (add_end_response itself is checked against a transform in test_fno)."""
    torch.manual_seed(0)
    fno = fno_1d(width=8, modes=4).double().eval()
    u = torch.randn(3, 32, dtype=torch.float64)
    with torch.no_grad():
        end_blocks = [conv.end_block(32) for conv in fno.spectral]
        zero = torch.zeros(3, 16, dtype=torch.float64)
        assert torch.allclose(plain_with_kernel_product(fno, u, zero, end_blocks), fno(u), atol=1e-14)
        deltas = torch.randn(3, 16, dtype=torch.float64)
        moved = plain_with_kernel_product(fno, u, deltas, end_blocks)
        assert (moved - fno(u)).abs().max() > 1e-3


def test_real_parameters_count_a_complex_weight_twice() -> None:
    """The neuraloperator comparison is only made between networks of equal real parameter counts; its spectral
    weights are complex, ours real, so a complex entry counts as two."""
    net = torch.nn.Linear(3, 2)  # 6 + 2 real
    net.register_parameter("spectral", torch.nn.Parameter(torch.zeros(4, 5, dtype=torch.complex64)))
    assert real_parameters(net) == 8 + 2 * 20
