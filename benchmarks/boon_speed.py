"""Speed of BOON and of our FNO, as ratios measured in this run (never absolute numbers in tests).

1. The channel mix as one batched real product (SpectralConv.mix) / the same product as a complex einsum,
   forward + backward (no target: the choice of formulation).
2. BOON-corrected forward / plain FNO forward at the reference sizes (target ≤ 1.1), at inference (no
   autograd: BOON's weight-derived matrices are built once and cached, as at serving; with autograd they are
   rebuilt every call, which section 3 measures):
   1-D (batch 20, 512 points, width 64, 16 modes) and 1-D + time (batch 20, 500 × 25 with the time axis
   padded by 9 inside the layers as in the reference and params.yaml, width 32, 12 modes), Dirichlet,
   Neumann and periodic. In 1-D also the floor: the plain forward plus the one
   kernel product an exact correction must add per layer (:func:`plain_with_kernel_product`): what the
   correction costs before any readout, solve or end values, as much arithmetic as one more channel mix.
   DEVELOPERS.md ("Speed of the BOON forward") splits the rest of the 1-D ratio into its parts.
3. BOON training step / plain FNO training step, Dirichlet, at the same sizes (no target: what training with
   the correction costs).
4. Our FNO training step (forward, relative L2, backward, Adam) / neuraloperator's FNO with the same
   width and kept modes on the same batch, neither padded (target ≤ 1.0). neuraloperator is not a
   dependency: it is imported if installed (``pip install --target /tmp/neuralop --no-deps
   neuraloperator==2.0.0 tensorly tensorly-torch opt_einsum``, then ``PYTHONPATH=/tmp/neuralop``), skipped
   otherwise, saying why. Two neuraloperator set-ups: "matched" (one linear lifting, no channel MLP, projection
   width 128, like ours and the reference: the script checks that it has exactly our number of real
   parameters, complex weights counted twice, before timing it) and its defaults (channel MLP in every
   layer, two-layer lifting).

Usage: ``python benchmarks/boon_speed.py [--repeats 60] [--threads N] [--device cpu|cuda] [--as-is]
[--only mix|forward|training|neuralop ...]`` (``--only``: run those sections alone, e.g. ``--only forward`` to
repeat the target's ratios in several processes).
Every round times each model once, in a random order; a ratio is the median over rounds of the
paired ratio (model / baseline in the same round), printed with its interquartile range [q1-q3].

Timing settings: unless ``--as-is``, the script re-runs itself with OpenMP threads that spin between
operations (``OMP_WAIT_POLICY=ACTIVE``) and keeps large blocks on glibc's heap as the pipeline's stages
do (:func:`physml.allocator.keep_large_blocks_on_heap`). On a shared 2-core VM the defaults make single
timings drift by ±20 % (sleeping threads wake late, fresh pages fault in); with these settings the
interquartile range of the paired ratios is about ±3 %. Both models run under the same settings. The
heap matters most in 1-D + time: its activations (~40 MB with the padded time axis) are above glibc's
largest mmap threshold (32 MiB), so by default every one is a fresh mapping whose pages fault in on
first touch, which made the forward 2-3× slower and the ratios meaningless. Between processes the
medians still move by about ±3 % in 1-D and ±5 % in 1-D + time, so compare runs, not single digits.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physml.allocator import keep_large_blocks_on_heap  # noqa: E402
from physml.layers.spectral import SpectralConv  # noqa: E402
from physml.models.boon import BOONFNO  # noqa: E402
from physml.models.fno import fno_1d, fno_1d_time  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
          seed: int = 0) -> dict[str, list[float]]:
    """Seconds of every call of each callable: ``repeats`` rounds after one warm-up call each; every round
    runs all callables once, in a random order (so drift and cache effects hit each alike)."""
    for fn in fns.values():
        fn()
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            samples[name].append(time.perf_counter() - start)
    return samples


def paired_ratio(samples: dict[str, list[float]], name: str, baseline: str) -> tuple[float, float, float]:
    """Median and quartiles over rounds of ``name``'s time / ``baseline``'s time in the same round."""
    ratios = sorted(a / b for a, b in zip(samples[name], samples[baseline], strict=True))
    q = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q[0], q[2]


def _fmt(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.3f}x [{r[1]:.2f}-{r[2]:.2f}]"


def plain_with_kernel_product(fno: torch.nn.Module, u: torch.Tensor, deltas: torch.Tensor,
                              end_blocks: list[torch.Tensor]) -> torch.Tensor:
    """1-D: the plain FNO forward plus, in every layer, the one product the exact correction cannot avoid.

    Whatever the solve, BOON must add the kernel's response to the end modifications δ (B, 2·width, end-major)
    to each layer's spectrum: R δ₀ + ω R δ_N (:meth:`SpectralConv.add_end_response` with the layer's
    ``end_blocks`` entry, :meth:`SpectralConv.end_block`, built once as BOON caches it at inference), as much
    arithmetic as one more channel mix. Here δ is fixed, so there is no readout, no solve and no end values:
    this forward's time over the plain one is the floor of a BOON forward built on this FNO's layers.
    """
    v = fno.lifted(u)
    n = v.shape[-1]
    for layer in range(fno.n_layers):
        conv = fno.spectral[layer]
        spec = conv.add_end_response(conv.mix(conv.spectrum(v)), deltas, end_blocks[layer])
        v = conv.to_grid(spec, (n,)).add_(fno.apply_pointwise(layer, v))
        if layer < fno.n_layers - 1:
            v = torch.nn.functional.gelu(v)
    return fno.formatted(fno.projected(v))


def boon_forward_ratios(repeats: int, device: torch.device) -> None:
    print("BOON forward / plain FNO forward at inference, no autograd (target <= 1.1); 1-D floor: plain + the "
          "correction's kernel product alone (no readout, solve or end values)")
    cases = [("1-D      B=20 N=512 w=64 m=16", fno_1d(width=64, modes=16), (20, 512), (20, 2)),
             ("1-D+time B=20 500x25 (+9 padded) w=32 m=12", fno_1d_time(nt=25, width=32, modes=12, time_padding=9),
              (20, 500), (20, 25, 2))]
    for label, fno, u_shape, bc_shape in cases:
        fno = fno.to(device).eval()
        u = torch.randn(*u_shape, device=device)
        bc = torch.randn(*bc_shape, device=device)
        fns: dict[str, Callable[[], object]] = {"fno": lambda: fno(u)}
        for boundary in ("dirichlet", "neumann", "periodic"):
            model = BOONFNO(fno, boundary)
            data = None if boundary == "periodic" else bc
            fns[boundary] = (lambda m=model, d=data: m(u, d))
        variants = ["dirichlet", "neumann", "periodic"]
        if fno.grid_ndim == 1:
            deltas = torch.randn(u_shape[0], 2 * fno.width, device=device)
            with torch.no_grad():
                end_blocks = [conv.end_block(u_shape[1]) for conv in fno.spectral]
            fns["floor"] = lambda: plain_with_kernel_product(fno, u, deltas, end_blocks)
            variants.append("floor")
        with torch.no_grad():
            t = timed(fns, repeats, device)
        ratios = "  ".join(f"{b} {_fmt(paired_ratio(t, b, 'fno'))}" for b in variants)
        print(f"  {label}: plain {statistics.median(t['fno']) * 1e3:.1f} ms; {ratios}")


def _train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, call: Callable[[torch.Tensor], torch.Tensor]) -> None:
    opt.zero_grad(set_to_none=True)
    pred = call(x).reshape(y.shape)
    loss = ((pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean()
    loss.backward()
    opt.step()


def mix_ratios(repeats: int, device: torch.device) -> None:
    """The channel mix (:meth:`SpectralConv.mix`, one batched real product with block weights) / the same
    product as a complex einsum, forward + backward on the reference sizes' compact spectra."""
    print("channel mix forward + backward: block-real bmm / complex einsum (lower is better)")
    cases = [("1-D      B=20 w=64 kept 16", 20, 64, (16,)),
             ("1-D+time B=20 w=32 kept 24x12", 20, 32, (12, 12)),
             ("cavity   B=10 w=20 kept 16x16x8", 10, 20, (8, 8, 8))]
    for label, batch, width, modes in cases:
        conv = SpectralConv(width, width, modes).to(device)
        kept = conv.weight.shape[2:-1]
        x = torch.randn(batch, width, *kept, dtype=torch.cfloat, device=device, requires_grad=True)

        def einsum_mix() -> None:
            out = torch.einsum("bi...,io...->bo...", x, conv.complex_weight())
            out.abs().sum().backward()

        def block_mix() -> None:
            conv.mix(x).abs().sum().backward()

        t = timed({"einsum": einsum_mix, "block": block_mix}, repeats, device)
        print(f"  {label}: einsum {statistics.median(t['einsum']) * 1e3:.2f} ms; "
              f"block {_fmt(paired_ratio(t, 'block', 'einsum'))}")


def boon_training_ratios(repeats: int, device: torch.device) -> None:
    """BOON training step / plain FNO training step (forward, relative L2, backward, Adam) at the reference
    sizes, Dirichlet: what training with the correction costs (no target; the correction's solve matrix
    and its gradient are rebuilt every step, as the weights change)."""
    print("BOON training step / plain FNO training step (Dirichlet; no target)")
    cases = [("1-D      B=20 N=512 w=64 m=16", lambda: fno_1d(width=64, modes=16), (20, 512), (20, 2)),
             ("1-D+time B=20 500x25 (+9 padded) w=32 m=12",
              lambda: fno_1d_time(nt=25, width=32, modes=12, time_padding=9), (20, 500), (20, 25, 2))]
    for label, make, u_shape, bc_shape in cases:
        fno, base = make().to(device), make().to(device)
        boon = BOONFNO(fno, "dirichlet")
        u = torch.randn(*u_shape, device=device)
        bc = torch.randn(*bc_shape, device=device)
        target = torch.randn(*u_shape, *((25,) if len(bc_shape) == 3 else ()), device=device)
        opt_boon = torch.optim.Adam(boon.parameters(), lr=1e-3)
        opt_base = torch.optim.Adam(base.parameters(), lr=1e-3)
        fns: dict[str, Callable[[], object]] = {
            "fno": lambda: _train_step(base, opt_base, u, target, base),
            "boon": lambda: _train_step(boon, opt_boon, u, target, lambda x: boon(x, bc))}
        t = timed(fns, repeats, device)
        print(f"  {label}: plain {statistics.median(t['fno']) * 1e3:.1f} ms; boon {_fmt(paired_ratio(t, 'boon', 'fno'))}")


#: The neuraloperator release whose FNO set-ups this script was checked against (lifting, modes, projection).
NEURALOP_VERSION = "2.0.0"


def real_parameters(model: torch.nn.Module) -> int:
    """Number of real parameters, a complex weight counting as two (neuraloperator keeps its spectral weights
    complex, ours real)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def training_step_ratios(repeats: int, device: torch.device) -> None:
    print("our FNO training step / neuraloperator FNO training step (target <= 1.0)")
    try:
        import neuralop
        from neuralop.models import FNO as NeuralopFNO
    except ImportError as exc:
        print(f"  neuraloperator cannot be imported here ({exc}): comparison skipped (pip install --target "
              f"/tmp/neuralop --no-deps neuraloperator=={NEURALOP_VERSION} tensorly tensorly-torch opt_einsum, "
              "then PYTHONPATH=/tmp/neuralop)")
        return
    print(f"  neuraloperator {neuralop.__version__}" + ("" if neuralop.__version__ == NEURALOP_VERSION else
          f" (the set-ups were checked against {NEURALOP_VERSION}: another release may build them otherwise)"))
    cases = [("1-D      B=20 N=512 w=64 m=16", fno_1d(width=64, modes=16), (512,)),
             ("1-D+time B=20 500x25 w=32 m=12", fno_1d_time(nt=25, width=32, modes=12), (500, 25))]
    for label, ours, grid in cases:
        ours = ours.to(device)
        modes = ours.modes
        # neuraloperator's n_modes counts both signs on full axes; on the last (rfft) axis it keeps
        # n // 2 + 1, so 2m - 1 keeps exactly our m there.
        n_modes = tuple(2 * m for m in modes[:-1]) + (2 * modes[-1] - 1,)
        grid_ndim = len(grid)
        configs = {
            "matched": dict(use_channel_mlp=False, lifting_channel_ratio=0,  # 0: one linear lifting, as ours
                            projection_channel_ratio=128 / ours.width),
            "defaults": {},
        }
        x_ours = torch.randn(20, grid[0], device=device)
        target = torch.randn(20, *grid, device=device)
        x_theirs = (x_ours[:, None, :, None].expand(20, 1, grid[0], grid[1]) if grid_ndim == 2
                    else x_ours[:, None, :]).contiguous()
        opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-3)
        fns: dict[str, Callable[[], object]] = {
            "ours": lambda: _train_step(ours, opt_ours, x_ours, target, ours)}
        for name, extra in configs.items():
            theirs = NeuralopFNO(n_modes=n_modes, in_channels=1, out_channels=1, hidden_channels=ours.width,
                                 n_layers=4, **extra).to(device)
            if name == "matched" and real_parameters(theirs) != real_parameters(ours):
                raise SystemExit(f"{label}: neuraloperator's matched FNO has {real_parameters(theirs)} real "
                                 f"parameters, ours {real_parameters(ours)}: not the same network, no ratio")
            opt = torch.optim.Adam(theirs.parameters(), lr=1e-3)
            fns[name] = (lambda m=theirs, o=opt: _train_step(m, o, x_theirs, target, m))
        t = timed(fns, repeats, device)
        params = real_parameters(ours)
        print(f"  {label}: ours {statistics.median(t['ours']) * 1e3:.1f} ms ({params} real params, as matched); "
              f"vs matched {_fmt(paired_ratio(t, 'ours', 'matched'))}; vs defaults {_fmt(paired_ratio(t, 'ours', 'defaults'))}")


#: The sections in the order they run, with the divisor of ``--repeats`` each uses (its rounds cost more).
SECTIONS: dict[str, tuple[Callable[[int, torch.device], None], int]] = {
    "mix": (mix_ratios, 1), "forward": (boon_forward_ratios, 1), "training": (boon_training_ratios, 4),
    "neuralop": (training_step_ratios, 1)}

#: Environment for stable CPU timings (see the module docstring); read by libgomp at start-up.
STABLE_ENV = {"OMP_WAIT_POLICY": "ACTIVE"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60,
                        help="timed rounds per section, each timing every model once (at least 2; the training "
                             "sections run a quarter as many, at least 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--as-is", action="store_true",
                        help="keep this process's OpenMP/malloc settings (default: re-run with "
                             "OMP_WAIT_POLICY=ACTIVE and large blocks kept on the heap)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
                        help="run only these sections (default: all, in this order)")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error(f"--repeats must be at least 2 (a median and an interquartile range), got {args.repeats}")
    if not args.as_is and any(os.environ.get(k) != v for k, v in STABLE_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STABLE_ENV})
    on_heap = keep_large_blocks_on_heap() if not args.as_is else False
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    settings = ("as is" if args.as_is else ", ".join(f"{k}={v}" for k, v in STABLE_ENV.items())
                + (", large blocks on the heap" if on_heap else ", large blocks NOT kept on the heap (not glibc)"))
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"repeats {args.repeats}; timing settings: {settings}")
    for name, (section, share) in SECTIONS.items():
        if name in args.only:
            section(args.repeats if share == 1 else max(args.repeats // share, 5), device)


if __name__ == "__main__":
    main()
