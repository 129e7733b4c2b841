"""The pipeline as users run it: the Prefect flow end to end on a tiny matrix, its input-keyed cache,
MLflow records, the report, and what happens when stages are killed or run twice at once."""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from physml.config import load_params
from physml.stages import Layout

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def _env(root: Path) -> dict[str, str]:
    """The environment of a stage or flow subprocess: this project's stores under ``root``, and no Prefect
    server or profile of the user's shell (a flow run would otherwise go to that server)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PHYSML_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        PHYSML_ARTIFACT_ROOT=str(root / "mlartifacts"),
        PHYSML_PROJECT_DIR=str(root),
        PREFECT_HOME=str(root / ".prefect"),
        MLFLOW_DISABLE_TELEMETRY="true",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    return env


def _physml(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "physml"), *args, "--params", str(root / "params.yaml"), "--root", str(root)]
                          if args[0] != "generate" else
                          [str(BIN / "physml"), *args, "--params", str(root / "params.yaml"), "--out", str(root / "data")],
                          cwd=root, env=_env(root), capture_output=True, text=True, check=check, timeout=600)


def _mlflow_runs(root: Path, case: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"physml-{case}")
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def test_flow_code_deps_follow_dvc_yaml() -> None:
    from flows.pipeline import CODE_ROOT, code_files, digest_code

    boon = code_files("train_boon", "stokes2", "fno")
    assert CODE_ROOT / "physml/layers" in boon and CODE_ROOT / "physml/models/boon.py" in boon
    anp = code_files("train_probconserv", "heat", "anp")
    assert CODE_ROOT / "physml/models/anp.py" in anp and CODE_ROOT / "physml/models/boon.py" not in anp
    assert CODE_ROOT / "physml/pdes/stefan.py" in code_files("generate", "stefan")
    assert all(p.is_relative_to(CODE_ROOT / "physml") for p in boon + anp)
    with pytest.raises(ValueError, match="stage must be one of"):
        code_files("train", "heat", "anp")
    # every task the flow submits for the committed params.yaml has existing code deps
    params = load_params(REPO / "params.yaml")
    for case, model, _ in params.experiments():
        family = "boon" if case in params.matrix.boon.cases else "probconserv"
        stages = ["generate", f"train_{family}", f"constrain_{family}", f"evaluate_{family}"]
        for stage in [*stages, f"seed_study_{family}"]:
            assert len(digest_code(code_files(stage, case, model))) == 64


def test_dvc_plots_draw_every_boon_case_over_time() -> None:
    """dvc.yaml's top-level plots hold one chart per matrix.boon case × model, from the per_time.json records
    that evaluate writes, with one line per constraint of matrix.boon.constraints."""
    import yaml

    params = load_params(REPO / "params.yaml")
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    charts = {next(iter(p)): next(iter(p.values())) for p in plots}
    want = {f"metrics/${{profile}}/{case}/{model}/per_time.json"
            for case in params.matrix.boon.cases for model in params.matrix.boon.models}
    assert set(charts) == want
    assert all(c["x"] == "t" and c["y"] == list(params.matrix.boon.constraints) for c in charts.values())


def test_code_digest_follows_content_not_modification_time(tmp_path: Path) -> None:
    from flows.pipeline import digest_code

    pkg = tmp_path / "physml" / "layers"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "notes.txt").write_text("not code\n")
    paths = [tmp_path / "physml" / "layers"]
    first = digest_code(paths, code_root=tmp_path)
    os.utime(pkg / "a.py", ns=(1, 1))
    (pkg / "notes.txt").write_text("changed, still not code\n")
    assert digest_code(paths, code_root=tmp_path) == first
    (pkg / "a.py").write_text("x = 2\n")
    assert digest_code(paths, code_root=tmp_path) != first
    with pytest.raises(FileNotFoundError, match="does not exist"):
        digest_code([tmp_path / "physml" / "gone.py"], code_root=tmp_path)


# Runs the real flow (a real ephemeral Prefect) with each physml stage replaced by a stub that records its
# call and writes outputs naming the settings they were made with, so that the cache decisions are cheap to
# watch. argv: params file, root, a JSON list of steps; each step edits params.yaml (a dotted key and its
# value), deletes a file or folder, names the stage calls that are to fail (``fail``), or runs the flow; prints
# one JSON list of the stages each run called (a failed run ends in ``["failed", message]``) and one of the
# tracking and report calls each run made.
_STUB_FLOW = r"""
import json, shutil, sys
from pathlib import Path
from typing import Any
import yaml
from physml import stages
import flows.pipeline as fp

CALLS = []
TRACKED = []

def _fail_if_asked(root, *call):  # raise where <root>/fail.json lists this call, as a diverged training would
    asked = Path(root) / "fail.json"
    if asked.is_file() and list(call) in json.loads(asked.read_text()):
        raise FloatingPointError(f"{' '.join(call)}: asked to fail; run `physml {call[0]} --case {call[1]}`")

def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, sort_keys=True))

def _lay(params, root):
    return stages.Layout(Path(root), params.profile)

def generate(case, params, root, progress=True):
    CALLS.append(["generate", case])
    _write(_lay(params, root).data(case) / "dataset.json", params.case(case).model_dump(mode="json"))
    return _lay(params, root).data(case)

def train(case, model, params, root, progress=True):
    CALLS.append(["train", case, model])
    _fail_if_asked(root, "train", case, model)
    _write(_lay(params, root).models(case, model) / "train_summary.json",
           {"settings": params.model_settings(model, case).model_dump(mode="json")})
    return _lay(params, root).models(case, model)

def constrain(case, model, params, root):
    CALLS.append(["constrain", case, model])
    _fail_if_asked(root, "constrain", case, model)
    made_from = json.loads((_lay(params, root).models(case, model) / "train_summary.json").read_text())
    _write(_lay(params, root).predictions(case, model) / "pred.json", made_from)
    return _lay(params, root).predictions(case, model)

def evaluate(case, model, params, root):
    CALLS.append(["evaluate", case, model])
    made_from = json.loads((_lay(params, root).predictions(case, model) / "pred.json").read_text())
    for constraint in stages._group(params, case).constraints:
        _write(_lay(params, root).metrics(case, model) / f"{constraint}.json", made_from)
    _write(_lay(params, root).metrics(case, model) / "figures" / "fig.json", {})
    if case in params.matrix.boon.cases:
        _write(_lay(params, root).metrics(case, model) / "per_time.json", made_from)
    _write(_lay(params, root).metrics(case, model) / "made_from.json", made_from)

def track(case, model, params, root, only_missing=False):
    CALLS.append(["track", case, model])
    return {}

def seed_study(case, model, params, root, progress=True):
    CALLS.append(["seed-study", case, model])
    group = "boon" if case in params.matrix.boon.cases else "probconserv"
    _write(_lay(params, root).seed_study_file(case, model), {"seeds": params.study_seeds(group)})
    _write(_lay(params, root).seed_models(case, model) / "seeds.json", {})

def track_seed_study(case, model, params, root, only_missing=False):
    CALLS.append(["track-seed-study", case, model])
    return "run"

def report(params, root):
    CALLS.append(["report"])
    return _lay(params, root).reports()

def track_report(params, root, only_missing=False):
    return "run"

for name in ("generate", "train", "constrain", "evaluate", "track", "seed_study", "track_seed_study", "report",
             "track_report"):
    setattr(stages, name, globals()[name])

params_file, root, steps = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
out = []
for step in steps:
    if step[0] == "set":
        data = yaml.safe_load(params_file.read_text())
        *parents, leaf = step[1].split(".")
        node = data
        for k in parents:
            node = node[k]
        node[leaf] = step[2]
        params_file.write_text(yaml.safe_dump(data, sort_keys=False))
    elif step[0] == "delete":
        target = root / step[1]
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    elif step[0] == "fail":
        (root / "fail.json").write_text(json.dumps(step[1]))
    else:
        CALLS.clear()
        try:
            fp.pipeline(params_path=str(params_file), root=str(root), profile=step[1] if len(step) > 1 else None)
        except fp.PipelineFailed as exc:
            CALLS.append(["failed", str(exc)])
        service = ("track", "track-seed-study", "report")  # uncached: every run asks the tracking store
        out.append([c for c in CALLS if c[0] not in service])
        TRACKED.append(sorted(c for c in CALLS if c[0] in service))
print("TRACKED", json.dumps(TRACKED))
print("CALLS", json.dumps(out))
"""


@pytest.mark.services
def test_flow_cache_serves_only_outputs_its_stamp_vouches_for(tiny_params_file: Path, tmp_path: Path) -> None:
    """A cached task is skipped only when the files on disk are the ones its inputs made: settings changed
    and changed back retrain (the second change's files are on disk), a deleted metrics file (or per-time
    record) is rebuilt though its folder remains, a value only another stage reads recomputes nothing here, and
    another checkout with the same settings computes its own outputs. Tracking runs every time; a failed stage
    stops what reads its outputs and fails the run without a report."""
    root = tiny_params_file.parent

    def runs(params_file: Path, project: Path, *steps: list) -> list[list[list[str]]]:
        return both(params_file, project, *steps)[0]

    def both(params_file: Path, project: Path, *steps: list) -> tuple[list, list]:
        proc = subprocess.run([sys.executable, "-c", _STUB_FLOW, str(params_file), str(project), json.dumps(steps)],
                              cwd=REPO, env=_env(project), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        found = {}
        for name in ("CALLS", "TRACKED"):
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith(f"{name} ")][-1]
            found[name] = json.loads(line[len(name) + 1:])
        return found["CALLS"], found["TRACKED"]

    epochs = "models.anp.quick.train.epochs"
    calls, tracked = both(
        tiny_params_file, root,
        ["run"], ["run"], ["run", "quick"],
        ["set", epochs, 2], ["run"],
        ["set", epochs, 1], ["run"],
        ["set", "models.softc.penalty", 7.0], ["run"],
        ["set", "matrix.boon.seeds.quick", 3], ["run"],
        ["delete", "metrics/quick/stokes2/fno/none.json"], ["run"],
        ["delete", "metrics/quick/stokes2/fno/per_time.json"], ["run"],
        ["delete", "metrics/quick/stokes2/fno/made_from.json"], ["run"],
    )
    first, again, named, changed, reverted, softc, seeds, deleted, per_time, made_from = calls
    assert ["train", "heat", "anp"] in first and ["seed-study", "stokes2", "fno"] in first
    assert ["seed-study", "heat", "anp"] in first and ["seed-study", "heat", "ensemble"] in first
    assert again == [] and named == []  # the file's profile given by name: the same work, the same cache entries
    anp = sorted([["train", "heat", "anp"], ["constrain", "heat", "anp"], ["seed-study", "heat", "anp"],
                  ["evaluate", "heat", "anp"]])
    assert sorted(changed) == anp and changed[0] == ["train", "heat", "anp"]
    assert sorted(reverted) == anp  # before: served from the first run's cache entry, with epochs=2's files on disk
    summary = json.loads((root / "models/quick/heat/anp/train_summary.json").read_text())
    assert summary["settings"]["train"]["epochs"] == 1
    assert all(call[1] == "heat" and call[0] != "generate" for call in softc) and len(softc) == 8
    assert seeds == [["seed-study", "stokes2", "fno"]]
    assert deleted == [["evaluate", "stokes2", "fno"]] and per_time == deleted and made_from == deleted
    assert (root / "metrics/quick/stokes2/fno/none.json").is_file()

    # tracking is not cached: every run asks the store for each pair's and study's runs (a new or lost store
    # gets them back), and a complete run writes the report
    pairs = sorted({tuple(c[1:]) for c in first if c[0] == "evaluate"})
    complete = sorted([[step, *pair] for pair in pairs for step in ("track", "track-seed-study")] + [["report"]])
    assert len(pairs) == 3 and all(sorted(t) == complete for t in tracked)

    # a failed stage: what reads its outputs does not run (no evaluate served from the cache over the old
    # networks' predictions), the rest goes on, the run fails naming it, and no report is written from a mix of
    # new and old results; the next run recomputes from the failed stage on
    (failed_constrain, after_constrain, failed_train, after_train), tracked = both(
        tiny_params_file, root,
        ["fail", [["constrain", "heat", "anp"]]], ["set", epochs, 3], ["run"],
        ["fail", []], ["run"],
        ["fail", [["train", "heat", "anp"]]], ["set", epochs, 4], ["run"],
        ["fail", []], ["run"],
    )
    *work, (flag, message) = failed_constrain
    assert flag == "failed" and "constrain heat/anp: FloatingPointError" in message and "1 task(s)" in message
    assert sorted(work) == [["constrain", "heat", "anp"], ["seed-study", "heat", "anp"], ["train", "heat", "anp"]]
    assert ["track", "heat", "anp"] not in tracked[0] and ["report"] not in tracked[0]
    assert ["track-seed-study", "heat", "anp"] in tracked[0]
    assert sorted(after_constrain) == [["constrain", "heat", "anp"], ["evaluate", "heat", "anp"]]
    *work, (flag, message) = failed_train
    assert work == [["train", "heat", "anp"]] and "train heat/anp: FloatingPointError" in message
    # the command it suggests remakes it here, from this params file (the flow runs from the repository)
    assert f"run `physml train --case heat --params {tiny_params_file.resolve()} --root {root.resolve()}`" in message
    assert not any(c[1:] == ["heat", "anp"] for c in tracked[2] if c[0] != "report") and ["report"] not in tracked[2]
    assert sorted(after_train) == anp and sorted(tracked[1]) == sorted(tracked[3]) == complete

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(tiny_params_file, other / "params.yaml")
    (elsewhere,) = runs(other / "params.yaml", other, ["run"])
    assert sorted(map(tuple, elsewhere)) == sorted(map(tuple, first))


@pytest.mark.services
def test_prefect_pipeline_end_to_end_cached_and_rebuilt(tiny_params_file: Path) -> None:
    root = tiny_params_file.parent
    code = root / "code"  # the flow runs from a copy of the project's code, so that a code file can change
    for rel in ("flows", "physml"):
        shutil.copytree(REPO / rel, code / rel, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "dvc.yaml", code / "dvc.yaml")
    script = (
        "import json, sys; from flows.pipeline import pipeline; "
        f"out = pipeline(params_path={str(tiny_params_file)!r}, root={str(root)!r}); print('RESULT', json.dumps(out))"
    )

    def run(prefect_home: Path | None = None) -> dict:
        env = _env(root) if prefect_home is None else {**_env(root), "PREFECT_HOME": str(prefect_home)}
        proc = subprocess.run([sys.executable, "-c", script], cwd=code, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        return json.loads(line[len("RESULT "):])

    params = load_params(tiny_params_file)
    lay = Layout(root, params.profile)
    first = run()
    report = Path(first["report"])
    assert report.is_file() and "ProbConserv" in report.read_text() and "BOON" in report.read_text()
    (report_run,) = _mlflow_runs(root, "reports")  # the report outlives the checkout it was written in
    assert first["report_run"] == report_run.info.run_id and report_run.data.tags["profile"] == "quick"
    assert "### Seed study (2 seeds" in report.read_text()
    study = json.loads(lay.seed_study_file("stokes2", "fno").read_text())
    assert study["seeds"] == params.study_seeds("boon") and len(study["rel_l2"]["boon"]) == 2
    assert "### Seed study of the black boxes (2 seeds" in report.read_text().split("## BOON")[0]
    for model in params.matrix.probconserv.models:
        study = json.loads(lay.seed_study_file("heat", model).read_text())
        assert study["seeds"] == params.study_seeds("probconserv") and len(study["mse"]["probconserv"]) == 2
        assert "probconserv_nonnegative" not in study["mse"]  # heat's u changes sign: it is the mixture there
        none = json.loads((lay.metrics("heat", model) / "none.json").read_text())
        assert study["mse"]["none"][0] == none["mse"]  # the project seed's network: evaluate's number
    for case, model, constraint in params.experiments():
        metrics = json.loads((lay.metrics(case, model) / f"{constraint}.json").read_text())
        assert metrics and all(isinstance(v, float) for v in metrics.values()), (case, model, constraint)
    # one MLflow run per model × constraint, registered models with a champion
    n_heat = len(params.matrix.probconserv.models) * (len(params.matrix.probconserv.constraints) + 1)
    assert n_heat == 16 and len(_mlflow_runs(root, "heat")) == n_heat  # + each model's seed study
    n_boon = len(params.matrix.boon.constraints)
    assert len(_mlflow_runs(root, "stokes2")) == n_boon + 1  # one run per constraint + the seed study
    assert set(first["seed_study_runs"]) == {"stokes2/fno", "heat/anp", "heat/ensemble"}
    (pc_study,) = [r for r in _mlflow_runs(root, "heat") if r.data.tags["mlflow.runName"] == "anp-seed_study"]
    assert {"none.mse_mean", "probconserv.mse_spread", "probconserv_ahead",
            "probconserv_minus_none.mean", "probconserv_minus_none.se"} <= set(pc_study.data.metrics)
    from physml import tracking

    for case, model in (("heat", "anp"), ("heat", "ensemble"), ("stokes2", "fno")):
        name = tracking.registered_model_name(case, model, "quick")
        assert tracking.champion_version(name, uri=f"sqlite:///{root / 'mlflow.db'}") == "1"
    ckpt = lay.models("heat", "anp") / "plain.pt"
    stamp = ckpt.stat().st_mtime_ns

    # everything cached: no retraining, no new MLflow runs, also from a fresh Prefect home (a new pod that
    # mounts the same root): the cached results live under the root, beside the stamps
    fresh_home = root / "another-prefect-home"
    outputs = [p for folder in ("data", "models", "predictions", "metrics") for p in (root / folder).rglob("*")
               if p.is_file()]
    written = {p: p.stat().st_mtime_ns for p in outputs}
    second = run(prefect_home=fresh_home)
    assert {p: p.stat().st_mtime_ns for p in outputs} == written  # not one file written again (ckpt included)
    assert fresh_home.is_dir() and not (fresh_home / "storage").exists()
    assert list((root / ".physml-flow" / "results").iterdir())
    assert len(_mlflow_runs(root, "heat")) == n_heat
    assert second["runs"] == first["runs"]
    assert second["report_run"] == first["report_run"] and len(_mlflow_runs(root, "reports")) == 1  # same bytes

    # a deleted output is rebuilt, and only what depends on it is recomputed; the same results are not logged
    # twice (the evaluate task tracks with only_missing, so that a retry after a tracking failure does not either)
    def mtime(path: Path) -> int:
        return path.stat().st_mtime_ns

    boon_metrics, heat_predictions = lay.metrics("stokes2", "fno") / "boon.json", lay.predictions("heat", "anp") / "predictions.h5"
    evaluated, heat_predicted = mtime(boon_metrics), mtime(heat_predictions)
    shutil.rmtree(lay.predictions("stokes2", "fno"))
    rebuilt = run()
    assert (lay.predictions("stokes2", "fno")).is_dir()
    assert ckpt.stat().st_mtime_ns == stamp and mtime(heat_predictions) == heat_predicted
    assert mtime(boon_metrics) > evaluated  # evaluate re-ran on the rebuilt predictions
    assert len(_mlflow_runs(root, "stokes2")) == n_boon + 1 and rebuilt["runs"] == first["runs"]
    assert len(_mlflow_runs(root, "heat")) == n_heat

    # a changed code file re-runs the tasks whose dvc.yaml stage lists it: the metrics (the posterior draws) are
    # in ProbConserv's constrain, so heat's predictions and metrics are rebuilt, its training and BOON's
    # predictions are not (the Gaussian update would retrain: the trained twin's loss is in gaussian.py too)
    stokes_predicted = mtime(lay.predictions("stokes2", "fno") / "predictions.h5")
    metrics_code = code / "physml" / "metrics.py"
    metrics_code.write_text(metrics_code.read_text() + "# edited\n")
    third = run()
    assert ckpt.stat().st_mtime_ns == stamp
    assert mtime(heat_predictions) > heat_predicted
    assert mtime(lay.predictions("stokes2", "fno") / "predictions.h5") == stokes_predicted
    assert len(_mlflow_runs(root, "heat")) == n_heat and third["runs"] == first["runs"]  # the same numbers: found


@pytest.mark.services
def test_killed_training_leaves_no_partial_output_and_next_run_completes(tiny_params_file: Path) -> None:
    root = tiny_params_file.parent
    data = yaml.safe_load(tiny_params_file.read_text())
    data["models"]["fno"]["quick"]["train"]["epochs"] = 60
    tiny_params_file.write_text(yaml.safe_dump(data, sort_keys=False))
    _physml(root, "generate", "--case", "stokes2", "--no-progress")
    out = Layout(root, "quick").models("stokes2", "fno")
    summary = out / "train_summary.json"

    def first_file() -> bool:  # the first checkpoint (or its temporary) is being written
        return out.is_dir() and any(out.iterdir())

    def plain_done() -> bool:  # the plain network is saved; the BOON one is training
        return (out / "plain.pt").is_file()

    from physml.training import read_checkpoint

    for ready in (first_file, plain_done):
        proc = subprocess.Popen([str(BIN / "physml"), "train", "--case", "stokes2", "--model", "fno", "--no-progress",
                                 "--params", str(tiny_params_file), "--root", str(root)],
                                cwd=root, env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not ready():  # poll rather than sleep a fixed time: the kill must land while training runs
            assert proc.poll() is None, f"training ended before {ready.__name__}"
            assert time.monotonic() < deadline, f"{ready.__name__} never happened"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # killed mid-run: no summary (the stage's completion marker); every checkpoint left is whole
        assert not summary.exists(), ready.__name__
        for ckpt in out.glob("*.pt"):
            assert "model_state" in read_checkpoint(ckpt)
    assert (out / "plain.pt").is_file()  # the second kill hit the BOON network's training (no summary yet)
    done = _physml(root, "train", "--case", "stokes2", "--model", "fno", "--no-progress")
    assert done.returncode == 0
    assert (out / "train_summary.json").is_file()
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert leftovers == [], leftovers


@pytest.mark.services
def test_two_runs_at_once_lose_no_mlflow_record_and_corrupt_no_output(tiny_params_file: Path) -> None:
    root = tiny_params_file.parent
    _physml(root, "generate", "--case", "stokes2", "--no-progress")
    _physml(root, "train", "--case", "stokes2", "--model", "fno", "--no-progress")
    _physml(root, "constrain", "--case", "stokes2", "--model", "fno")
    procs = [subprocess.Popen([str(BIN / "physml"), "evaluate", "--case", "stokes2", "--model", "fno",
                               "--params", str(tiny_params_file), "--root", str(root)],
                              cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    gens = [subprocess.Popen([str(BIN / "physml"), "generate", "--case", "heat", "--force", "--no-progress",
                              "--params", str(tiny_params_file), "--out", str(root / "data")],
                             cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    for p in procs + gens:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    assert len(_mlflow_runs(root, "stokes2")) == 8  # 2 runs × 4 constraints, none lost
    from physml.data import open_dataset

    case_dir = Layout(root, "quick").data("heat")
    assert json.loads((case_dir / "dataset.json").read_text())["case"] == "heat"
    for split in ("train", "val", "test"):
        ds = open_dataset(case_dir / f"{split}.h5")
        assert len(ds) == load_params(tiny_params_file).sizes("heat").of(split)
    assert not list(case_dir.glob(".*.partial"))


@pytest.mark.services
def test_track_logs_untracked_results_once(tiny_params_file: Path) -> None:
    """Results made without MLflow (as a fresh clone's committed ones, which ``dvc repro`` finds up to date and
    does not evaluate) reach it through ``physml track``: one run per constraint, the seed study, the registered
    network with its champion; a second ``track`` finds them all and logs nothing, while ``evaluate`` still
    logs a new run per constraint each time it runs."""
    root = tiny_params_file.parent
    _physml(root, "generate", "--case", "stokes2", "--no-progress")
    _physml(root, "train", "--case", "stokes2", "--model", "fno", "--no-progress")
    _physml(root, "constrain", "--case", "stokes2", "--model", "fno")
    _physml(root, "evaluate", "--case", "stokes2", "--model", "fno", "--no-track")
    _physml(root, "seed-study", "--case", "stokes2", "--model", "fno", "--no-progress", "--no-track")
    assert _mlflow_runs(root, "stokes2") == []
    n_boon = len(load_params(tiny_params_file).matrix.boon.constraints)
    first = _physml(root, "track")
    assert f"stokes2/fno: {n_boon + 1} MLflow runs" in first.stdout
    runs = _mlflow_runs(root, "stokes2")
    assert sorted(r.data.tags["mlflow.runName"] for r in runs) == sorted(
        [f"fno-{c}" for c in load_params(tiny_params_file).matrix.boon.constraints] + ["fno-seed_study"])
    assert all(r.info.status == "FINISHED" and len(r.data.tags["result_digest"]) == 64 for r in runs)
    from physml import tracking
    from physml.training import read_checkpoint

    built = read_checkpoint(root / "models" / "quick" / "stokes2" / "fno" / "plain.pt")["model_config"]["fno"]
    for run in runs:
        if run.data.tags["mlflow.runName"] != "fno-seed_study":  # the network as built, not only as asked for
            assert run.data.params["network.fno.modes"] == str(built["modes"])
            assert run.data.params["network.boundary"] == "dirichlet"

    assert tracking.champion_version("physml-stokes2-fno-quick", uri=f"sqlite:///{root / 'mlflow.db'}") == "1"
    again = _physml(root, "track", "--case", "stokes2")
    assert len(_mlflow_runs(root, "stokes2")) == n_boon + 1
    assert again.stdout == first.stdout  # the same run ids, found
    # the report too, once written: a plain `track` logs it once
    assert "report:" not in first.stdout and _mlflow_runs(root, "reports") == []
    _physml(root, "report")
    with_report = _physml(root, "track")
    (report_run,) = _mlflow_runs(root, "reports")
    assert f"report: MLflow run {report_run.info.run_id} of experiment physml-reports" in with_report.stdout
    assert _physml(root, "track").stdout == with_report.stdout and len(_mlflow_runs(root, "reports")) == 1
    _physml(root, "evaluate", "--case", "stokes2", "--model", "fno")
    assert len(_mlflow_runs(root, "stokes2")) == 2 * n_boon + 1
    refused = _physml(root, "track", "--case", "nosuchcase", check=False)
    assert refused.returncode == 2 and "case 'nosuchcase' is in no experiment group" in refused.stderr
    wrong_pair = _physml(root, "track", "--case", "stokes2", "--model", "anp", check=False)
    assert wrong_pair.returncode == 2 and "'anp' is not configured for stokes2; its models: fno" in wrong_pair.stderr


def test_track_goes_on_past_a_refused_result_and_names_it(tiny_params_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A pair whose metrics ``track`` refuses (computed from other networks than those on disk) does not keep the
    other pairs out of MLflow: they are logged, its seed study too (its own file), and the refusals (a seed
    study's among them) are raised together at the end; ``physml track`` prints what it logged before the
    refusals. Metrics without any data or networks of the profile (a fresh clone) are refused at once, naming
    `dvc pull`."""
    from physml import cli, stages

    params, root = load_params(tiny_params_file), tiny_params_file.parent
    lay = Layout(root, params.profile)
    pairs = list(dict.fromkeys((c, m) for c, m, _ in params.experiments()))
    for c, m in pairs:
        lay.metrics(c, m).mkdir(parents=True)
        for constraint in stages._group(params, c).constraints:
            (lay.metrics(c, m) / f"{constraint}.json").write_text("{}")
    for pair in pairs[:2]:
        lay.seed_study_file(*pair).parent.mkdir(parents=True, exist_ok=True)
        lay.seed_study_file(*pair).write_text("{}")
    with pytest.raises(ValueError, match=rf"no data and no networks of profile {params.profile} under {root}, only "
                                         r"metrics: a fresh clone .*; `dvc pull` fetches what dvc.lock records"):
        stages.track_results(params, root)
    lay.data(pairs[0][0]).parent.mkdir(parents=True)
    lay.models(*pairs[0]).parent.parent.mkdir(parents=True)
    logged, studies = [], []

    def track(case: str, model: str, params: Any, root: Path, only_missing: bool = False) -> dict[str, str]:
        if (case, model) == pairs[0]:
            raise ValueError("computed from other networks")
        logged.append((case, model))
        return {"none": "run"}

    monkeypatch.setattr(stages, "track", track)
    def track_seed_study(case: str, model: str, *args: Any, **kwargs: Any) -> str:
        if (case, model) == pairs[1]:
            raise ValueError("no data")
        studies.append((case, model))
        return "s"

    monkeypatch.setattr(stages, "track_seed_study", track_seed_study)
    refused = (rf"2 result\(s\) not logged \(the others were\):\n  {pairs[0][0]}/{pairs[0][1]}: computed from other "
               rf"networks\n  {pairs[1][0]}/{pairs[1][1]} seed study: no data$")
    with pytest.raises(stages.TrackingRefused, match=refused) as caught:
        stages.track_results(params, root)
    assert len(pairs) > 1 and logged == pairs[1:] and studies == [pairs[0]]
    assert caught.value.logged == {f"{pairs[0][0]}/{pairs[0][1]}": {"seed_study": "s"},
                                   **{f"{c}/{m}": {"none": "run"} for c, m in pairs[1:]}}
    capsys.readouterr()
    assert cli.main(["track", "--params", str(tiny_params_file), "--root", str(root)]) == 2
    out, err = capsys.readouterr()
    assert all(f"{c}/{m}: 1 MLflow runs hold its results" in out for c, m in pairs) and "computed from other" in err


def test_a_missing_params_file_says_where_it_was_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Run outside the project (no params.yaml in the working directory): one line naming the folder and the two
    ways out, not a bare "does not exist"."""
    from physml import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["report"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"physml report: error: params file 'params.yaml' does not exist in {tmp_path}: run physml in the project "
        "folder (it holds params.yaml) or name the file with --params")


def test_a_refusal_names_the_damaged_file_and_a_command_for_this_root_and_params_file(
        tiny_params_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Every command a refusal suggests carries this run's own ``--params`` and ``--root`` (run where it is
    shown, it remakes what was refused, there and from that file); a damaged record, checkpoint or predictions
    file (cut short) is named, with the command that writes it again, not left to a bare parser error or a
    traceback; a diverged training names the learning rate it used (the case's override where it sets one);
    Ctrl-C ends with one line and 130; ``--version`` answers."""
    from physml import cli, stages
    from physml.data import MARKER

    root = tmp_path / "elsewhere"
    params_file = tmp_path / "my params.yaml"
    params_file.write_text(tiny_params_file.read_text())
    params = load_params(params_file)
    lay = Layout(root, params.profile)
    common = ["--case", "heat", "--model", "anp", "--params", str(params_file), "--root", str(root)]
    here = f"--params '{params_file}' --root {root}"

    def refusal(*args: str) -> str:
        capsys.readouterr()
        assert cli.main(list(args)) == 2
        return capsys.readouterr().err

    assert f"run `physml generate --case heat --profile quick {here}`" in refusal("train", *common)
    stages.generate("heat", params, root, progress=False)
    marker = lay.data("heat") / MARKER
    whole = marker.read_bytes()
    marker.write_bytes(whole[:40])
    err = refusal("train", *common)
    assert f"{marker} is damaged (not readable JSON" in err
    assert f"`physml generate --case heat --profile quick --force {here}`" in err
    assert cli.main(["generate", "--case", "heat", "--params", str(params_file), "--root", str(root),
                     "--no-progress"]) == 0  # a damaged marker is not up to date: generated again, no --force
    assert json.loads(marker.read_text())["fingerprint"] == json.loads(whole)["fingerprint"]
    models = lay.models("heat", "anp")
    models.mkdir(parents=True)
    (models / stages.TRAINED_WITH).write_text('{"model": ')
    err = refusal("constrain", *common)
    assert f"{models / stages.TRAINED_WITH} is damaged" in err
    assert f"`physml train --case heat --model anp --profile quick {here}`" in err
    (models / stages.TRAINED_WITH).write_text(json.dumps(stages._training_settings(params, "heat", "anp")))
    (models / "plain.pt").write_bytes(b"PK\x03\x04 cut short")
    err = refusal("constrain", *common)
    assert f"{models / 'plain.pt'} is damaged (torch cannot read it" in err and "`physml train --case heat" in err
    predictions = lay.predictions("heat", "anp") / "predictions.h5"
    predictions.parent.mkdir(parents=True)
    predictions.write_bytes(b"\x89HDF\r\n\x1a\n cut short")
    err = refusal("evaluate", *common)
    assert f"{predictions} is damaged (HDF5 cannot read it" in err
    assert f"`physml constrain --case heat --model anp --profile quick {here}`" in err
    lay.metrics("heat", "anp").mkdir(parents=True)
    (lay.metrics("heat", "anp") / stages.MADE_FROM).write_text("{")
    with pytest.raises(ValueError, match=r"made_from.json is damaged .* run `physml evaluate --case heat --model anp"):
        stages.read_made_from("heat", "anp", lay)

    def diverge(*args: Any, **kwargs: Any) -> None:
        raise FloatingPointError("non-finite training loss")

    monkeypatch.setattr(stages, "train", diverge)
    assert "(lower the learning rate, models.anp.quick.train.lr, or check the data)" in refusal("train", *common)
    override = yaml.safe_load(params_file.read_text())
    override["models"]["anp"]["cases"] = {"heat": {"quick": {"train": {"lr": 1e-4}}}}
    params_file.write_text(yaml.safe_dump(override, sort_keys=False))
    assert "models.anp.cases.heat.quick.train.lr" in refusal("train", *common)
    monkeypatch.setattr(stages, "train", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    capsys.readouterr()
    assert cli.main(["train", *common]) == 130
    assert "physml train: interrupted; run the same command again" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    from importlib.metadata import version

    assert done.value.code == 0 and capsys.readouterr().out == f"physml {version('physml')}\n"  # pyproject's


_TERMINATED = """
import os, signal, sys, time
from pathlib import Path
from physml import cli, tracking
from physml.atomic import atomic_path

uri, out = sys.argv[1], Path(sys.argv[2])

def tracked_until_killed(args):  # a command halfway through a file and an MLflow run when SIGTERM comes
    with tracking.start_run("heat", "anp", "none", "quick", uri=uri) as run:
        print(run.run_id, flush=True)
        with atomic_path(out) as partial:
            partial.write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
    return 0

cli._cmd_track = tracked_until_killed
sys.exit(cli.main(["track"]))
"""


def test_sigterm_unwinds_a_command_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM (a cancelled Prefect run, an evicted pod, ``kill``) ends a command as Ctrl-C does: the file it was
    writing is not left half-written, its MLflow run ends FAILED instead of staying RUNNING (where the next
    ``physml track`` would log the result again beside it), and it exits 143 with one line."""
    from physml import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "metrics" / "none.json"
    proc = subprocess.run([sys.executable, "-c", _TERMINATED, uri, str(out)], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("physml track: terminated (SIGTERM);")
    assert tracking.client(uri).get_run(proc.stdout.split()[0]).info.status == "FAILED"
    assert list(out.parent.iterdir()) == []


def test_trainings_in_threads_of_one_process_get_the_weights_they_get_alone(tiny_params_file: Path) -> None:
    """The Prefect flow's default runner trains several networks in threads of one process; training seeds and
    draws from the process-wide RNGs, so without ``stages.TRAINING_LOCK`` their draws interleave and the weights
    depend on timing. Three roots with the same data: one trained alone, then two at once in threads — all
    three checkpoints byte-identical (the checkpoint holds no time and no path)."""
    import threading

    from physml import stages

    params = load_params(tiny_params_file)
    root = tiny_params_file.parent
    stages.generate("heat", params, root, progress=False)
    roots = [root / name for name in ("alone", "a", "b")]
    for other in roots:
        shutil.copytree(root / "data", other / "data")
    stages.train("heat", "anp", params, roots[0], progress=False)
    errors: list[BaseException] = []

    def train(where: Path) -> None:
        try:
            stages.train("heat", "anp", params, where, progress=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=train, args=(where,)) for where in roots[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for name in ("plain.pt", "softc.pt"):
        alone = (Layout(roots[0], "quick").models("heat", "anp") / name).read_bytes()
        assert all((Layout(where, "quick").models("heat", "anp") / name).read_bytes() == alone for where in roots[1:])


def test_constrain_waits_for_a_training_in_another_thread(tiny_params_file: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a network to load a checkpoint into draws its initial weights from torch's global RNG, the one an
    ANP training in another thread draws its latent samples from (one build there moved the training's
    weights): constrain holds ``stages.TRAINING_LOCK`` while it runs, so it waits for the training."""
    import threading

    from physml import stages

    params = load_params(tiny_params_file)
    root = tiny_params_file.parent
    stages.generate("heat", params, root, progress=False)
    stages.train("heat", "anp", params, root, progress=False)
    held: list[bool] = []
    real = stages.experiment_module

    class Probe:
        @staticmethod
        def constrain(*args: Any, **kwargs: Any) -> Path:
            held.append(stages.TRAINING_LOCK.locked())
            return real("heat").constrain(*args, **kwargs)

    monkeypatch.setattr(stages, "experiment_module", lambda case: Probe)
    with stages.TRAINING_LOCK:  # a training in another thread
        worker = threading.Thread(target=stages.constrain, args=("heat", "anp", params, root))
        worker.start()
        worker.join(timeout=2)
        assert worker.is_alive() and held == []  # waiting for the lock, nothing built yet
    worker.join(timeout=120)
    assert held == [True] and (Layout(root, "quick").predictions("heat", "anp") / "predictions.h5").is_file()


def test_user_errors_are_one_line_before_any_service_starts(tmp_path: Path) -> None:
    """The flows' command lines refuse a bad profile, a missing params file or an unknown case in one line (no
    Prefect server started, no traceback); `physml report` refuses a root with no metrics (a mistyped
    --root used to write an empty report there)."""
    missing = str(tmp_path / "missing.yaml")
    for command in (["-m", "flows.pipeline", "--profile", "Quick"], ["-m", "flows.pipeline", "--params", missing],
                    ["-m", "flows.generate", "--case", "nosuch"]):
        done = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].split(": error: ")[1] != ""
    empty = tmp_path / "typo"
    done = subprocess.run([sys.executable, "-m", "physml.cli", "report", "--root", str(empty)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no metrics file" in done.stderr and not (empty / "reports").exists()


def test_a_transient_failure_is_retried_and_any_other_is_final_at_once() -> None:
    """A locked SQLite store or a refused connection (also as the cause of another error) is worth another
    attempt; a bad setting or a diverged training is not. Every task of the flow carries this condition."""
    import sqlite3

    import flows.pipeline as fp

    locked = RuntimeError("tracking failed")
    locked.__cause__ = sqlite3.OperationalError("database is locked")
    assert fp.is_transient(locked) and fp.is_transient(ConnectionRefusedError(111, "Connection refused"))
    assert fp.is_transient(TimeoutError())
    for final in (ValueError("models.fno.quick.epochs: 0 is below 1"), FloatingPointError("non-finite training loss"),
                  RuntimeError("CUDA out of memory"), None):
        assert not fp.is_transient(final)
    tasks = [fp.generate_task, fp.train_task, fp.constrain_task, fp.evaluate_task, fp.track_task, fp.seed_study_task,
             fp.track_seed_study_task, fp.report_task]
    assert all(t.retries == fp.RETRIES and t.retry_condition_fn is fp._retry_if_transient for t in tasks)
    assert all(t.retry_delay_seconds == fp.RETRY_DELAYS_S for t in tasks) and sum(fp.RETRY_DELAYS_S) >= 300


def test_a_run_that_needs_cuda_stops_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The paper deployment sets PHYSML_REQUIRE_CUDA: where torch sees no CUDA device the flow stops before any
    task, naming the variable and torch's build, instead of training the paper's sizes on the CPU and caching
    those networks; unset (or "0"), and where CUDA works, it goes on."""
    import torch

    import flows.pipeline as fp

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for unset in (None, "", "0"):
        if unset is None:
            monkeypatch.delenv(fp.REQUIRE_CUDA, raising=False)
        else:
            monkeypatch.setenv(fp.REQUIRE_CUDA, unset)
        fp.check_device()
    monkeypatch.setenv(fp.REQUIRE_CUDA, "1")
    said = re.escape(f"PHYSML_REQUIRE_CUDA is set but torch sees no CUDA device (torch {torch.__version__}, "
                     f"built for CUDA {torch.version.cuda})")
    with pytest.raises(RuntimeError, match=said):
        fp.check_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fp.check_device()
    paper = next(d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"] if d["name"] == "paper")
    assert paper["work_pool"]["job_variables"]["env"][fp.REQUIRE_CUDA] not in ("", "0")


_RETRY_FLOW = """
import json, sqlite3
from prefect import flow, task
import flows.pipeline as fp

attempts = {"bad": 0, "locked": 0}

@task(**{**fp.RETRY, "retry_delay_seconds": 0})  # the flow's retry settings, without the wait
def bad():
    attempts["bad"] += 1
    raise ValueError("models.fno.quick.epochs: 0 is below 1")

@task(**{**fp.RETRY, "retry_delay_seconds": 0})  # the flow's retry settings, without the wait
def locked():
    attempts["locked"] += 1
    if attempts["locked"] == 1:
        raise sqlite3.OperationalError("database is locked")
    return "stored"

@flow
def run():
    return bad(return_state=True).is_failed(), locked()

print("RESULT", json.dumps([*run(), attempts]))
"""


@pytest.mark.services
def test_prefect_runs_a_bad_setting_once_and_a_locked_store_again(tmp_path: Path) -> None:
    """The flow's retry settings as Prefect's task engine applies them: the ValueError task fails after one
    attempt (RETRIES notwithstanding), the locked-store task succeeds on its second."""
    done = subprocess.run([sys.executable, "-c", _RETRY_FLOW], cwd=REPO, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert json.loads(line.removeprefix("RESULT ")) == [True, "stored", {"bad": 1, "locked": 2}]


def test_a_second_pipeline_run_in_the_same_checkout_stops_at_once(tmp_path: Path) -> None:
    """While one run holds the checkout's lock, a second (here: another process, as a second flow run would
    be) is refused, naming the lock's path; another root, or the same after the first ends, runs."""
    import flows.pipeline as fp

    probe = ("import sys; from pathlib import Path; import flows.pipeline as fp\n"
             "with fp.checkout_lock(Path(sys.argv[1])): print('ran')")

    def second(root: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", probe, str(root)], cwd=REPO, capture_output=True, text=True,
                              timeout=120)

    with fp.checkout_lock(tmp_path / "a"):
        refused = second(tmp_path / "a")
        assert refused.returncode != 0 and "another pipeline run holds" in refused.stderr
        assert str(tmp_path / "a" / ".physml-flow" / "run.lock") in refused.stderr
        assert second(tmp_path / "b").stdout.strip() == "ran"
    assert second(tmp_path / "a").stdout.strip() == "ran"
