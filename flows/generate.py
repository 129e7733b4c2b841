"""The ``generate`` flow: one Prefect task per case, each calling :func:`physml.data.generate_case`.

Cases are independent (own seed stream, own folder), so they fan out: with ``dask=True`` the tasks run
on a :class:`prefect_dask.DaskTaskRunner` (a local cluster by default, or ``dask_address`` for an
existing scheduler); otherwise on Prefect's default thread pool. A case whose data are up to date
(same fingerprint of config, seed, profile and sources) is not recomputed — ``generate_case`` checks it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.pipeline import LOCAL_CLUSTER
from physml.config import PROFILES, load_params
from physml.data import generate_case
from physml.stages import check_output_grids


@task(name="generate-case", cache_policy=NO_CACHE, retries=0)
def generate_case_task(case: str, params_path: str, profile: str | None, out: str, force: bool = False) -> str:
    """Generate every split of ``case``; returns the case folder."""
    params = load_params(params_path)
    if profile:
        params = params.with_profile(profile)
    check_output_grids(params, [case])
    return str(generate_case(case, params, Path(out), progress=False, force=force))


@flow(name="generate")
def generate(
    cases: list[str] | None = None,
    params_path: str = "params.yaml",
    profile: str | None = None,
    out: str = "data",
    force: bool = False,
) -> dict[str, str]:
    """Generate the datasets of ``cases`` (default: every case in params.yaml), one task per case."""
    params = load_params(params_path)
    names = list(cases) if cases else list(params.cases)
    for name in names:
        params.case(name)
    futures = {name: generate_case_task.submit(name, params_path, profile, out, force) for name in names}
    return {name: fut.result() for name, fut in futures.items()}


def run_generate(
    cases: list[str] | None = None,
    params_path: str = "params.yaml",
    profile: str | None = None,
    out: str = "data",
    force: bool = False,
    dask: bool = False,
    dask_address: str | None = None,
    n_workers: int = 2,
) -> dict[str, str]:
    """Run :func:`generate`, optionally on a DaskTaskRunner (local cluster or ``dask_address``)."""
    runner_flow = generate
    if dask or dask_address:
        from prefect_dask import DaskTaskRunner

        runner = (
            DaskTaskRunner(address=dask_address)
            if dask_address
            else DaskTaskRunner(cluster_kwargs={**LOCAL_CLUSTER, "n_workers": n_workers})
        )
        runner_flow = generate.with_options(task_runner=runner)
    return runner_flow(cases=cases, params_path=params_path, profile=profile, out=out, force=force)


def main() -> None:
    p = argparse.ArgumentParser(description="Prefect flow: generate datasets, one task per case")
    p.add_argument("--case", action="append", help="case (repeatable; default: all)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None, choices=PROFILES, help="default: the file's `profile`")
    p.add_argument("--out", default="data")
    p.add_argument("--force", action="store_true")
    p.add_argument("--dask", action="store_true", help="fan out on a local Dask cluster")
    p.add_argument("--dask-address", default=None, help="existing Dask scheduler address")
    a = p.parse_args()
    try:  # a bad params file or case fails here, in one line, before a Prefect server starts
        params = load_params(a.params)
        params = params.with_profile(a.profile) if a.profile else params
        for case in a.case or []:
            params.case(case)
        check_output_grids(params, a.case or list(params.cases))
    except (ValueError, OSError) as exc:
        p.exit(2, f"{p.prog}: error: {exc}\n")
    run_generate(a.case, a.params, a.profile, a.out, a.force, a.dask, a.dask_address)


if __name__ == "__main__":
    main()
