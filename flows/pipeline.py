"""The whole pipeline as one Prefect flow: generate → train → constrain → evaluate → track (MLflow) → report,
with the seed studies of both methods (train → seed-study → track-seed-study → report) beside constrain and
evaluate.

Thin by design: every task calls one function of :mod:`physml.stages` (the same functions ``dvc repro``
reaches through the CLI) and passes paths and run ids, never tensors. Tasks are cached on their inputs:
the cache key hashes the task's arguments, the params.yaml values its dvc.yaml stage declares (resolved
for the case, model and profile), a digest of the upstream files it reads and a content digest of the
code files dvc.yaml lists for its stage (one list of code deps for both runners), so a re-run skips
finished work and a changed input or code file recomputes exactly what depends on it.

A cached result is a path; the outputs themselves are files that a later run with other settings may
overwrite. So each finished task leaves a stamp under ``<root>/.physml-flow/`` (its key, and the size and
modification time of every output file), and a task is served from the cache only when its stamp holds
this run's key and its outputs are as the stamp recorded them (``refresh_cache`` otherwise): settings
changed and changed back, an output deleted or rewritten, or another checkout's cache all recompute.
The results are kept beside the stamps (:func:`result_folder`), not in ``PREFECT_HOME``, so a new process or
pod that mounts the same root (the ``paper`` deployment's volume) is served the same cache.
The tracking tasks are not cached: the runs live in the tracking store, which every flow run asks.
Transient failures (a locked SQLite store, an unreachable tracking server: :func:`is_transient`) are
retried; any other failure is final at once: the tasks that read the failed task's outputs do not run, and
the flow fails at the end (:class:`PipelineFailed`) without writing the report. ``dask=True`` fans the cases
out on a DaskTaskRunner.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, task
from prefect.futures import wait

from physml import stages
from physml.atomic import atomic_path
from physml.cli import complete_commands
from physml.config import PROFILES, ParamsModel, load_params

RETRY_DELAYS_S = [10, 60, 300]
"""Waits before each further attempt of a transiently failed task: long enough in all for a restarting
tracking server (a pod rescheduled, its image pulled) to come back."""
RETRIES = len(RETRY_DELAYS_S)
REQUIRE_CUDA = "PHYSML_REQUIRE_CUDA"
"""Set (to anything but "" or "0") where a run must train on a GPU: the ``paper`` deployment sets it, so a pod
whose CUDA does not work (a driver older than the image's CUDA build, a device-plugin fault) stops at once
instead of training the paper's sizes on its CPUs and caching those networks for every later weekly run."""
LOCAL_CLUSTER = {"threads_per_worker": 1, "processes": True}
"""``distributed.LocalCluster`` settings of ``--dask`` (with ``n_workers``): processes, one thread each, since the
solvers are numpy/scipy loops that hold the GIL; each worker's memory bounded by Dask's default, the machine's
memory over the workers."""
PROJECT = Path(__file__).resolve().parents[1]  # holds dvc.yaml
CODE_ROOT = Path(stages.__file__).resolve().parents[1]  # holds the imported physml package: the code that runs


def _files(*paths: Path) -> list[Path]:
    """The files at or below ``paths`` (a missing path has none), sorted per path."""
    out: list[Path] = []
    for base in map(Path, paths):
        if base.is_file():
            out.append(base)
        elif base.is_dir():
            out += sorted(p for p in base.rglob("*") if p.is_file())
    return out


def _manifest(paths: list[Path]) -> dict[str, list[int] | None]:
    """Every file at or below ``paths`` with its size and modification time; a path that is missing → None."""
    found: dict[str, list[int] | None] = {str(p): None for p in paths if not p.exists()}
    for p in _files(*paths):
        st = p.stat()
        found[str(p)] = [st.st_size, st.st_mtime_ns]
    return found


def _digest_tree(*paths: Path) -> str:
    """Cheap digest of the files below ``paths`` (:func:`_manifest`: name, size and modification time)."""
    return hashlib.sha256(json.dumps(_manifest(list(paths)), sort_keys=True).encode()).hexdigest()


def _stamp_is_current(stamp: Path, key: str, outputs: list[Path]) -> bool:
    """Whether ``stamp`` records ``key`` and the outputs as they are now (see the module docstring)."""
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("key") == key and recorded.get("outputs") == _manifest(outputs)


def _write_stamp(stamp: Path, key: str, outputs: list[Path]) -> None:
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps({"key": key, "outputs": _manifest(outputs)}, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _dvc_stages(path: Path, mtime_ns: int) -> dict[str, Any]:
    """The ``stages`` of a dvc.yaml, parsed once per version of the file (``mtime_ns`` is the cache key)."""
    return yaml.safe_load(path.read_text())["stages"]


def code_files(stage: str, case: str, model: str | None = None, project: Path = PROJECT,
               code_root: Path = CODE_ROOT) -> list[Path]:
    """The code deps of one stage of ``project``'s ``dvc.yaml`` for ``case`` (× ``model``): its ``physml/``
    entries, with the stage's ``${key}`` / ``${item.case}`` / ``${item.model}`` filled in (files or folders),
    under ``code_root``, the folder of the physml package that is imported (a checkout or site-packages)."""
    path = project / "dvc.yaml"
    stages_spec = _dvc_stages(path, path.stat().st_mtime_ns)
    if stage not in stages_spec:
        raise ValueError(f"stage must be one of the stages of dvc.yaml {sorted(stages_spec)}, got {stage!r}")
    spec = stages_spec[stage]
    deps = spec.get("do", spec).get("deps", [])
    fill = {"${key}": case, "${item.case}": case, "${item.model}": model or ""}
    out = []
    for dep in deps:
        for name, value in fill.items():
            dep = dep.replace(name, value)
        if dep.startswith("physml/"):
            out.append(code_root / dep)
    return out


def digest_code(paths: list[Path], code_root: Path = CODE_ROOT) -> str:
    """Content digest of the ``.py`` files at or below ``paths`` (relative name and bytes; modification
    times do not count, so a fresh checkout of the same code gives the same digest). A missing path →
    FileNotFoundError, as ``dvc repro`` fails on a missing dependency."""
    h = hashlib.sha256()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"code dependency {path} (from dvc.yaml) does not exist")
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for f in files:
            h.update(f"{f.relative_to(code_root)}\n".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _sections(params: ParamsModel, case: str, model: str | None, stage: str) -> str:
    """The params.yaml values a (case, model) stage reads, as canonical json: those its dvc.yaml stage
    declares, resolved for the case, model and profile (``stage``: generate, train, constrain, evaluate or
    seed-study). Its family's constraints, not the other family's; SoftC's penalty only for a ProbConserv
    training; post hoc BOON's rcond only for BOON's constrain and seed study; the seed count only for the seed study."""
    data: dict[str, Any] = {"profile": params.profile, "seed": params.seed}
    if model is None:
        data["case"] = params.case(case).model_dump()
        return json.dumps(data, sort_keys=True, default=str)
    group = stages._group(params, case)
    data["constraints"] = list(group.constraints)
    if stage != "evaluate":
        data["model"] = params.model_settings(model, case).model_dump()
    if stage == "train" and case in params.matrix.probconserv.cases:
        data["softc"] = params.models.softc.model_dump()
    if stage in ("constrain", "seed-study") and case in params.matrix.boon.cases:
        data["boon_posthoc"] = params.models.boon_posthoc.model_dump()
    if stage == "seed-study":
        data["seeds"] = params.study_seeds(stages.group_name(case))
    return json.dumps(data, sort_keys=True, default=str)


def _key(task_name: str, arguments: dict[str, Any]) -> str:
    """Task name + arguments (incl. the upstream digest the flow passes in)."""
    payload = json.dumps({"task": task_name, **arguments}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _cache_key(context: Any, arguments: dict[str, Any]) -> str:
    """Prefect's cache key of a task run: :func:`_key` of its name and arguments."""
    return _key(context.task.name, arguments)


TRANSIENT_MESSAGES = ("database is locked", "connection refused", "connection reset", "max retries exceeded",
                      "temporarily unavailable", "timed out")
"""Lower-case fragments of the messages of failures that another attempt can cure (a busy SQLite store, an
unreachable or restarting tracking server)."""


def is_transient(exc: BaseException | None) -> bool:
    """Whether a task's failure is worth another attempt: a ConnectionError or TimeoutError, or a message of
    :data:`TRANSIENT_MESSAGES`, anywhere in the exception's cause/context chain. A bad setting or input
    (ValueError), a bug or a diverged training fails the same way again, so it is not retried: a retry of a
    paper-sized training would cost hours for the same error."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if any(m in str(exc).lower() for m in TRANSIENT_MESSAGES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: retry only a :func:`is_transient` failure."""
    exc = state.result(raise_on_failure=False)
    return is_transient(exc if isinstance(exc, BaseException) else None)


RETRY = {"retries": RETRIES, "retry_delay_seconds": RETRY_DELAYS_S, "retry_condition_fn": _retry_if_transient}
"""Every task's retry settings: a transient failure is tried again, up to RETRIES times (:data:`RETRY_DELAYS_S`)."""


def _load(params_path: str, profile: str | None) -> ParamsModel:
    params = load_params(params_path)
    return params.with_profile(profile) if profile else params


@task(name="generate", cache_key_fn=_cache_key, persist_result=True, **RETRY)
def generate_task(case: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> str:
    return str(stages.generate(case, _load(params_path, profile), Path(root), progress=False))


@task(name="train", cache_key_fn=_cache_key, persist_result=True, **RETRY)
def train_task(case: str, model: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> str:
    return str(stages.train(case, model, _load(params_path, profile), Path(root), progress=False))


@task(name="constrain", cache_key_fn=_cache_key, persist_result=True, **RETRY)
def constrain_task(case: str, model: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> str:
    return str(stages.constrain(case, model, _load(params_path, profile), Path(root)))


@task(name="evaluate", cache_key_fn=_cache_key, persist_result=True, **RETRY)
def evaluate_task(case: str, model: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> str:
    """Metrics files and figures of every constraint; returns the metrics folder."""
    params = _load(params_path, profile)
    stages.evaluate(case, model, params, Path(root))
    return str(stages.Layout(Path(root), params.profile).metrics(case, model))


@task(name="track", **RETRY)
def track_task(case: str, model: str, params_path: str, profile: str | None, root: str) -> dict[str, str]:
    """The MLflow runs of the evaluated metrics (:func:`physml.stages.track`); returns constraint → run id.
    Not cached: the runs live in the tracking store, not in the files the cache vouches for, so every flow run
    asks the store (``only_missing``: a run that holds these results is found, not logged again), and a new or
    lost store gets its runs and registered versions back."""
    return stages.track(case, model, _load(params_path, profile), Path(root), only_missing=True)


@task(name="seed-study", cache_key_fn=_cache_key, persist_result=True, **RETRY)
def seed_study_task(case: str, model: str, params_path: str, profile: str | None, root: str, config: str, upstream: str) -> str:
    """The same training over every seed of the case's matrix group; returns the study's file."""
    params = _load(params_path, profile)
    stages.seed_study(case, model, params, Path(root), progress=False)
    return str(stages.Layout(Path(root), params.profile).seed_study_file(case, model))


@task(name="track-seed-study", **RETRY)
def track_seed_study_task(case: str, model: str, params_path: str, profile: str | None, root: str) -> str | None:
    """The seed study's MLflow run (:func:`physml.stages.track_seed_study`, uncached as :func:`track_task`)."""
    return stages.track_seed_study(case, model, _load(params_path, profile), Path(root), only_missing=True)


@task(name="report", **RETRY)
def report_task(params_path: str, profile: str | None, root: str) -> dict[str, str | None]:
    """The report, then its MLflow run (kept when the flow ran in a pod that goes away); returns both."""
    params = _load(params_path, profile)
    path = stages.report(params, Path(root))
    return {"path": str(path), "run": stages.track_report(params, Path(root), only_missing=True)}


@flow(name="pipeline", log_prints=True)
def pipeline(params_path: str = "params.yaml", profile: str | None = None, root: str = ".") -> dict[str, Any]:
    """Run the params.yaml matrix end to end; returns the report path, the MLflow run that holds the report,
    and the MLflow run ids (per case/model: constraint → run id, and the seed studies' runs). One run per
    checkout at a time (:func:`checkout_lock`)."""
    params = _load(params_path, profile)
    check_device()
    with checkout_lock(Path(root)):
        return _run_matrix(params, params_path, profile, root)


def check_device() -> None:
    """With :data:`REQUIRE_CUDA` set, RuntimeError unless torch sees a CUDA device (what it reports, named)."""
    if os.environ.get(REQUIRE_CUDA, "") in ("", "0"):
        return
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"{REQUIRE_CUDA} is set but torch sees no CUDA device (torch {torch.__version__}, built for "
                           f"CUDA {torch.version.cuda}); check the node's driver and the GPU limit, or unset "
                           f"{REQUIRE_CUDA} to train on the CPU")


@contextlib.contextmanager
def checkout_lock(root: Path) -> Iterator[None]:
    """Hold ``<root>/.physml-flow/run.lock`` (an exclusive ``flock``) for a whole pipeline run: a second run in
    the same checkout would write the same data, networks and stamps, so it stops at once, naming the lock,
    instead. The lock goes with the process, so a killed run leaves none behind."""
    path = Path(root) / ".physml-flow" / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another pipeline run holds {path} in this checkout: wait for it to end, or "
                               "run in another --root") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def result_folder(root: Path) -> Path:
    """Where the cached tasks' results live: beside their stamps under ``root`` (absolute, so that a Dask
    worker in another folder finds them), not in ``PREFECT_HOME``, so the cache moves with the outputs it vouches
    for: a fresh process, home or pod that mounts the same ``root`` (the ``paper`` deployment's volume)
    recomputes nothing that has not changed."""
    return Path(root).resolve() / ".physml-flow" / "results"


class PipelineFailed(RuntimeError):
    """One or more tasks of a pipeline run failed; what depends on them was not run and no report was written."""


def _run_matrix(params: ParamsModel, params_path: str, profile: str | None, root: str) -> dict[str, Any]:
    """The body of :func:`pipeline`: every stage of the matrix as tasks, then the report.

    A task runs only when the tasks it reads from completed, as in ``dvc repro``: after a failed training its
    constrain, evaluate and seed study do not run (the cache would otherwise serve the metrics of the networks
    that were there before). Independent work goes on; at the end a failure raises :class:`PipelineFailed`,
    naming each failed task and its error, and the report is not written from a mix of new and old results."""
    from physml.experiments.boon import PER_TIME_FILE

    # absolute, so that tasks on a Dask worker in another folder read and write where the stamps look
    root, params_path = str(Path(root).resolve()), str(Path(params_path).resolve())
    lay = stages.Layout(Path(root), params.profile)
    pairs = list(dict.fromkeys((c, m) for c, m, _ in params.experiments()))
    cases = list(dict.fromkeys(c for c, _ in pairs))

    stamps: dict[Any, tuple[Path, str, list[Path]]] = {}  # cached future → its stamp, key and outputs
    names: dict[Any, str] = {}  # future → "step case[/model]", for the failure message
    failures: list[str] = []
    results = result_folder(Path(root))

    def submit(t: Any, outputs: list[Path], case: str, model: str | None, upstream: list[Path], stage: str) -> Any:
        """Submit cached task ``t`` for (case, model), served from the cache only if its stamp is current."""
        step = t.name  # generate, train, constrain, evaluate, seed-study
        config = _sections(params, case, model, step)
        digest = f"{_digest_tree(*upstream)}:{digest_code(code_files(stage, case, model))}"
        args = {"case": case} if model is None else {"case": case, "model": model}
        arguments = {**args, "params_path": params_path, "profile": params.profile, "root": root, "config": config,
                     "upstream": digest}  # the profile resolved: given or read from the file, one cache entry
        key = _key(step, arguments)
        stamp = Path(root) / ".physml-flow" / params.profile / step / f"{case}{'' if model is None else '--' + model}.json"
        fut = t.with_options(refresh_cache=not _stamp_is_current(stamp, key, outputs),
                             result_storage=results).submit(**arguments)
        stamps[fut] = (stamp, key, outputs)
        names[fut] = f"{step} {case}" + ("" if model is None else f"/{model}")
        return fut

    def submit_tracking(t: Any, case: str, model: str) -> Any:
        fut = t.submit(case=case, model=model, params_path=params_path, profile=profile, root=root)
        names[fut] = f"{t.name} {case}/{model}"
        return fut

    def finished(fut: Any) -> bool:
        """Wait for ``fut``; whether it completed. A cached task that did is stamped with its outputs as they
        are now; one that did not is recorded in ``failures``."""
        fut.wait()
        if fut.state.is_completed():
            if fut in stamps:
                _write_stamp(*stamps[fut])
            return True
        try:
            error = fut.state.result(raise_on_failure=False)
        except Exception:  # the error itself could not be read back (e.g. not stored): the state's message
            error = None
        failures.append(complete_commands(f"{names[fut]}: {type(error).__name__}: {error}"
                                          if isinstance(error, BaseException)
                                          else f"{names[fut]}: {fut.state.name} ({fut.state.message})",
                                          params_path, root))
        return False

    group = {c: stages.group_name(c) for c in cases}  # the dvc.yaml stages of a case end in its matrix group
    gen = {c: submit(generate_task, [lay.data(c)], c, None, upstream=[], stage="generate") for c in cases}
    wait(list(gen.values()))
    generated = {c for c, fut in gen.items() if finished(fut)}
    trained = {
        (c, m): submit(train_task, [lay.models(c, m)], c, m, upstream=[lay.data(c)], stage=f"train_{group[c]}")
        for c, m in pairs if c in generated
    }
    constrained, studies = {}, {}
    for (c, m), fut in trained.items():
        if not finished(fut):
            continue
        constrained[(c, m)] = submit(constrain_task, [lay.predictions(c, m)], c, m,
                                     upstream=[lay.data(c), lay.models(c, m)], stage=f"constrain_{group[c]}")
        studies[(c, m)] = submit(seed_study_task, [lay.seed_study_file(c, m), lay.seed_models(c, m)], c, m,
                                 upstream=[lay.data(c), lay.models(c, m)], stage=f"seed_study_{group[c]}")
    evaluated = {}
    for (c, m), fut in constrained.items():
        if not finished(fut):
            continue
        outputs = [lay.metrics(c, m) / f"{k}.json" for k in stages._group(params, c).constraints]
        outputs.append(lay.metrics(c, m) / stages.MADE_FROM)
        if group[c] == "boon":
            outputs.append(lay.metrics(c, m) / PER_TIME_FILE)
        evaluated[(c, m)] = submit(evaluate_task, [*outputs, lay.metrics(c, m) / "figures"], c, m,
                                   upstream=[lay.data(c), lay.predictions(c, m), lay.models(c, m)],
                                   stage=f"evaluate_{group[c]}")
    tracked = {pair: submit_tracking(track_task, *pair) for pair, fut in evaluated.items() if finished(fut)}
    tracked_studies = {pair: submit_tracking(track_seed_study_task, *pair)
                       for pair, fut in studies.items() if finished(fut)}
    run_ids = {f"{c}/{m}": fut.result() for (c, m), fut in tracked.items() if finished(fut)}
    study_ids = {f"{c}/{m}": fut.result() for (c, m), fut in tracked_studies.items() if finished(fut)}
    if failures:
        raise PipelineFailed(f"{len(failures)} task(s) failed; the tasks that read their outputs did not run and "
                             "the report was not written:\n  " + "\n  ".join(failures))
    report = report_task(params_path, profile, root)
    print(f"report: {report['path']}" + (f" (MLflow run {report['run']})" if report["run"] else ""))
    return {"report": report["path"], "report_run": report["run"], "runs": run_ids, "seed_study_runs": study_ids}


def run_pipeline(params_path: str = "params.yaml", profile: str | None = None, root: str = ".",
                 dask: bool = False, dask_address: str | None = None, n_workers: int = 2) -> dict[str, Any]:
    """Run :func:`pipeline`, optionally fanning tasks out on a DaskTaskRunner (local cluster or an address)."""
    runner_flow = pipeline
    if dask or dask_address:
        from prefect_dask import DaskTaskRunner

        runner = (DaskTaskRunner(address=dask_address) if dask_address else
                  DaskTaskRunner(cluster_kwargs={**LOCAL_CLUSTER, "n_workers": n_workers}))
        runner_flow = pipeline.with_options(task_runner=runner)
    return runner_flow(params_path=params_path, profile=profile, root=root)


def main() -> None:
    p = argparse.ArgumentParser(description="Prefect flow: the whole physml pipeline for the params.yaml matrix")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--profile", default=None, choices=PROFILES, help="default: the file's `profile`")
    p.add_argument("--root", default=".", help="project root for data/, models/, metrics/, reports/")
    p.add_argument("--dask", action="store_true", help="fan out on a local Dask cluster")
    p.add_argument("--dask-address", default=None, help="existing Dask scheduler address")
    a = p.parse_args()
    try:  # a bad params file fails here, in one line, before a Prefect server starts
        stages.check_output_grids(_load(a.params, a.profile))
    except (ValueError, OSError) as exc:
        p.exit(2, f"{p.prog}: error: {exc}\n")
    run_pipeline(a.params, a.profile, a.root, dask=a.dask, dask_address=a.dask_address)


if __name__ == "__main__":
    main()
