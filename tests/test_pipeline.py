"""The pipeline as users run it: the Prefect flow end to end on a tiny matrix, its input-keyed cache,
MLflow records, the report, and what happens when stages are killed or run twice at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from physml.config import load_params
from physml.stages import Layout

BIN = Path(sys.executable).parent


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
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


@pytest.mark.services
def test_prefect_pipeline_end_to_end_cached_and_rebuilt(tiny_params_file: Path) -> None:
    root = tiny_params_file.parent
    script = (
        "import json, sys; from flows.pipeline import pipeline; "
        f"out = pipeline(params_path={str(tiny_params_file)!r}, root={str(root)!r}); print('RESULT', json.dumps(out))"
    )

    def run() -> dict:
        proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], env=_env(root),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        return json.loads(line[len("RESULT "):])

    params = load_params(tiny_params_file)
    lay = Layout(root, params.profile)
    first = run()
    report = Path(first["report"])
    assert report.is_file() and "ProbConserv" in report.read_text() and "BOON" in report.read_text()
    assert "### Seed study (2 seeds" in report.read_text()
    study = json.loads(lay.seed_study_file("stokes2", "fno").read_text())
    assert study["seeds"] == params.study_seeds() and len(study["rel_l2"]["boon"]) == 2
    for case, model, constraint in params.experiments():
        metrics = json.loads((lay.metrics(case, model) / f"{constraint}.json").read_text())
        assert metrics and all(isinstance(v, float) for v in metrics.values()), (case, model, constraint)
    # one MLflow run per model × constraint, registered models with a champion
    assert len(_mlflow_runs(root, "heat")) == 8
    assert len(_mlflow_runs(root, "stokes2")) == 4  # 3 constraints + the seed study
    assert set(first["seed_study_runs"]) == {"stokes2/fno"}
    from physml import tracking

    for case, model in (("heat", "anp"), ("heat", "ensemble"), ("stokes2", "fno")):
        name = tracking.registered_model_name(case, model)
        assert tracking.champion_version(name, uri=f"sqlite:///{root / 'mlflow.db'}") == "1"
    ckpt = lay.models("heat", "anp") / "plain.pt"
    stamp = ckpt.stat().st_mtime_ns

    second = run()  # everything cached: no retraining, no new MLflow runs
    assert ckpt.stat().st_mtime_ns == stamp
    assert len(_mlflow_runs(root, "heat")) == 8
    assert second["runs"] == first["runs"]

    # a deleted output is rebuilt, and only what depends on it is recomputed
    import shutil

    shutil.rmtree(lay.predictions("stokes2", "fno"))
    run()
    assert (lay.predictions("stokes2", "fno")).is_dir()
    assert ckpt.stat().st_mtime_ns == stamp
    assert len(_mlflow_runs(root, "stokes2")) == 7  # evaluate re-ran on the rebuilt predictions, the study did not
    assert len(_mlflow_runs(root, "heat")) == 8


@pytest.mark.services
def test_killed_training_leaves_no_partial_output_and_next_run_completes(tiny_params_file: Path) -> None:
    root = tiny_params_file.parent
    data = yaml.safe_load(tiny_params_file.read_text())
    data["models"]["fno"]["quick"]["train"]["epochs"] = 60
    tiny_params_file.write_text(yaml.safe_dump(data, sort_keys=False))
    _physml(root, "generate", "--case", "stokes2", "--no-progress")
    out = Layout(root, "quick").models("stokes2", "fno")
    for delay in (1.0, 2.5, 4.0):
        proc = subprocess.Popen([str(BIN / "physml"), "train", "--case", "stokes2", "--model", "fno", "--no-progress",
                                 "--params", str(tiny_params_file), "--root", str(root)],
                                cwd=root, env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the stage is complete only when its summary exists; no summary may point at a missing checkpoint
        summary = out / "train_summary.json"
        if summary.exists():
            from physml.training import read_checkpoint

            for ckpt in out.glob("*.pt"):
                assert "model_state" in read_checkpoint(ckpt)
        if summary.exists():
            summary.unlink()  # force the next attempt to train again
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
    assert len(_mlflow_runs(root, "stokes2")) == 6  # 2 runs × 3 constraints, none lost
    from physml.data import open_dataset

    case_dir = Layout(root, "quick").data("heat")
    assert json.loads((case_dir / "dataset.json").read_text())["case"] == "heat"
    for split in ("train", "val", "test"):
        ds = open_dataset(case_dir / f"{split}.h5")
        assert len(ds) == load_params(tiny_params_file).sizes("heat").of(split)
    assert not list(case_dir.glob(".*.partial"))
