"""Time of the ProbConserv update per time slice, against a plain copy of the same arrays (same run).

For each n (target points per slice) it times ``physml.constraints.condition`` with one conservation
row per slice, for a diagonal and a full covariance, and a plain copy of the inputs (mean, cov, G, b) as
the baseline; for n ≤ 3000 also the reference code's dense formulation in float64 (diag(v) formed as an
n × n matrix, Σ (I − Gᵀ S⁻¹ G Σ) by a dense n³ product), which is what ProbConserv's public code runs.
The update and the copy are timed on a batch of slices and divided by its size; the reference on one slice
per call (its formulation is per slice), so at small n its ratio also holds its per-call overhead. Times are
the best of ``--repeats`` (after one warm-up call), each callable timed on its own, not interleaved. numpy's
BLAS threads are those of ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS`` at start-up (1 unless set), torch's
``--threads``: the header prints both.

    .venv/bin/python benchmarks/constraint_update.py [--sizes 100 300 ...] [--device cuda] [--json out.json]
"""

from __future__ import annotations

import os

# Single-threaded BLAS/OpenMP by default (set before numpy/torch load them): on a shared 2-core box,
# multi-threaded timings of small kernels were dominated by oversubscription (up to 100× noise).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from physml.constraints import condition, trapezoid_weights  # noqa: E402


def _best_of(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _reference_dense(mean: np.ndarray, var: np.ndarray, G: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's update (amazon-science/probconserv ``PhysNP._apply_constraint``), one slice, float64."""
    n = mean.size
    cov = np.diag(var)
    g_cov = G @ cov
    small_a = g_cov @ G.T
    rinv1 = np.linalg.solve(small_a, g_cov)
    new_cov = cov @ (np.eye(n) - G.T @ rinv1)
    rinv2 = np.linalg.solve(small_a, G @ mean - b)
    return mean - cov @ (G.T @ rinv2), new_cov


def _case(n: int, batch: int, full: bool, rng: np.random.Generator):
    x = np.sort(rng.uniform(0, 1, (batch, n)), axis=-1)
    G = trapezoid_weights(x, (0.0, 1.0))[:, None, :]
    mean = rng.normal(size=(batch, n))
    var = rng.uniform(0.1, 1.0, (batch, n))
    b = rng.normal(size=(batch, 1))
    if full:
        cov = np.zeros((batch, n, n))
        idx = np.arange(n)
        cov[:, idx, idx] = var
        if n > 1:  # a banded (tridiagonal) correlation keeps it PD and cheap to build
            off = 0.25 * np.sqrt(var[:, 1:] * var[:, :-1])
            cov[:, idx[1:], idx[:-1]] = off
            cov[:, idx[:-1], idx[1:]] = off
        return mean, cov, G, b
    return mean, var, G, b


def run(sizes: list[int], device: str, repeats: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    rows: list[dict[str, object]] = []
    for n in sizes:
        for kind in ("diag", "full"):
            full = kind == "full"
            batch = max(1, (2_000_000 // (n * n)) if full else (1_000_000 // n))
            batch = min(batch, 1000)
            arrays = _case(n, batch, full, rng)
            if dev.type != "cpu":
                arrays = tuple(torch.from_numpy(a).to(dev) for a in arrays)
            mean, cov, G, b = arrays

            def update(mean=mean, cov=cov, G=G, b=b) -> object:
                return condition(mean, cov, G, b)

            def copy(arrays=arrays) -> object:
                return [a.clone() if isinstance(a, torch.Tensor) else a.copy() for a in arrays]

            t_upd = _best_of(update, repeats, sync) / batch
            t_copy = _best_of(copy, repeats, sync) / batch
            row: dict[str, object] = {
                "n": n,
                "cov": kind,
                "slices": batch,
                "update_s_per_slice": t_upd,
                "copy_s_per_slice": t_copy,
                "ratio_update_over_copy": t_upd / t_copy,
            }
            if not full and n <= 3000 and dev.type == "cpu":
                m0, v0, G0, b0 = (a[0] for a in _case(n, 1, False, rng))
                t_ref = _best_of(lambda: _reference_dense(m0, v0, G0, b0), repeats if n <= 1000 else 1, sync)
                m_ref, c_ref = _reference_dense(m0, v0, G0, b0)
                m_new, v_new = condition(m0, v0, G0, b0)
                row["reference_dense_s_per_slice"] = t_ref
                row["reference_over_update"] = t_ref / (t_upd)
                row["max_abs_diff_vs_reference"] = float(
                    max(np.abs(m_new - m_ref).max(), np.abs(v_new - np.diag(c_ref)).max())
                )
            rows.append(row)
            del arrays, mean, cov, G, b
    return rows


def _fmt(s: float) -> str:
    return f"{s * 1e6:10.2f} µs" if s < 1e-3 else f"{s * 1e3:10.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000, 10000])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    ap.add_argument("--threads", type=int, default=int(os.environ["OMP_NUM_THREADS"]), help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args.sizes, args.device, args.repeats)
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    blas = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    print(f"device: {args.device} ({dev}); torch threads: {torch.get_num_threads()}; numpy BLAS threads: {blas}; "
          "float64; k = 1 row per slice; reference: one slice per call, update and copy: per slice of a batch")
    print(f"{'n':>6} {'cov':>5} {'slices':>7} {'update/slice':>14} {'copy/slice':>14} {'upd/copy':>9} {'reference dense/slice':>22} {'ref/upd':>9}")
    for r in rows:
        ref = r.get("reference_dense_s_per_slice")
        ref_s = _fmt(ref) if ref is not None else "—"
        ratio = f"{r['reference_over_update']:9.0f}" if ref is not None else "        —"
        print(
            f"{r['n']:>6} {r['cov']:>5} {r['slices']:>7} {_fmt(r['update_s_per_slice']):>14} "
            f"{_fmt(r['copy_s_per_slice']):>14} {r['ratio_update_over_copy']:9.1f} {ref_s:>22} {ratio}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": args.device, "name": dev, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
