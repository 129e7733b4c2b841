"""The pipeline's stages as plain functions: what ``dvc repro`` (through the CLI) and the Prefect flows call.

    generate ──► train ──► constrain ──► evaluate ──► report
                   └──► seed_study (the plain and BOON FNO, or the plain black box, over more seeds) ──┘

Every stage reads and writes files under one project root, laid out by :class:`Layout`, and returns the
path it wrote, so orchestrators pass paths and run ids, never tensors. A stage keyed by ``(case, model)``
dispatches on the problem's family to :mod:`physml.experiments.probconserv` or
:mod:`physml.experiments.boon`, which share one signature per stage. The stages that run networks
(train, constrain, seed_study) first keep large blocks on the heap (:mod:`physml.allocator`). The stages
that train (train, seed_study) and constrain, which builds networks, run one at a time per process
(:data:`TRAINING_LOCK`).
"""

from __future__ import annotations

import json
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from physml import pdes
from physml.allocator import keep_large_blocks_on_heap
from physml.atomic import write_json
from physml.config import ParamsModel


#: Held by every stage that draws from the process-wide RNGs: those that train, and constrain. A training seeds
#: and then draws from them (python, numpy, torch: the initial weights, dropout, the ANP's latent samples
#: every step), so two trainings in threads of one process, as the Prefect flow's default task runner starts
#: them, would interleave their draws and give weights that depend on timing; with the lock each gets the
#: weights it gets alone. Constrain draws too: it builds each network (random initial weights) before loading
#: its checkpoint into it, and one build in another thread during an ANP training changes that training's
#: latent draws from there on (measured: a seed study's weights, and so its seeds.json, changed when a
#: constrain task of the flow ran beside it). (The Dask runner of :mod:`flows.pipeline` runs stages in
#: separate processes, in parallel.)
TRAINING_LOCK = threading.Lock()

#: Written beside a case × model's networks by :func:`train` once they are trained: the params.yaml settings
#: they were trained with (:func:`_training_settings`), which constrain, evaluate, the seed study and track check.
TRAINED_WITH = "trained_with.json"

#: Written beside a case × model's metrics by :func:`evaluate` once they are written: what they were computed
#: from (:func:`made_from`). :func:`track` logs metrics only with the networks and data they record, and the
#: report's version table lists them, so a report names what made its numbers even where data and networks
#: are not on disk (a fresh clone).
MADE_FROM = "made_from.json"


@dataclass(frozen=True)
class Layout:
    """Where each stage's outputs live for one profile (all relative to ``root``)."""

    root: Path
    profile: str

    def data(self, case: str) -> Path:
        return self.root / "data" / self.profile / case

    def models(self, case: str, model: str) -> Path:
        return self.root / "models" / self.profile / case / model

    def seed_models(self, case: str, model: str) -> Path:
        """The seed study's networks, one ``seed_<s>/`` folder per seed other than the project seed."""
        return self.root / "models" / self.profile / case / f"{model}-seeds"

    def seed_study_file(self, case: str, model: str) -> Path:
        """The seed study's results of a case × model (a DVC metrics file beside the evaluation's)."""
        return self.metrics(case, model) / "seeds.json"

    def predictions(self, case: str, model: str) -> Path:
        return self.root / "predictions" / self.profile / case / model

    def metrics(self, case: str, model: str) -> Path:
        """Holds ``<constraint>.json`` (one DVC metrics file per case × model × constraint) and ``figures/``."""
        return self.root / "metrics" / self.profile / case / model

    def reports(self) -> Path:
        return self.root / "reports" / self.profile


def experiment_module(case: str) -> ModuleType:
    """The experiment implementation for ``case``'s family (ProbConserv or BOON)."""
    family = pdes.get(case).family
    if family == "probconserv":
        from physml.experiments import probconserv

        return probconserv
    from physml.experiments import boon

    return boon


def check_model(params: ParamsModel, case: str, model: str) -> None:
    for group_name in ("probconserv", "boon"):
        group = getattr(params.matrix, group_name)
        if case in group.cases:
            if model not in group.models:
                raise ValueError(f"matrix.{group_name}.models: {model!r} is not configured for {case}; allowed: {', '.join(group.models)}")
            return
    raise ValueError(f"matrix: case {case!r} is in no experiment group; configured: "
                     f"{', '.join(params.matrix.probconserv.cases + params.matrix.boon.cases)}")


def group_name(case: str) -> str:
    """The name of the matrix group ("probconserv" or "boon") of ``case``'s problem family."""
    return "probconserv" if pdes.get(case).family == "probconserv" else "boon"


def _group(params: ParamsModel, case: str) -> Any:
    """The matrix group (``params.matrix.probconserv`` or ``.boon``) of ``case``'s problem family."""
    return getattr(params.matrix, group_name(case))


def generate(case: str, params: ParamsModel, root: Path, progress: bool = True) -> Path:
    """Write every split of ``case`` (see :func:`physml.data.generate.generate_case`). A BOON case whose
    output times its operator cannot learn (:func:`physml.experiments.boon.check_output_times`) is refused
    before anything is solved, not after."""
    from physml.data.generate import generate_case

    check_output_grids(params, [case])

    return generate_case(case, params, Path(root) / "data", progress=progress)


def check_output_grids(params: ParamsModel, cases: list[str] | None = None) -> None:
    """Refuse, before anything is solved, the output times of params.yaml that a BOON case's operator cannot
    learn (:func:`physml.experiments.boon.check_output_times`), for ``cases`` (default: every case of the
    matrix). Every entry point that generates calls it: :func:`generate`, ``physml generate`` and both flows."""
    for case in params.matrix.boon.cases if cases is None else cases:
        grid = params.case(case).grid
        if case in params.matrix.boon.cases and grid is not None:
            from physml.experiments.boon import check_output_times

            times = grid[params.profile].resolve_times(pdes.get(case).t_domain)
            check_output_times(case, times, f"cases.{case}.grid.{params.profile} (the params file)")


def _training_settings(params: ParamsModel, case: str, model: str) -> dict[str, Any]:
    """What in params.yaml makes ``case`` × ``model``'s networks: the seed, the model's settings for the case
    (architecture and training), and for ProbConserv the SoftC penalty."""
    settings: dict[str, Any] = {"seed": params.seed, "model": params.model_settings(model, case).model_dump(mode="json")}
    if pdes.get(case).family == "probconserv":
        settings["softc"] = params.models.softc.model_dump(mode="json")
    return settings


def _changes(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Where two json-like values differ: (key path, value in ``a``, value in ``b``) sorted by path
    (``model.train.lr``, ``model.x_range[1]``); a key one side lacks has None there; a bool differs from the
    number it equals in Python (``True == 1``); lists of other lengths differ whole."""
    if isinstance(a, dict) and isinstance(b, dict):
        return sorted(d for k in set(a) | set(b) for d in _changes(a.get(k), b.get(k), f"{path}.{k}" if path else k))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return sorted(d for i, (x, y) in enumerate(zip(a, b)) for d in _changes(x, y, f"{path}[{i}]"))
    return [] if a == b and isinstance(a, bool) == isinstance(b, bool) else [(path or "(all)", a, b)]


def _differences(a: Any, b: Any) -> list[str]:
    """The key paths where two json-like values differ (:func:`_changes`), sorted."""
    return [path for path, _, _ in _changes(a, b)]


def _said(changes: list[tuple[str, Any, Any]]) -> str:
    """``key: old → new`` for each change, JSON-written (absent where a side lacks the key), joined by ``; ``."""
    def value(v: Any) -> str:
        return "absent" if v is None else json.dumps(v)

    return "; ".join(f"{path}: {value(old)} → {value(new)}" for path, old, new in changes)


def _read_json(path: Path, remake: str) -> Any:
    """The JSON in ``path``; a damaged file (cut short, not JSON) → ValueError naming it and ``remake``, the
    command that writes it again."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged (not readable JSON: {exc}); {remake}") from None


def _read_checkpoint(path: Path, remake: str) -> dict[str, Any]:
    """:func:`physml.training.read_checkpoint`; a damaged file (cut short, not a torch archive) → ValueError
    naming it and ``remake``."""
    import pickle

    from physml.training import read_checkpoint

    try:
        return read_checkpoint(path)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path} is damaged (torch cannot read it: {str(exc).splitlines()[0]}); {remake}") from None


def _check_trained_with(case: str, model: str, params: ParamsModel, lay: Layout) -> None:
    """Refuse networks trained with other settings than ``params`` gives now (:data:`TRAINED_WITH`), or whose
    training left no record (not trained by :func:`train`, or it did not finish), naming the keys that differ."""
    from physml.experiments import rerun

    retrain = f"run {rerun('train', case, params.profile, model)}"
    record = lay.models(case, model) / TRAINED_WITH
    if not record.is_file():
        raise ValueError(f"{record} is missing: no record of the settings the networks of {case} × {model} were "
                         f"trained with (not trained, or their training did not finish); {retrain}")
    changes = _changes(_read_json(record, retrain), _training_settings(params, case, model))
    if changes:
        raise ValueError(f"{lay.models(case, model)}: trained with other settings than the params read now give "
                         f"({_said(changes)}); {retrain}")


def _check_inputs(case: str, model: str, params: ParamsModel, lay: Layout, step: str) -> None:
    """Refuse inputs that other settings made, before a stage reads them (a manual ``physml <step>`` after an
    edit of params.yaml, or a stage run out of order): the data must be complete, unchanged since
    generation and made from ``params`` (:func:`physml.data.generate.fingerprint`: the case's config,
    profile, seed and the generation code); the networks constrain and the seed study read must have
    been trained on those data and with the settings ``params`` gives (:func:`_check_trained_with`); the
    predictions evaluate reads must have been made from those data and those networks, which must have been
    trained with those settings. Each refusal names the file and the command that remakes it. ``step``: train,
    constrain, seed-study or evaluate.
    """
    from physml.data import MARKER
    from physml.data.generate import fingerprint
    from physml.experiments import PREDICTIONS_FILE, checkpoints_digest, data_version, rerun

    data = lay.data(case)
    try:
        current = data_version(data, case, params.profile)
    except json.JSONDecodeError as exc:  # its completion marker, cut short
        raise ValueError(f"{data / MARKER} is damaged (not readable JSON: {exc}); run "
                         f"{rerun('generate', case, params.profile, force=True)}") from None
    if current != fingerprint(case, params):
        made = _read_json(data / MARKER, f"run {rerun('generate', case, params.profile, force=True)}")
        now = {"profile": params.profile, "seed": params.seed, "sizes": params.sizes(case).model_dump()}
        changes = _changes({key: made.get(key) for key in now}, now)
        what = (f"{_said(changes)}" if changes else
                f"cases.{case} or the generation code changed since; the record keeps no more to say which")
        raise ValueError(f"{data}: generated with other settings than the params read now give ({what}); "
                         f"run {rerun('generate', case, params.profile)}")
    if step in ("constrain", "seed-study", "evaluate"):
        _check_trained_with(case, model, params, lay)
    if step in ("constrain", "seed-study"):
        for ckpt in sorted(lay.models(case, model).glob("*.pt")):
            made = _read_checkpoint(ckpt, f"run {rerun('train', case, params.profile, model)}").get("data_version")
            if made != current:
                raise ValueError(f"{ckpt}: trained on other data than {data} now holds; run "
                                 f"{rerun('train', case, params.profile, model)}")
    if step == "evaluate":
        import h5py

        predictions = lay.predictions(case, model) / PREDICTIONS_FILE
        if predictions.is_file():
            try:
                with h5py.File(predictions, "r") as fh:
                    made = (fh.attrs.get("data_version"), fh.attrs.get("checkpoints"))
            except OSError as exc:
                raise ValueError(f"{predictions} is damaged (HDF5 cannot read it: {exc}); run "
                                 f"{rerun('constrain', case, params.profile, model)}") from None
            if made != (current, checkpoints_digest(lay.models(case, model))):
                raise ValueError(f"{predictions}: made from other data or other networks than {data} and "
                                 f"{lay.models(case, model)} now hold; run "
                                 f"{rerun('constrain', case, params.profile, model)}")


def train(case: str, model: str, params: ParamsModel, root: Path, progress: bool = True) -> Path:
    """Train every network ``case`` × ``model`` needs (e.g. the plain and the SoftC black box)."""
    check_model(params, case, model)
    keep_large_blocks_on_heap()
    lay = Layout(Path(root), params.profile)
    _check_inputs(case, model, params, lay, "train")
    record = lay.models(case, model) / TRAINED_WITH
    record.unlink(missing_ok=True)  # written again only when every network is trained
    with TRAINING_LOCK:
        out = experiment_module(case).train(case, model, params, lay.data(case), lay.models(case, model),
                                            progress=progress)
    write_json(record, _training_settings(params, case, model))
    return out


def constrain(case: str, model: str, params: ParamsModel, root: Path) -> Path:
    """Predict the test split and apply every constraint of the matrix; writes the predictions file."""
    check_model(params, case, model)
    keep_large_blocks_on_heap()
    lay = Layout(Path(root), params.profile)
    _check_inputs(case, model, params, lay, "constrain")
    with TRAINING_LOCK:  # building its networks draws from the RNGs a training in another thread draws from
        return experiment_module(case).constrain(
            case, model, params, lay.data(case), lay.models(case, model), lay.predictions(case, model)
        )


def evaluate(case: str, model: str, params: ParamsModel, root: Path) -> dict[str, dict[str, float]]:
    """Metrics (``<constraint>.json``) and figures of every constraint for ``case`` × ``model``, then
    :data:`MADE_FROM`, what they were computed from. The metrics are swapped in whole, so an evaluation that
    fails (run by hand or by the flow) leaves the old metrics and their record, and one killed between the two
    leaves the new metrics with the old record, which names the old inputs: their readers refuse them if the
    inputs changed since. (``dvc repro`` removes a stage's outputs before it runs: there a failure leaves none.)"""
    check_model(params, case, model)
    lay = Layout(Path(root), params.profile)
    _check_inputs(case, model, params, lay, "evaluate")
    inputs = made_from(case, model, lay)
    results = experiment_module(case).evaluate(
        case, model, params, lay.data(case), lay.predictions(case, model), lay.metrics(case, model)
    )
    write_json(lay.metrics(case, model) / MADE_FROM, inputs)
    return results


def made_from(case: str, model: str, lay: Layout) -> dict[str, Any]:
    """What ``case`` × ``model``'s metrics are computed from, as the files under ``lay`` are now: ``data``, the
    fingerprint the data's completion marker records (evaluate has checked the files against it:
    :func:`physml.experiments.data_version`); ``networks``, checkpoint file name → sha256; ``predictions``, the
    predictions file's sha256. A part whose files are missing is left out."""
    from physml.experiments import PREDICTIONS_FILE, rerun, sha256_file

    out: dict[str, Any] = {}
    marker = lay.data(case) / "dataset.json"
    if marker.is_file():
        out["data"] = str(_read_json(marker, f"run {rerun('generate', case, lay.profile, force=True)}")["fingerprint"])
    networks = {p.name: sha256_file(p) for p in sorted(lay.models(case, model).glob("*.pt"))}
    if networks:
        out["networks"] = networks
    predictions = lay.predictions(case, model) / PREDICTIONS_FILE
    if predictions.is_file():
        out["predictions"] = sha256_file(predictions)
    return out


def read_made_from(case: str, model: str, lay: Layout) -> dict[str, Any] | None:
    """The :data:`MADE_FROM` record of ``case`` × ``model``'s metrics, None if there is none (evaluated before
    records were kept, or the evaluation did not finish)."""
    from physml.experiments import rerun

    record = lay.metrics(case, model) / MADE_FROM
    return _read_json(record, f"run {rerun('evaluate', case, lay.profile, model)}") if record.is_file() else None


def check_made_from(case: str, model: str, lay: Layout) -> None:
    """Refuse metrics computed from other data, networks or predictions than those on disk now (a retraining
    or a constrain run by hand after the last evaluate), or with no record of what they were computed from;
    parts missing on disk are not compared. The refusal names what differs and the command that remakes the
    metrics."""
    from physml.experiments import rerun

    remake = f"run {rerun('evaluate', case, lay.profile, model)}"
    recorded = read_made_from(case, model, lay)
    if recorded is None:
        raise ValueError(f"{lay.metrics(case, model) / MADE_FROM} is missing: no record of what the metrics of "
                         f"{case} × {model} were computed from (evaluated by an older physml, or the evaluation did "
                         f"not finish); {remake}")
    now = made_from(case, model, lay)
    differ = [part for part in ("data", "networks", "predictions") if part in now and now[part] != recorded.get(part)]
    if differ:
        held = {"data": str(lay.data(case)), "networks": str(lay.models(case, model)),
                "predictions": str(lay.predictions(case, model))}
        raise ValueError(f"{lay.metrics(case, model)}: computed from other {' and '.join(differ)} than "
                         f"{', '.join(held[d] for d in differ)} now hold(s); {remake}")


def seed_study(case: str, model: str, params: ParamsModel, root: Path, progress: bool = True) -> dict[str, Any]:
    """Retrain a case × model with every seed of its matrix group's ``seeds`` and write ``seeds.json`` beside its
    metrics (:func:`physml.experiments.boon.seed_study`: the plain and the BOON FNO, relative L2;
    :func:`physml.experiments.probconserv.seed_study`: the plain black box, MSE of the post hoc constraints);
    needs the main training."""
    check_model(params, case, model)
    keep_large_blocks_on_heap()
    lay = Layout(Path(root), params.profile)
    _check_inputs(case, model, params, lay, "seed-study")
    with TRAINING_LOCK:
        return experiment_module(case).seed_study(case, model, params, lay.data(case), lay.models(case, model),
                                                  lay.seed_models(case, model), lay.seed_study_file(case, model),
                                                  progress=progress)


#: The metric that decides the MLflow ``champion`` per family: (constraint whose run registers the
#: network, metric, higher is better).
CHAMPION_METRIC = {"probconserv": ("probconserv", "mse", False), "operator": ("boon", "rel_l2", False)}


#: The MLflow tag that names what a run logged: sha256 of its inputs (:func:`_result_digest`).
RESULT_TAG = "result_digest"


def _result_digest(*parts: object) -> str:
    """sha256 over ``parts`` (files by their bytes, anything else by its JSON form), in order."""
    import hashlib

    digest = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if isinstance(part, Path) else json.dumps(part, sort_keys=True, default=str).encode()
        digest.update(data + b"\0")
    return digest.hexdigest()


def track(case: str, model: str, params: ParamsModel, root: Path, only_missing: bool = False) -> dict[str, str]:
    """Log every constraint's metrics and figures of ``case`` × ``model`` to MLflow.

    One run per model × constraint in the experiment of ``case``, tagged with the dataset's version
    (the md5 DVC records for its data folder, computed from the files: :func:`_dataset_version`) and with
    :data:`RESULT_TAG`, a digest of what it logs (metrics file, checkpoints, settings, dataset version). The
    run of the family's headline constraint also logs the network it used as a state dict with the
    configuration it is built from (so :func:`physml.tracking.load_model` rebuilds it and `mlflow models serve`
    serves it, :mod:`physml.serving`), registers
    it as a new version of ``physml-<case>-<model>-<profile>`` and moves the ``champion`` alias to it only if
    its evaluation metric beats the current champion's. ``only_missing``: skip a constraint whose result a
    finished run of this model and constraint already holds (same digest), so that results made elsewhere,
    e.g. committed ones that ``dvc repro`` finds up to date, are logged once; a found headline run is still
    made a registered version (if its registration failed) and offered for champion, so an interrupted
    promotion is finished, and given the network's configuration if it was logged without one. Params: the
    seed, the model's settings in params.yaml, and ``network.*``, the configuration the network was built with
    (e.g. the FNO's modes per grid axis: ``modes: 8`` in params.yaml builds [8, 8] on a 1-D + time case).
    Returns constraint → run id (logged now or found).
    """

    from physml import tracking
    from physml.experiments import rerun

    check_model(params, case, model)
    lay = Layout(Path(root), params.profile)
    retrain, reevaluate = (f"run {rerun(step, case, params.profile, model)}" for step in ("train", "evaluate"))
    problem = pdes.get(case)
    headline, metric, higher = CHAMPION_METRIC[problem.family]
    version = _dataset_version(case, params, root)
    project = tracking.store_project(root)
    uri = tracking.tracking_uri(project=project)  # PHYSML_TRACKING_URI / MLFLOW_TRACKING_URI win
    group = _group(params, case)
    settings = params.model_settings(model, case).model_dump()
    figures = {p.stem: p for p in sorted((lay.metrics(case, model) / "figures").glob("*.png"))}
    checkpoints = _result_digest(*sorted(lay.models(case, model).glob("*.pt")))
    headline_file = lay.models(case, model) / ("boon.pt" if problem.family == "operator" else "plain.pt")
    network: dict[str, Any] | None = None  # read from the checkpoint once something is logged
    run_ids: dict[str, str] = {}
    for constraint in group.constraints:
        metrics_file = lay.metrics(case, model) / f"{constraint}.json"
        if not metrics_file.is_file():
            raise ValueError(f"{metrics_file} is missing: run the evaluate stage for {case} × {model} first")
        digest = _result_digest(metrics_file, checkpoints, params.profile, params.seed, settings, version)
        with tracking.result_lock(uri) if only_missing else nullcontext():  # look, then log: once
            found = (tracking.find_run(case, RESULT_TAG, digest, uri=uri, model=model, constraint=constraint)
                     if only_missing else None)
            if found is not None:
                run_ids[constraint] = found
                registered = (tracking.registered_version(case, model, params.profile, found, uri=uri)
                              if constraint == headline and tracking.is_main_process() else None)
                if registered is not None:
                    # a run logged before versions carried their network's configuration gets it now (the digest
                    # holds the checkpoints, so this checkpoint is the one the run logged), so load_model serves it
                    config = _read_checkpoint(headline_file, retrain)["model_config"]
                    tracking.attach_model_config(found, config, uri=uri)
                    tracking.attach_pyfunc(found, config, _serving_defaults(params, case, model), uri=uri)
                    name = tracking.registered_model_name(case, model, params.profile)
                    tracking.promote_if_better(name, registered, metric, higher_is_better=higher, uri=uri)
                continue
            if network is None:  # about to log params.yaml's settings as the networks': they must be theirs, and
                _check_trained_with(case, model, params, lay)  # the metrics must be those networks'
                check_made_from(case, model, lay)
                built = _read_checkpoint(lay.models(case, model) / "plain.pt", retrain)["model_config"]
                network = {k: v for k, v in built.items() if k not in ("case", "variant")}
            state = config = None
            if constraint == headline:
                ckpt = _read_checkpoint(headline_file, retrain)
                state, config = ckpt["model_state"], ckpt["model_config"]
            record = tracking.log_experiment(
                case, model, constraint, params.profile,
                params={"seed": params.seed, **settings, "network": network},
                metrics=_read_json(metrics_file, reevaluate),
                figures=figures if constraint == headline else None,
                state_dict=state,
                model_config=config,
                serving=_serving_defaults(params, case, model),
                dataset_version=version,
                tags={RESULT_TAG: digest},
                uri=uri,
                project=project,
            )
            if record is None:
                continue
            run_ids[constraint] = record.run_id
            if record.model_version is not None:
                tracking.promote_if_better(record.model_name, record.model_version, metric, higher_is_better=higher,
                                           uri=uri)
    return run_ids


def _serving_defaults(params: ParamsModel, case: str, model: str) -> dict[str, int]:
    """The defaults of a registered network's pyfunc ``predict`` (:mod:`physml.serving`): the seed and the ANP's
    latent draws the constrain stage predicted with, so a served call on the test split gives its numbers."""
    from physml.experiments.probconserv import latent_draws

    return {"n_samples": latent_draws(params, case, model), "seed": params.seed}


def _dataset_version(case: str, params: ParamsModel, root: Path) -> str:
    """The md5 DVC records (or would record) for ``case``'s data folder, from the files on disk
    (:func:`physml.tracking.dataset_version`), else the generator's fingerprint."""
    from physml import tracking
    from physml.experiments import data_version

    data = Layout(Path(root), params.profile).data(case)
    version = tracking.dataset_version(data)
    return version if version is not None else data_version(data, case, params.profile)


def track_seed_study(case: str, model: str, params: ParamsModel, root: Path, only_missing: bool = False) -> str | None:
    """Log the seed study of ``case`` × ``model`` as the MLflow run ``<model>-seed_study`` of ``physml-<case>``.

    Metrics, with e the study's metric (BOON ``rel_l2``, ProbConserv ``mse``; :data:`physml.report.STUDY_METRIC`):
    ``<constraint>.<e>`` at step i (the i-th seed), ``<constraint>.<e>_mean`` and ``<constraint>.<e>_spread``,
    ``boon_ahead`` or ``probconserv_ahead``, and the paired differences of :func:`physml.report.study_differences`
    as ``<name>.mean`` / ``.se`` (BOON − the FNO, BOON − the ``overwrite`` control, post hoc BOON − the control;
    ProbConserv − the plain black box); params: the model's settings and the seeds; figure ``seed_study.png``
    (the report's seed figure for this case alone). No network is registered (the registry holds the main
    training's). Tagged with :data:`RESULT_TAG` (seeds.json, settings, dataset version); ``only_missing`` as
    :func:`track`. Returns the run id (None off rank 0).
    """
    import tempfile

    from physml import tracking
    from physml.experiments import rerun
    from physml.report import STUDY_METRIC, seed_study_figure, study_differences

    check_model(params, case, model)
    group = group_name(case)
    metric = STUDY_METRIC[group][0]
    path = Layout(Path(root), params.profile).seed_study_file(case, model)
    if not path.is_file():
        raise ValueError(f"{path} is missing: run the seed study for {case} × {model} first")
    study = _read_json(path, f"run {rerun('seed-study', case, params.profile, model)}")
    settings = params.model_settings(model, case).model_dump()
    version = _dataset_version(case, params, root)
    digest = _result_digest(path, params.profile, params.seed, settings, version)
    project = tracking.store_project(root)
    uri = tracking.tracking_uri(project=project)
    with tracking.result_lock(uri) if only_missing else nullcontext():  # look, then log: once
        found = (tracking.find_run(case, RESULT_TAG, digest, uri=uri, model=model, constraint="seed_study")
                 if only_missing else None)
        if found is not None:
            return found
        with tracking.start_run(case, model, "seed_study", params.profile, dataset_version=version,
                                tags={RESULT_TAG: digest}, uri=uri, project=project) as run:
            if isinstance(run, tracking.SilentRun):
                return None
            run.log_params({"seed": params.seed, "seeds": ",".join(map(str, study["seeds"])), **settings})
            ahead = {k: study[k] for k in ("boon_ahead", "probconserv_ahead") if k in study}
            run.log_metrics({c: {f"{metric}_mean": study[f"{metric}_mean"][c],
                                 f"{metric}_spread": study[f"{metric}_spread"][c]} for c in study[metric]} | ahead)
            for i in range(len(study["seeds"])):
                run.log_metrics({c: {metric: values[i]} for c, values in study[metric].items()}, step=i)
            run.log_metrics({name: {"mean": d.mean, "se": d.se}
                             for name, d in study_differences(study, group).items()})
            with tempfile.TemporaryDirectory() as tmp:
                figure = seed_study_figure(params, {(case, model): study}, Path(tmp) / "seed_study.png", group)
                run.log_figure(figure, "seed_study")
            return run.run_id


def track_results(params: ParamsModel, root: Path, case: str | None = None,
                  model: str | None = None) -> dict[str, dict[str, str]]:
    """Log to MLflow every finished result of the active profile that no run holds yet (:func:`track` and
    :func:`track_seed_study` with ``only_missing``): each case × model of the matrix (or only ``case`` /
    ``model``) whose metrics files all exist, and its seed study where there is one. A fresh clone's
    committed results, which ``dvc repro`` finds up to date and so does not evaluate, reach MLflow this way;
    a second call logs nothing. A pair or seed study that :func:`track` or :func:`track_seed_study` refuses
    (metrics of other networks, no data or networks here) does not stop the others: the refusals are raised
    together at the end, as one ValueError (:class:`TrackingRefused`). Metrics without any data or networks
    of the profile under ``root`` (a fresh clone) → ValueError at once, naming `dvc pull` and `dvc repro`.
    Without ``case`` and ``model`` also the profile's report, if written (:func:`track_report`). Returns
    ``"case/model"`` → constraint (or ``seed_study``) → run id, for the pairs with results only, and
    ``"report"`` → ``{"report": run id}``."""
    pairs = list(dict.fromkeys((c, m) for c, m, _ in params.experiments()))
    for field, value, allowed in (("case", case, [c for c, _ in pairs]), ("model", model, [m for _, m in pairs])):
        if value is not None and value not in allowed:
            raise ValueError(f"matrix: {field} {value!r} is in no experiment group; configured: "
                             f"{', '.join(dict.fromkeys(allowed))}")
    if case is not None and model is not None and (case, model) not in pairs:
        raise ValueError(f"matrix: {model!r} is not configured for {case}; its models: "
                         f"{', '.join(m for c, m in pairs if c == case)}")
    lay = Layout(Path(root), params.profile)
    c, m = pairs[0]
    absent = [name for name, folder in (("data", lay.data(c).parent), ("networks", lay.models(c, m).parent.parent))
              if not folder.is_dir()]
    if absent and any(lay.metrics(c, m).is_dir() for c, m in pairs):
        raise ValueError(f"no {' and no '.join(absent)} of profile {params.profile} under {root}, only metrics: a "
                         "fresh clone holds the committed metrics, not the data and networks they were computed "
                         "from, which tracking checks and logs with them; `dvc pull` fetches what dvc.lock records "
                         "from the DVC remote, `dvc repro` makes them again")
    out: dict[str, dict[str, str]] = {}
    refused: list[str] = []
    for c, m in pairs:
        if (case is not None and c != case) or (model is not None and m != model):
            continue
        if not all((lay.metrics(c, m) / f"{k}.json").is_file() for k in _group(params, c).constraints):
            continue
        try:
            runs = track(c, m, params, root, only_missing=True)
        except ValueError as exc:  # e.g. metrics of other networks: the other pairs are still logged
            refused.append(f"{c}/{m}: {exc}")
            runs = {}
        if lay.seed_study_file(c, m).is_file():  # its own file and digest: logged whatever the pair's metrics
            try:
                study = track_seed_study(c, m, params, root, only_missing=True)
            except ValueError as exc:  # e.g. no data here: refused with the pair's, the other pairs still go on
                refused.append(f"{c}/{m} seed study: {exc}")
                study = None
            if study is not None:
                runs["seed_study"] = study
        if runs:
            out[f"{c}/{m}"] = runs
    if case is None and model is None and (lay.reports() / "index.md").is_file():
        try:
            report_run = track_report(params, root, only_missing=True)
        except ValueError as exc:
            refused.append(f"report: {exc}")
            report_run = None
        if report_run is not None:
            out["report"] = {"report": report_run}
    if refused:
        others = " (the others were)" if out else ""
        raise TrackingRefused(f"{len(refused)} result(s) not logged{others}:\n  " + "\n  ".join(refused), out)
    return out


class TrackingRefused(ValueError):
    """:func:`track_results` refused some pairs' results; ``logged`` is what it returns for the others."""

    def __init__(self, message: str, logged: dict[str, dict[str, str]]) -> None:
        super().__init__(message)
        self.logged = logged


def track_report(params: ParamsModel, root: Path, only_missing: bool = False) -> str | None:
    """Log the active profile's report folder (``reports/<profile>/``) to MLflow
    (:func:`physml.tracking.log_report`), tagged with :data:`RESULT_TAG`, a digest of its files' names and bytes;
    ``only_missing``: return the run that already holds these bytes instead of logging them again (the report
    holds no clock time, so the same results give the same digest). Returns the run id (None off rank 0).
    No report → ValueError."""
    from physml import tracking

    folder = Layout(Path(root), params.profile).reports()
    if not (folder / "index.md").is_file():
        raise ValueError(f"{folder / 'index.md'} is missing: run `physml report --profile {params.profile}` first")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = _result_digest(*[part for p in files for part in (p.relative_to(folder).as_posix(), p)])
    project = tracking.store_project(root)
    uri = tracking.tracking_uri(project=project)
    with tracking.result_lock(uri) if only_missing else nullcontext():  # look, then log: once
        found = tracking.find_report_run(RESULT_TAG, digest, uri=uri, profile=params.profile) if only_missing else None
        if found is not None:
            return found
        return tracking.log_report(folder, params.profile, tags={RESULT_TAG: digest}, uri=uri, project=project)


def report(params: ParamsModel, root: Path) -> Path:
    """Write the results index for the active profile (see :func:`physml.report.write_report`); a root
    without any metrics file of the profile (a mistyped ``--root``, or nothing evaluated yet), or metrics
    computed from other data, networks or predictions than those on disk (:func:`check_made_from`: a
    retraining not yet evaluated) → ValueError instead of a report whose versions do not match its numbers."""
    from physml.report import collect_metrics, write_report

    metrics = collect_metrics(params, Path(root))
    if not metrics:
        raise ValueError(f"{Path(root) / 'metrics' / params.profile}: no metrics file of the {params.profile} profile's "
                         "matrix; run the evaluate stages first (or check --root)")
    lay = Layout(Path(root), params.profile)
    for case, model in dict.fromkeys((c, m) for c, m, _ in metrics):
        if read_made_from(case, model, lay) is not None:  # results evaluated before records were kept: "not recorded"
            check_made_from(case, model, lay)
    return write_report(params, Path(root))
