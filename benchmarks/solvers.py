"""Solver throughput: samples/second per case at the quick grid, and the cavity's time per step.

Usage: ``python benchmarks/solvers.py [--params params.yaml] [--samples 32]``. A "sample" is what the
dataset generator does for one function (one parameter draw): the reference solve(s) plus the mass
balance check, without HDF5 I/O. Numbers are wall-clock on this machine; compare only within one run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from physml import pdes
from physml.config import load_params
from physml.data.generate import _operator_sample, _probconserv_check, _probconserv_sample, draw_parameters


def samples_per_second(case: str, params_path: str, n: int) -> float:
    """Generated functions per second for ``case`` at the quick profile's sampling/grid."""
    params = load_params(params_path).with_profile("quick")
    problem = pdes.get(case)
    cfg = params.case(case)
    spec = {name: cfg.parameters[name].split_spec("train") for name in problem.parameter_names}
    rng = np.random.default_rng(0)
    theta = draw_parameters(problem, spec, n, rng)
    if problem.family == "operator":
        grid = params.grid(case)
        x = np.linspace(*problem.x_domain, grid.nx)
        times = grid.resolve_times(problem.t_domain)
    start = time.perf_counter()
    for row in theta:
        p = dict(zip(problem.parameter_names, (float(v) for v in row), strict=True))
        if problem.family == "probconserv":
            _probconserv_check(problem, p, _probconserv_sample(problem, p, cfg.sampling, rng))
        else:
            _operator_sample(problem, p, x, times)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--samples", type=int, default=32)
    args = ap.parse_args()
    params = load_params(args.params).with_profile("quick")
    print(f"{'case':<20}{'family':<13}{'grid / sampling':<28}{'samples/s':>12}")
    for case in params.cases:
        problem = pdes.get(case)
        cfg = params.case(case)
        if problem.family == "operator":
            g = params.grid(case)
            desc = f"nx={g.nx} nt={len(g.resolve_times(problem.t_domain))}" + (" (2-D)" if problem.spatial_dims == 2 else "")
        else:
            s = cfg.sampling
            desc = f"{s.n_context} ctx + {s.n_target_t}x{s.n_target_x} tgt"
        n = max(2, args.samples // 4) if problem.spatial_dims == 2 else args.samples
        print(f"{case:<20}{problem.family:<13}{desc:<28}{samples_per_second(case, args.params, n):>12.1f}")
    from physml.pdes.cavity import time_per_step

    print("\ncavity solver (vorticity-streamfunction, SSP-RK3, 3 DST Poisson solves per step)")
    base = None
    for n in (64, 128):
        per_step = time_per_step(n)
        base = base or per_step
        print(f"  {n}x{n}: {per_step * 1e3:8.2f} ms/step  ({per_step / base:.1f}x the 64x64 step)")


if __name__ == "__main__":
    main()
