"""The whole pipeline as one Prefect flow: generate → train → constrain → evaluate (+ MLflow) → report,
with the BOON seed study (train → seed-study → report) beside constrain and evaluate.

Thin by design: every task calls one function of :mod:`physml.stages` (the same functions ``dvc repro``
reaches through the CLI) and passes paths and run ids, never tensors. Tasks are cached on their inputs:
the cache key hashes the task's arguments, the relevant params.yaml sections and a digest of the
upstream files it reads, so a re-run skips finished work, a changed input recomputes exactly what
depends on it, and a deleted output is rebuilt (``refresh_cache``). Transient failures (a locked SQLite
store, a flaky worker) are retried. ``dask=True`` fans the cases out on a DaskTaskRunner.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.futures import wait

from physml import stages
from physml.config import ParamsModel, load_params

RETRIES = 2
RETRY_DELAY_S = 5


def _digest_tree(*paths: Path) -> str:
    """Cheap digest of files below ``paths``: relative name, size and modification time."""
    h = hashlib.sha256()
    for base in paths:
        files = sorted(p for p in Path(base).rglob("*") if p.is_file()) if Path(base).exists() else []
        for p in files:
            st = p.stat()
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _sections(params: ParamsModel, case: str, model: str | None) -> str:
    """The params.yaml content a (case, model) stage depends on, as canonical json."""
    data: dict[str, Any] = {"profile": params.profile, "seed": params.seed, "case": params.case(case).model_dump()}
    if model is not None:
        data["model"] = params.model_settings(model, case).model_dump()
        data["softc"] = params.models.softc.model_dump()
        data["matrix"] = params.matrix.model_dump()
    return json.dumps(data, sort_keys=True, default=str)


def _cache_key(context: Any, arguments: dict[str, Any]) -> str:
    """Task name + arguments (incl. the upstream digest the flow passes in)."""
    payload = json.dumps({"task": context.task.name, **arguments}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _load(params_path: str, profile: str | None) -> ParamsModel:
    params = load_params(params_path)
    return params.with_profile(profile) if profile else params


@task(name="generate", cache_key_fn=_cache_key, persist_result=True, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def generate_task(case: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> str:
    return str(stages.generate(case, _load(params_path, profile), Path(root), progress=False))


@task(name="train", cache_key_fn=_cache_key, persist_result=True, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def train_task(case: str, model: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> str:
    return str(stages.train(case, model, _load(params_path, profile), Path(root), progress=False))


@task(name="constrain", cache_key_fn=_cache_key, persist_result=True, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def constrain_task(case: str, model: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> str:
    return str(stages.constrain(case, model, _load(params_path, profile), Path(root)))


@task(name="evaluate", cache_key_fn=_cache_key, persist_result=True, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def evaluate_task(case: str, model: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> dict[str, str]:
    """Metrics files and figures, then the MLflow runs; returns constraint → MLflow run id."""
    params = _load(params_path, profile)
    stages.evaluate(case, model, params, Path(root))
    return stages.track(case, model, params, Path(root))


@task(name="seed-study", cache_key_fn=_cache_key, persist_result=True, retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def seed_study_task(case: str, model: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> str:
    """BOON: the same training over every seed of matrix.boon.seeds, then its MLflow run; returns the run id."""
    params = _load(params_path, profile)
    stages.seed_study(case, model, params, Path(root), progress=False)
    return stages.track_seed_study(case, model, params, Path(root))


@task(name="report", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def report_task(params_path: str, profile: str | None, root: str) -> str:
    return str(stages.report(_load(params_path, profile), Path(root)))


@flow(name="pipeline", log_prints=True)
def pipeline(params_path: str = "params.yaml", profile: str | None = None, root: str = ".") -> dict[str, Any]:
    """Run the params.yaml matrix end to end; returns the report path and the MLflow run ids (per case/model:
    constraint → run id, and the seed studies' runs)."""
    params = _load(params_path, profile)
    lay = stages.Layout(Path(root), params.profile)
    pairs = list(dict.fromkeys((c, m) for c, m, _ in params.experiments()))
    cases = list(dict.fromkeys(c for c, _ in pairs))

    def submit(t: Any, output: Path, *args: Any, config: str, upstream: Path | list[Path], wait_for: list | None = None) -> Any:
        ups = upstream if isinstance(upstream, list) else [upstream]
        t = t.with_options(refresh_cache=not output.exists())
        return t.submit(*args, params_path, profile, root, config, _digest_tree(*ups), wait_for=wait_for or [])

    gen = {c: submit(generate_task, lay.data(c) / "dataset.json", c, config=_sections(params, c, None), upstream=[]) for c in cases}
    wait(list(gen.values()))
    trained = {
        (c, m): submit(train_task, lay.models(c, m) / "train_summary.json", c, m, config=_sections(params, c, m), upstream=lay.data(c))
        for c, m in pairs
    }
    constrained, studies = {}, {}
    for (c, m), fut in trained.items():
        fut.wait()
        constrained[(c, m)] = submit(constrain_task, lay.predictions(c, m), c, m, config=_sections(params, c, m),
                                     upstream=[lay.data(c), lay.models(c, m)])
        if c in params.matrix.boon.cases:
            studies[(c, m)] = submit(seed_study_task, lay.seed_study_file(c, m), c, m, config=_sections(params, c, m),
                                     upstream=[lay.data(c), lay.models(c, m)])
    runs = {}
    for (c, m), fut in constrained.items():
        fut.wait()
        runs[(c, m)] = submit(evaluate_task, lay.metrics(c, m), c, m, config=_sections(params, c, m),
                              upstream=[lay.predictions(c, m)])
    run_ids = {f"{c}/{m}": fut.result() for (c, m), fut in runs.items()}
    study_ids = {f"{c}/{m}": fut.result() for (c, m), fut in studies.items()}
    report = report_task(params_path, profile, root)
    print(f"report: {report}")
    return {"report": report, "runs": run_ids, "seed_study_runs": study_ids}


def run_pipeline(params_path: str = "params.yaml", profile: str | None = None, root: str = ".",
                 dask: bool = False, dask_address: str | None = None, n_workers: int = 2) -> dict[str, Any]:
    """Run :func:`pipeline`, optionally fanning tasks out on a DaskTaskRunner (local cluster or an address)."""
    runner_flow = pipeline
    if dask or dask_address:
        from prefect_dask import DaskTaskRunner

        runner = (DaskTaskRunner(address=dask_address) if dask_address else
                  DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True}))
        runner_flow = pipeline.with_options(task_runner=runner)
    return runner_flow(params_path=params_path, profile=profile, root=root)


def main() -> None:
    p = argparse.ArgumentParser(description="Prefect flow: the whole physml pipeline for the params.yaml matrix")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--profile", default=None, help="quick or paper (default: the file's `profile`)")
    p.add_argument("--root", default=".", help="project root for data/, models/, metrics/, reports/")
    p.add_argument("--dask", action="store_true", help="fan out on a local Dask cluster")
    p.add_argument("--dask-address", default=None, help="existing Dask scheduler address")
    a = p.parse_args()
    run_pipeline(a.params, a.profile, a.root, dask=a.dask, dask_address=a.dask_address)


if __name__ == "__main__":
    main()
