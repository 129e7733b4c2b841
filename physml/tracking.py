"""Experiment tracking and model registry: the one module of physml that talks to MLflow.

Layout:

- one MLflow *experiment* per PDE case, named ``physml-<case>``;
- one *run* per ``model × constraint`` combination, tagged ``case``, ``model``, ``constraint``,
  ``profile`` and ``dataset_version`` (the md5 DVC records for the case's data folder, computed from the
  files on disk: :func:`dataset_version`);
- one *registered model* per ``case × model × profile``, named ``physml-<case>-<model>-<profile>``, whose
  versions point at a run's ``model/`` artifact (a torch ``state_dict``, and the ``model_config.json`` the
  network is built from: :func:`load_model` returns it ready to predict), which is also an MLflow
  ``python_function`` model (an ``MLmodel`` file naming :mod:`physml.serving` as its loader), so
  ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` serve it; the alias ``champion`` marks the
  version with the best evaluation metric (:func:`promote_if_better`). Profiles train networks of other
  sizes on other test sets, so a quick run never competes with the paper profile's champion;
- the results reports (``reports/<profile>/``) as runs of the experiment ``physml-reports``
  (:func:`log_report`), so a report written where nothing persists (a scheduled run's pod) is kept.

Where it writes: ``PHYSML_TRACKING_URI`` (else ``MLFLOW_TRACKING_URI``, else
``sqlite:///<project>/mlflow.db``); artifacts of new experiments go to ``PHYSML_ARTIFACT_ROOT``
(else ``<project>/mlartifacts`` for a local store; a tracking server chooses its own). The project
is ``PHYSML_PROJECT_DIR``, else for the pipeline's stages the root they write under (``physml … --root``,
the flows' ``root``: :func:`store_project`), else the nearest folder at or above the working directory that
holds ``params.yaml``.

Only the main process logs: under ``torch.distributed`` (or ``torchrun``'s ``RANK``), every rank
but 0 gets a :class:`SilentRun` whose methods do nothing.

Several processes may log into one SQLite file at once: every write is retried while SQLite
reports ``database is locked``, and races on creating the same experiment or registered model
are resolved by reading back what the other process created. Logging a result only if no run holds it yet
(the pipeline's ``only_missing``) looks and logs under :func:`result_lock`, so two processes tracking the same
results at once log them once; a tracking server or a database server offers no such lock, and there two
such processes may both log a result.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a download per loaded model, not a bar

import mlflow  # noqa: E402  (after the telemetry switches above)
import mlflow.artifacts  # noqa: E402
import mlflow.pytorch  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

if TYPE_CHECKING:
    import torch

ENV_TRACKING_URI = "PHYSML_TRACKING_URI"
ENV_ARTIFACT_ROOT = "PHYSML_ARTIFACT_ROOT"
ENV_PROJECT_DIR = "PHYSML_PROJECT_DIR"
CHAMPION = "champion"
PROMOTION_MARGIN = 1e-3
"""Relative margin by which a new version's metric must beat the champion's to take the alias
(:func:`promote_if_better`): 0.1 %, far above round-off and below what a real improvement moves."""
MODEL_ARTIFACT_PATH = "model"
REPORT_EXPERIMENT = "physml-reports"
"""The experiment of the results reports (:func:`log_report`): one run per logged report, tagged ``profile``."""
REPORT_ARTIFACT_PATH = "report"
MODEL_CONFIG_FILE = "model_config.json"
"""Beside a version's ``state_dict.pth``: the configuration :func:`physml.models.build_model` builds its
network from (the checkpoint's ``model_config``)."""
FIGURE_ARTIFACT_PATH = "figures"
MLMODEL_FILE = "MLmodel"
"""Beside a version's weights and configuration: the MLflow model metadata whose ``python_function`` flavour
loads them with :mod:`physml.serving` (:func:`_write_mlmodel`)."""
PYFUNC_LOADER = "physml.serving"
REGISTERED_TAG = "registered_as"
"""Run tag ``<registered model>:<version>`` set when a run's network is registered, so that a version deleted
from the registry (a model retired on purpose) is not registered again from its run (:func:`registered_version`)."""
WEIGHTS_FILE = "state_dict.pth"
"""A version's weights in its model folder (MLflow's ``save_state_dict`` layout)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LOCKED_MARKERS = ("database is locked", "database table is locked")
_RETRY_SECONDS = 60.0
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000

T = TypeVar("T")


# ---- where ------------------------------------------------------------------------------------


def project_dir(start: Path | str | None = None) -> Path:
    """The project root: ``$PHYSML_PROJECT_DIR``, else the nearest folder holding ``params.yaml``
    at or above ``start`` (default: the working directory), else ``start`` itself."""
    env = os.environ.get(ENV_PROJECT_DIR)
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    return here


def store_project(root: Path | str) -> Path:
    """The project whose store the pipeline's stages under ``root`` log to: ``$PHYSML_PROJECT_DIR`` when set
    (one store for runs made under several roots), else ``root`` (the store beside the data it logs)."""
    env = os.environ.get(ENV_PROJECT_DIR)
    return Path(env).expanduser().resolve() if env else Path(root).resolve()


def tracking_uri(project: Path | str | None = None) -> str:
    """``$PHYSML_TRACKING_URI``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<project>/mlflow.db``."""
    for var in (ENV_TRACKING_URI, "MLFLOW_TRACKING_URI"):
        value = os.environ.get(var)
        if value:
            return value
    root = Path(project).resolve() if project is not None else project_dir()
    return f"sqlite:///{root / 'mlflow.db'}"


def _is_local_store(uri: str) -> bool:
    """Whether MLflow runs in this process for ``uri`` (a file or a database: SQLite, PostgreSQL, MySQL, …),
    whose artifact location the project chooses, rather than behind a tracking server that chooses its own."""
    return not uri.startswith(("http://", "https://", "databricks"))


def artifact_root(uri: str | None = None, project: Path | str | None = None) -> str | None:
    """Artifact location for new experiments: ``$PHYSML_ARTIFACT_ROOT``, else
    ``file://<project>/mlartifacts`` for a local store, else ``None`` (the server decides)."""
    env = os.environ.get(ENV_ARTIFACT_ROOT)
    if env:
        return env if "://" in env else Path(env).expanduser().resolve().as_uri()
    if _is_local_store(uri if uri is not None else tracking_uri(project)):
        root = Path(project).resolve() if project is not None else project_dir()
        return (root / "mlartifacts").as_uri()
    return None


def experiment_name(case: str) -> str:
    """The MLflow experiment of a case: ``physml-<case>``."""
    return f"physml-{_check_name('case', case)}"


def registered_model_name(case: str, model: str, profile: str) -> str:
    """The registered model of ``case × model`` in ``profile``: ``physml-<case>-<model>-<profile>``."""
    return f"physml-{_check_name('case', case)}-{_check_name('model', model)}-{_check_name('profile', profile)}"


def _check_name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{field} must be a non-empty string of letters, digits, '_', '.', '-' "
            f"starting with a letter or digit; got {value!r}"
        )
    return value


# ---- what -------------------------------------------------------------------------------------


def dataset_version(data_dir: Path | str) -> str | None:
    """The md5 DVC records for a data folder (``<md5>.dir``), computed from the files on disk.

    DVC 3 hashes a directory out as the md5 of the JSON list ``[{"md5": <file md5>, "relpath": <path>}, …]``
    sorted by path (``sort_keys``, default separators), with ``.dir`` appended; this is the same, so the tag
    equals ``dvc.lock``'s entry whenever the lock describes these files, and names the data that were
    actually used when it does not (a Prefect run that regenerated them, an edited lock). ``None`` when
    the folder does not exist. Never imports dvc.
    """
    root = Path(data_dir)
    if not root.is_dir():
        return None
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        md5 = hashlib.md5()
        with open(path, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                md5.update(chunk)
        entries.append({"md5": md5.hexdigest(), "relpath": path.relative_to(root).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def is_main_process() -> bool:
    """True on rank 0 of a ``torch.distributed`` job (or of ``torchrun``'s ``RANK``), and when
    not distributed at all."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()) == 0
    return int(os.environ.get("RANK", "0")) == 0


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings become dotted keys (``{"a": {"b": 1}} -> {"a.b": "1"}``); values become strings."""
    return {k: str(v) for k, v in _flatten(params, prefix).items()}


# ---- retries and the client -------------------------------------------------------------------


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _LOCKED_MARKERS)


def _retry(fn: Callable[[], T], timeout: float = _RETRY_SECONDS) -> T:
    """Call ``fn`` until SQLite stops reporting a lock (jittered backoff up to ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            return fn()
        except Exception as exc:  # MlflowException or sqlalchemy's OperationalError
            if not _is_locked(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (1.0 + (os.getpid() % 7) / 7.0))
        delay = min(delay * 2.0, 0.5)


_READY_STORES: set[str] = set()


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (its query, e.g. ``?timeout=30``, dropped), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except PermissionError:  # a read-only store (a mounted volume): nothing here can write to it either
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def result_lock(uri: str | None = None) -> AbstractContextManager[None]:
    """A lock, across processes, under which to look for a result's run and log it if none holds it: on a
    SQLite store a file lock beside the database (``<db>.log.lock``); elsewhere none (see the module
    docstring)."""
    db = _sqlite_path(uri or tracking_uri())
    return _file_lock(db.with_name(db.name + ".log.lock")) if db is not None else nullcontext()


def client(uri: str | None = None) -> MlflowClient:
    """An :class:`MlflowClient` on ``uri`` (default :func:`tracking_uri`) for tracking and registry.

    The first use of a SQLite store in a process creates or migrates its tables under a file lock
    (``<db>.lock``), since two processes migrating one fresh file at once corrupt each other.
    """
    resolved = uri or tracking_uri()
    db = _sqlite_path(resolved)
    if db is None or resolved in _READY_STORES:
        return MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    with _file_lock(db.with_name(db.name + ".lock")):
        mlc = _retry(lambda: MlflowClient(tracking_uri=resolved, registry_uri=resolved))
        _retry(lambda: mlc.search_experiments(max_results=1))
        _retry(lambda: mlc.search_registered_models(max_results=1))
    _READY_STORES.add(resolved)
    return mlc


def _experiment_id(mlc: MlflowClient, case: str, uri: str, project: Path | str | None = None) -> str:
    return _named_experiment_id(mlc, experiment_name(case), uri, project, tags={"case": case})


def _named_experiment_id(mlc: MlflowClient, name: str, uri: str, project: Path | str | None,
                         tags: Mapping[str, str]) -> str:
    """The id of experiment ``name``, created (artifacts under :func:`artifact_root`) if it does not exist;
    ValueError if it was deleted (MLflow keeps a deleted experiment's name and refuses runs in it)."""
    existing = _retry(lambda: mlc.get_experiment_by_name(name))
    if existing is not None and existing.lifecycle_stage == "deleted":
        raise ValueError(
            f"MLflow experiment {name!r} (id {existing.experiment_id}) in {uri} is deleted, so nothing can be logged "
            f"to it: restore it (`mlflow experiments restore --experiment-id {existing.experiment_id}` with "
            f"MLFLOW_TRACKING_URI={uri}) or remove it for good (`mlflow gc --backend-store-uri {uri} "
            f"--experiment-ids {existing.experiment_id}`)")
    if existing is not None:
        return existing.experiment_id
    location = artifact_root(uri, project)
    try:
        return _retry(lambda: mlc.create_experiment(name, artifact_location=location, tags=dict(tags)))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    created = _retry(lambda: mlc.get_experiment_by_name(name))
    if created is None:
        raise RuntimeError(f"experiment {name!r} reported as existing but cannot be read back")
    return created.experiment_id


def _ensure_registered_model(mlc: MlflowClient, name: str) -> None:
    try:
        _retry(lambda: mlc.create_registered_model(name))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _register(mlc: MlflowClient, run_id: str, case: str, model: str, profile: str,
              artifact_path: str = MODEL_ARTIFACT_PATH) -> str:
    """A new version of ``physml-<case>-<model>-<profile>`` from the run's ``artifact_path``; its number."""
    name = registered_model_name(case, model, profile)
    _ensure_registered_model(mlc, name)
    version = _retry(lambda: mlc.create_model_version(name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id,
                                                      tags={"case": case, "model": model, "profile": profile}))
    _retry(lambda: mlc.set_tag(run_id, REGISTERED_TAG, f"{name}:{version.version}"))
    return str(version.version)


# ---- runs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """What one logged experiment left in MLflow."""

    run_id: str
    experiment_id: str
    model_name: str | None
    model_version: str | None


class ExperimentRun:
    """One MLflow run of ``case × model × constraint``; every write goes through a lock retry."""

    def __init__(self, mlc: MlflowClient, run_id: str, experiment_id: str, case: str, model: str,
                 profile: str) -> None:
        self.client = mlc
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.case = case
        self.model = model
        self.profile = profile

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) parameters as dotted string params."""
        items = [Param(k, v) for k, v in flatten_params(params).items()]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            chunk = items[i : i + _MAX_PARAMS_PER_BATCH]
            _retry(lambda chunk=chunk: self.client.log_batch(self.run_id, params=chunk))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log scalar metrics (at ``step``, default 0); nested mappings become dotted names
        (``{"mse": {"test": 0.1}} -> "mse.test"``). ValueError naming a non-numeric metric."""
        now = int(time.time() * 1000)
        items = []
        for key, value in _flatten(metrics).items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"metric {key!r} must be a real number; got {value!r}") from None
            items.append(Metric(key, number, now, int(step or 0)))
        for i in range(0, len(items), _MAX_METRICS_PER_BATCH):
            chunk = items[i : i + _MAX_METRICS_PER_BATCH]
            _retry(lambda chunk=chunk: self.client.log_batch(self.run_id, metrics=chunk))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set string tags on the run."""
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        _retry(lambda: self.client.log_batch(self.run_id, tags=items))

    def log_figure(self, figure: Any, name: str) -> str:
        """Store a matplotlib figure (or an existing ``.png`` path) as ``figures/<name>.png``;
        returns the artifact path."""
        stem = _check_name("figure name", Path(name).stem)
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / f"{stem}.png"
            if isinstance(figure, (str, Path)):
                source = Path(figure)
                if source.suffix.lower() != ".png" or not source.is_file():
                    raise ValueError(f"figure must be a matplotlib Figure or an existing .png file; got {figure!r}")
                target.write_bytes(source.read_bytes())
            elif hasattr(figure, "savefig"):
                figure.savefig(target, format="png", dpi=120, bbox_inches="tight")
            else:
                raise ValueError(f"figure must be a matplotlib Figure or an existing .png file; got {type(figure)!r}")
            _retry(lambda: self.client.log_artifact(self.run_id, str(target), FIGURE_ARTIFACT_PATH))
        return f"{FIGURE_ARTIFACT_PATH}/{stem}.png"

    def log_state_dict(self, state_dict: Mapping[str, Any], artifact_path: str = MODEL_ARTIFACT_PATH,
                       model_config: Mapping[str, Any] | None = None,
                       serving: Mapping[str, Any] | None = None) -> str:
        """Store a torch ``state_dict`` (MLflow's ``state_dict.pth`` layout) under ``artifact_path``, with
        ``model_config`` (JSON, :data:`MODEL_CONFIG_FILE`) and the pyfunc ``MLmodel`` (:func:`_write_mlmodel`,
        ``serving`` the prediction defaults) beside it when a config is given; returns
        ``runs:/<run_id>/<artifact_path>``, loadable with :func:`load_state_dict` (and with a config,
        :func:`load_model` and ``mlflow.pyfunc.load_model``)."""
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / artifact_path
            mlflow.pytorch.save_state_dict(dict(state_dict), str(local))
            if model_config is not None:
                _write_model_config(local, model_config)
                _write_mlmodel(local, model_config, serving)
            _retry(lambda: self.client.log_artifacts(self.run_id, str(local), artifact_path))
        return f"runs:/{self.run_id}/{artifact_path}"

    def register(self, artifact_path: str = MODEL_ARTIFACT_PATH) -> str:
        """Register the run's model artifact as a new version of ``physml-<case>-<model>-<profile>``;
        returns the version number (as MLflow's string)."""
        return _register(self.client, self.run_id, self.case, self.model, self.profile, artifact_path)


class SilentRun:
    """What ranks other than 0 get: the same methods as :class:`ExperimentRun`, doing nothing."""

    run_id: str | None = None
    experiment_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Do nothing (not the main process)."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Do nothing (not the main process)."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Do nothing (not the main process)."""

    def log_figure(self, figure: Any, name: str) -> None:
        """Do nothing (not the main process)."""

    def log_state_dict(self, state_dict: Mapping[str, Any], artifact_path: str = MODEL_ARTIFACT_PATH,
                       model_config: Mapping[str, Any] | None = None,
                       serving: Mapping[str, Any] | None = None) -> None:
        """Do nothing (not the main process)."""

    def register(self, artifact_path: str = MODEL_ARTIFACT_PATH) -> None:
        """Do nothing (not the main process)."""


@contextmanager
def start_run(
    case: str,
    model: str,
    constraint: str,
    profile: str,
    *,
    dataset_version: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    uri: str | None = None,
    project: Path | str | None = None,
) -> Iterator[ExperimentRun | SilentRun]:
    """Open the run of ``case × model × constraint`` in experiment ``physml-<case>``.

    Yields an :class:`ExperimentRun` on the main process and a :class:`SilentRun` elsewhere. The
    run ends FINISHED, or FAILED if the block (or logging its dataset version) raises (the exception
    propagates). ``uri`` default :func:`tracking_uri` of ``project``; a new experiment's artifacts go to
    :func:`artifact_root` of ``project`` (default :func:`project_dir`).
    """
    for field, value in (("case", case), ("model", model), ("constraint", constraint), ("profile", profile)):
        _check_name(field, value)
    if not is_main_process():
        yield SilentRun()
        return
    resolved = uri or tracking_uri(project)
    mlc = client(resolved)
    experiment_id = _experiment_id(mlc, case, resolved, project)
    run_tags = {"case": case, "model": model, "constraint": constraint, "profile": profile}
    if dataset_version is not None:
        run_tags["dataset_version"] = dataset_version
    run_tags.update({k: str(v) for k, v in (tags or {}).items()})
    info = _retry(
        lambda: mlc.create_run(experiment_id, tags=run_tags, run_name=run_name or f"{model}-{constraint}")
    ).info
    run = ExperimentRun(mlc, info.run_id, experiment_id, case, model, profile)
    try:
        if dataset_version is not None:
            run.log_params({"dataset_version": dataset_version})
        yield run
    except BaseException:
        _retry(lambda: mlc.set_terminated(info.run_id, status="FAILED"))
        raise
    _retry(lambda: mlc.set_terminated(info.run_id, status="FINISHED"))


def log_experiment(
    case: str,
    model: str,
    constraint: str,
    profile: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    figures: Mapping[str, Any] | None = None,
    state_dict: Mapping[str, Any] | None = None,
    model_config: Mapping[str, Any] | None = None,
    serving: Mapping[str, Any] | None = None,
    dataset_version: str | None = None,
    register: bool = True,
    tags: Mapping[str, Any] | None = None,
    uri: str | None = None,
    project: Path | str | None = None,
) -> RunRecord | None:
    """Log one finished experiment in one call: tags, params, metrics, figures (name -> Figure or
    png path), and the model ``state_dict`` with the ``model_config`` it is built from (registered as a new
    version when ``register``; ``serving``: the defaults of its pyfunc ``predict``, ``n_samples`` and ``seed``,
    as :func:`physml.serving.prediction_params` takes them).
    Returns ``None`` on processes other than rank 0. ``uri``, ``project``: as :func:`start_run`."""
    with start_run(case, model, constraint, profile, dataset_version=dataset_version, tags=tags, uri=uri,
                   project=project) as run:
        if isinstance(run, SilentRun):
            return None
        if params:
            run.log_params(params)
        if metrics:
            run.log_metrics(metrics)
        for name, figure in (figures or {}).items():
            run.log_figure(figure, name)
        version = None
        if state_dict is not None:
            run.log_state_dict(state_dict, model_config=model_config, serving=serving)
            if register:
                version = run.register()
        return RunRecord(
            run_id=run.run_id,
            experiment_id=run.experiment_id,
            model_name=registered_model_name(case, model, profile) if version is not None else None,
            model_version=version,
        )


def log_report(report_dir: Path | str, profile: str, tags: Mapping[str, Any] | None = None, uri: str | None = None,
               project: Path | str | None = None) -> str | None:
    """Log a results report folder (``reports/<profile>/``: ``index.md`` and its figures) as the ``report/``
    artifacts of a new run ``report-<profile>`` in experiment :data:`REPORT_EXPERIMENT`, tagged ``profile``
    and ``tags``, so that a report written in a pod that goes away (the scheduled paper runs) is kept with the
    runs and models it describes. Returns the run id (None off rank 0). ``uri``, ``project``: as
    :func:`start_run`. A folder without ``index.md`` → ValueError."""
    report_dir = Path(report_dir)
    if not (report_dir / "index.md").is_file():
        raise ValueError(f"{report_dir}: no index.md, so no report to log; run `physml report` first")
    _check_name("profile", profile)
    if not is_main_process():
        return None
    resolved = uri or tracking_uri(project)
    mlc = client(resolved)
    experiment_id = _named_experiment_id(mlc, REPORT_EXPERIMENT, resolved, project, tags={"kind": "report"})
    run_tags = {"profile": profile, **{k: str(v) for k, v in (tags or {}).items()}}
    run_id = _retry(lambda: mlc.create_run(experiment_id, tags=run_tags, run_name=f"report-{profile}")).info.run_id
    try:
        _retry(lambda: mlc.log_artifacts(run_id, str(report_dir), REPORT_ARTIFACT_PATH))
    except BaseException:
        _retry(lambda: mlc.set_terminated(run_id, status="FAILED"))
        raise
    _retry(lambda: mlc.set_terminated(run_id, status="FINISHED"))
    return run_id


def find_run(case: str, tag: str, value: str, uri: str | None = None, **match: str) -> str | None:
    """The id of a FINISHED run in experiment ``physml-<case>`` whose tag ``tag`` is ``value`` and whose
    tags equal ``match`` (e.g. ``model=…, constraint=…``), else None (also when the experiment does not
    exist yet; nothing is created)."""
    return _find_in(experiment_name(case), tag, value, uri, **match)


def find_report_run(tag: str, value: str, uri: str | None = None, **match: str) -> str | None:
    """:func:`find_run` in the reports' experiment (:data:`REPORT_EXPERIMENT`)."""
    return _find_in(REPORT_EXPERIMENT, tag, value, uri, **match)


def _find_in(name: str, tag: str, value: str, uri: str | None, **match: str) -> str | None:
    conditions = [f"tags.{_check_name('tag', tag)} = '{_check_name('tag value', value)}'"]
    conditions += [f"tags.{_check_name('tag', k)} = '{_check_name('tag value', v)}'" for k, v in sorted(match.items())]
    resolved = uri or tracking_uri()
    mlc = client(resolved)
    experiment = _retry(lambda: mlc.get_experiment_by_name(name))
    if experiment is None or experiment.lifecycle_stage == "deleted":
        return None
    runs = _retry(lambda: mlc.search_runs(
        [experiment.experiment_id], filter_string=" and ".join([*conditions, "attributes.status = 'FINISHED'"]),
        max_results=1))
    return runs[0].info.run_id if runs else None


def registered_version(case: str, model: str, profile: str, run_id: str, uri: str | None = None) -> str | None:
    """The version of ``physml-<case>-<model>-<profile>`` made from run ``run_id``, registering the run's
    ``model/`` artifact now if no version is (its registration failed, or the store predates the profile in
    the name); ``None`` if the run logged no model, or if its version was deleted from the registry (the run's
    :data:`REGISTERED_TAG` names it: a model retired on purpose stays retired)."""
    mlc = client(uri or tracking_uri())
    name = registered_model_name(case, model, profile)
    found = _retry(lambda: mlc.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"))
    if found:
        return str(min(int(v.version) for v in found))
    if _retry(lambda: mlc.get_run(run_id)).data.tags.get(REGISTERED_TAG, "").startswith(f"{name}:"):
        return None
    if not _retry(lambda: mlc.list_artifacts(run_id, MODEL_ARTIFACT_PATH)):
        return None
    return _register(mlc, run_id, case, model, profile)


# ---- registry ---------------------------------------------------------------------------------


def _version_run(name: str, version: str | int, uri: str | None) -> Any:
    """The run that produced ``name`` version ``version`` (None when the version has no run)."""
    mlc = client(uri)
    mv = _retry(lambda: mlc.get_model_version(name, str(version)))
    return _retry(lambda: mlc.get_run(mv.run_id)) if mv.run_id else None


def version_metric(name: str, version: str | int, metric: str, uri: str | None = None) -> float:
    """The latest value of ``metric`` in the run that produced ``name`` version ``version``;
    ValueError when that run never logged it."""
    run = _version_run(name, version, uri)
    if run is None:
        raise ValueError(f"version {version} of {name!r} has no run, so no metric {metric!r}")
    metrics = run.data.metrics
    if metric not in metrics:
        raise ValueError(
            f"metric {metric!r} was not logged by the run of {name!r} version {version}; "
            f"logged: {sorted(metrics)}"
        )
    return float(metrics[metric])


def version_dataset(name: str, version: str | int, uri: str | None = None) -> str | None:
    """The ``dataset_version`` tag of the run that produced ``name`` version ``version`` (None if untagged)."""
    run = _version_run(name, version, uri)
    return None if run is None else run.data.tags.get("dataset_version")


def champion_version(name: str, alias: str = CHAMPION, uri: str | None = None) -> str | None:
    """The version that holds ``alias`` in registered model ``name``; ``None`` when no version does."""
    mlc = client(uri)
    try:
        return str(_retry(lambda: mlc.get_model_version_by_alias(name, alias)).version)
    except MlflowException as exc:
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise


def promote_if_better(
    name: str,
    version: str | int,
    metric: str,
    higher_is_better: bool = False,
    *,
    alias: str = CHAMPION,
    uri: str | None = None,
    margin: float = PROMOTION_MARGIN,
) -> bool:
    """Give ``version`` the ``alias`` (default ``champion``) iff its evaluation ``metric`` beats the current
    holder's by more than ``margin`` of the holder's magnitude (lower is better unless ``higher_is_better``:
    new < old − margin·|old|, or new > old + margin·|old|), or no version holds it, or the holder was
    evaluated on other data (its run's ``dataset_version`` tag differs: a metric on another test set is no
    comparison, so new data start a new contest) and ``version``'s run was logged after the holder's (the
    store cannot tell newer data from older, so the result logged last wins; a result logged before, offered
    again by ``physml track`` from an older checkout, does not take the alias back). The margin keeps a
    scheduled retraining of the same code and data from taking the alias on run-to-run noise (GPU kernels
    round differently between runs); ``margin=0`` is a strict comparison. A holder whose network cannot be
    rebuilt (logged without :data:`MODEL_CONFIG_FILE`, before versions carried it) yields to a version that
    can and is no worse beyond the margin, so :func:`load_model` serves the champion.

    A NaN metric never wins. Returns whether the alias moved to ``version``. On a SQLite store the
    read–compare–set runs under a file lock (``<db>.promote.lock``), so concurrent retraining runs on
    one machine cannot both read the old champion and let the worse one win; a remote tracking server
    offers no such transaction (serialise promotions there, e.g. one Prefect concurrency slot).
    """
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    resolved = uri or tracking_uri()
    db = _sqlite_path(resolved)
    with _file_lock(db.with_name(db.name + ".promote.lock")) if db is not None else nullcontext():
        new = version_metric(name, version, metric, uri=resolved)
        if math.isnan(new):
            return False
        current = champion_version(name, alias=alias, uri=resolved)
        if current == str(version):
            return False
        if current is not None and (version_dataset(name, current, uri=resolved)
                                    != version_dataset(name, version, uri=resolved)):
            if _version_logged(name, version, resolved) < _version_logged(name, current, resolved):
                return False
        elif current is not None:
            old = version_metric(name, current, metric, uri=resolved)
            step = margin * abs(old)
            better = new > old + step if higher_is_better else new < old - step
            no_worse = new >= old - step if higher_is_better else new <= old + step
            if not math.isnan(old) and not better and not (
                    no_worse and _rebuildable(name, version, resolved) and not _rebuildable(name, current, resolved)):
                return False
        mlc = client(resolved)
        _retry(lambda: mlc.set_registered_model_alias(name, alias, str(version)))
        return True


def _version_logged(name: str, version: str | int, uri: str) -> int:
    """When the run of ``name`` version ``version`` started (ms since the epoch; 0 for a version without a run)."""
    run = _version_run(name, version, uri)
    return 0 if run is None else int(run.info.start_time or 0)


def _rebuildable(name: str, version: str | int, uri: str) -> bool:
    """Whether version ``version`` of ``name`` carries :data:`MODEL_CONFIG_FILE` beside its weights."""
    mlc = client(uri)
    return MODEL_CONFIG_FILE in _version_files(mlc, _resolve_version(mlc, name, version))


def _resolve_version(mlc: MlflowClient, name: str, alias_or_version: str | int) -> Any:
    """The ModelVersion of ``name`` at a version number or an alias."""
    ref = str(alias_or_version)
    return _retry(lambda: mlc.get_model_version(name, ref) if ref.isdigit()
                  else mlc.get_model_version_by_alias(name, ref))


def _run_artifact(mv: Any) -> str | None:
    """The artifact path inside its run that version ``mv`` points at (``runs:/<run>/<path>``), else None."""
    prefix = f"runs:/{mv.run_id}/"
    return str(mv.source)[len(prefix):] if mv.run_id and str(mv.source).startswith(prefix) else None


def _version_files(mlc: MlflowClient, mv: Any) -> set[str]:
    """The names of the files in version ``mv``'s model folder (none if it points at no run artifact)."""
    path = _run_artifact(mv)
    return set() if path is None else {Path(a.path).name for a in _retry(lambda: mlc.list_artifacts(mv.run_id, path))}


def attach_model_config(run_id: str, model_config: Mapping[str, Any], uri: str | None = None,
                        artifact_path: str = MODEL_ARTIFACT_PATH) -> bool:
    """Add ``model_config`` (:data:`MODEL_CONFIG_FILE`) beside the weights of run ``run_id`` if they were logged
    without it (runs made before versions carried it), so that :func:`load_model` can rebuild the network;
    True if it was added, False if it was there."""
    return _attach_missing(run_id, MODEL_CONFIG_FILE, lambda folder: _write_model_config(folder, model_config),
                           uri, artifact_path)


def attach_pyfunc(run_id: str, model_config: Mapping[str, Any], serving: Mapping[str, Any] | None = None,
                  uri: str | None = None, artifact_path: str = MODEL_ARTIFACT_PATH) -> bool:
    """Add the pyfunc ``MLmodel`` (:func:`_write_mlmodel`) beside the weights of run ``run_id`` if they were
    logged without it (runs made before versions were pyfunc models), so ``mlflow models serve`` serves them;
    True if it was added, False if it was there."""
    return _attach_missing(run_id, MLMODEL_FILE, lambda folder: _write_mlmodel(folder, model_config, serving),
                           uri, artifact_path)


def _attach_missing(run_id: str, name: str, write: Callable[[Path], Path], uri: str | None,
                    artifact_path: str) -> bool:
    """Log the file ``write(folder)`` makes into ``artifact_path`` of run ``run_id`` unless a file ``name`` is
    there; whether it was logged."""
    mlc = client(uri or tracking_uri())
    present = {Path(a.path).name for a in _retry(lambda: mlc.list_artifacts(run_id, artifact_path))}
    if WEIGHTS_FILE not in present:
        raise ValueError(f"run {run_id} holds no {artifact_path}/{WEIGHTS_FILE} (its artifacts were moved or deleted), "
                         f"so its registered network cannot be loaded: delete the run (`mlflow runs delete --run-id "
                         f"{run_id}`) and `physml track` logs its results again")
    if name in present:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        local = write(Path(tmp))
        _retry(lambda: mlc.log_artifact(run_id, str(local), artifact_path))
    return True


def _write_mlmodel(folder: Path, model_config: Mapping[str, Any], serving: Mapping[str, Any] | None) -> Path:
    """``folder/MLmodel``: a ``python_function`` flavour whose loader is :mod:`physml.serving`, with the
    prediction params (:func:`physml.serving.prediction_params`, defaults from ``serving``: ``n_samples``,
    ``seed``) as its signature's params and its config; no input schema (the inputs are a dict of arrays
    whose shapes :mod:`physml.serving` checks). Its path."""
    import mlflow.pyfunc
    from mlflow.models import Model
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    from physml.serving import prediction_params  # torch networks: only when a model is logged

    defaults = {"n_samples": 1, "seed": 0, **(serving or {})}
    params = prediction_params(model_config, n_samples=defaults["n_samples"], seed=defaults["seed"])
    meta = Model()
    if params:
        meta.signature = ModelSignature(inputs=None, params=ParamSchema(
            [ParamSpec(k, "string" if isinstance(v, str) else "long", v) for k, v in params.items()]))
    mlflow.pyfunc.add_to_model(meta, loader_module=PYFUNC_LOADER, model_config=params or None)
    path = folder / MLMODEL_FILE
    meta.save(str(path))
    return path


def _write_model_config(folder: Path, model_config: Mapping[str, Any]) -> Path:
    """``folder/model_config.json`` (:data:`MODEL_CONFIG_FILE`) holding ``model_config``; its path."""
    path = folder / MODEL_CONFIG_FILE
    path.write_text(json.dumps(dict(model_config), indent=1, sort_keys=True))
    return path


def _version_artifact(name: str, alias_or_version: str | int, uri: str | None, dst: str) -> Path:
    """Download the ``model/`` artifact of ``name`` at an alias or a version number into ``dst``; its path."""
    resolved = uri or tracking_uri()
    mv = _resolve_version(client(resolved), name, alias_or_version)
    path = _run_artifact(mv)
    if path is None:
        raise ValueError(f"version {mv.version} of {name!r} does not point at a run artifact: {mv.source!r}")
    return Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=path, dst_path=dst,
                                                    tracking_uri=resolved))


def serve_command(name: str, alias_or_version: str | int = CHAMPION, host: str = "127.0.0.1", port: int = 5001,
                  uri: str | None = None) -> tuple[list[str], dict[str, str], str]:
    """``mlflow models serve`` of ``name`` at an alias (``champion``) or a version number: (argv, environment,
    the version served). The alias is resolved here, so the server keeps serving that version if the alias
    moves. It runs in this Python environment (``--env-manager local``: the loader needs physml), with this
    environment's bin folder first on ``PATH`` (the server execs ``uvicorn`` from it) and ``MLFLOW_TRACKING_URI``
    set to the store. ValueError when a SQLite store does not exist (it is not created), the model, alias or
    version is not registered, or the version is not a pyfunc model (logged before versions were; ``physml
    track`` adds its ``MLmodel``)."""
    if not (isinstance(port, int) and 1 <= port <= 65535):
        raise ValueError(f"port must be an integer in [1, 65535], got {port!r}")
    resolved = uri or tracking_uri()
    db = _sqlite_path(resolved.split("?", 1)[0])  # sqlite:///x.db?timeout=30: the file is x.db
    if db is not None and not db.is_file():  # reading it through MLflow would leave an empty store behind
        raise ValueError(f"no MLflow store at {db}: nothing was tracked there (run the pipeline or `physml track` in "
                         "that project, or give the project's --root)")
    mlc = client(resolved)
    ref = str(alias_or_version)
    try:
        mv = _resolve_version(mlc, name, ref)
    except MlflowException as exc:
        if exc.error_code not in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            raise
        versions = sorted(int(v.version) for v in _retry(lambda: mlc.search_model_versions(f"name = '{name}'")))
        raise ValueError(f"{name!r} has no {'version' if ref.isdigit() else 'alias'} {ref!r} in {resolved} "
                         + (f"(versions: {versions})" if versions else
                            "(no versions: run the pipeline, or `physml track` to log its results)")) from None
    if MLMODEL_FILE not in _version_files(mlc, mv):
        raise ValueError(f"version {mv.version} of {name!r} is not a pyfunc model (no {MLMODEL_FILE}); "
                         f"`physml track` adds it to the runs of the results on disk")
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/{mv.version}",
            "--env-manager", "local", "-h", host, "-p", str(port)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": resolved, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    return argv, env, str(mv.version)


def load_state_dict(name: str, alias_or_version: str | int = CHAMPION, uri: str | None = None) -> dict[str, Any]:
    """The torch ``state_dict`` of ``name`` at an alias (``champion``) or a version number."""
    with tempfile.TemporaryDirectory() as tmp:
        return dict(mlflow.pytorch.load_state_dict(str(_version_artifact(name, alias_or_version, uri, tmp))))


def load_model(name: str, alias_or_version: str | int = CHAMPION, uri: str | None = None) -> torch.nn.Module:
    """The network of ``name`` at an alias (``champion``) or a version number, ready to predict: built by
    :func:`physml.models.build_model` from the ``model_config.json`` logged beside its weights, the weights
    loaded, on the CPU, in eval mode. E.g. ``load_model("physml-heat_neumann-fno-quick")`` is the champion
    BOON network of that case: ``net(u, bc)`` with the boundary data as :meth:`physml.models.BOONFNO.forward`
    takes them (or ``physml.experiments.boon.predict(net, split)`` on a dataset split); an ANP's or an
    ensemble's predictive is ``net.predict(...)``. A version logged without a config → ValueError (its weights
    still load with :func:`load_state_dict`; ``physml track`` adds the config to the runs it finds)."""
    from physml.serving import load_network  # torch networks: only when one is loaded

    with tempfile.TemporaryDirectory() as tmp:
        local = _version_artifact(name, alias_or_version, uri, tmp)
        if not (local / MODEL_CONFIG_FILE).is_file():
            raise ValueError(f"{name!r} at {alias_or_version!r} was logged without {MODEL_CONFIG_FILE}, so its "
                             f"network cannot be rebuilt; `physml track` adds it to the runs of the results on disk, "
                             f"or load the bare weights with load_state_dict")
        return load_network(local)[0]


__all__ = [
    "CHAMPION",
    "ExperimentRun",
    "RunRecord",
    "SilentRun",
    "artifact_root",
    "attach_model_config",
    "attach_pyfunc",
    "champion_version",
    "client",
    "dataset_version",
    "experiment_name",
    "find_report_run",
    "find_run",
    "flatten_params",
    "is_main_process",
    "load_model",
    "load_state_dict",
    "log_experiment",
    "log_report",
    "project_dir",
    "promote_if_better",
    "registered_model_name",
    "registered_version",
    "serve_command",
    "start_run",
    "store_project",
    "tracking_uri",
    "version_dataset",
    "version_metric",
]
