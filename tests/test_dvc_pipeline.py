"""`dvc repro` on a copy of the project with a tiny params.yaml: the whole matrix builds, editing a code file
makes stale exactly the stages that run it, changing one model's params re-runs only what depends on it, a
no-op re-run does nothing, metrics/plots are readable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, tiny_params

BIN = Path(sys.executable).parent


def _run(cwd: Path, *cmd: str) -> str:
    env = dict(os.environ)
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PHYSML_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}",
               PHYSML_ARTIFACT_ROOT=str(cwd / "mlartifacts"), PHYSML_PROJECT_DIR=str(cwd), MLFLOW_DISABLE_TELEMETRY="true",
               DO_NOT_TRACK="1")
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _stale(project: Path) -> set[str]:
    """Names of the stages `dvc status` reports as changed."""
    out = json.loads(_run(project, str(BIN / "dvc"), "status", "--json"))
    return set(out)


def _touched(project: Path, rel: str) -> set[str]:
    """Stages `dvc status` reports as changed while ``rel`` carries one more line (then restored)."""
    path = project / rel
    text = path.read_text()
    path.write_text(text + "# touched\n")
    try:
        return _stale(project)
    finally:
        path.write_text(text)


@pytest.mark.services
def test_dvc_repro_tiny_matrix(tmp_path: Path) -> None:
    project = tmp_path / "project"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith(("reports/", "data/", "models/", "metrics/", "predictions/")) or rel == "dvc.lock":
            continue
        dst = project / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst)
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    _run(project, "git", "init", "-q")
    _run(project, str(BIN / "dvc"), "repro", "--quiet")
    assert (project / "reports" / "quick" / "index.md").is_file()
    assert _stale(project) == set()
    # the dataset version MLflow runs are tagged with is the md5 dvc.lock records, computed from the files
    from physml import tracking

    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    for case in tiny_params()["cases"]:
        (out,) = lock[f"generate@{case}"]["outs"]
        assert tracking.dataset_version(project / out["path"]) == out["md5"], case

    # a model setting only the constrain stage reads (the ANP's latent draws at prediction) re-runs it
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["models"]["anp"]["quick"]["n_latent_samples"] += 1
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert "constrain_probconserv@heat-anp" in _stale(project)
    data["models"]["anp"]["quick"]["n_latent_samples"] -= 1
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    # the code deps: editing a file re-runs the stages that run it, and only those
    kernel = _touched(project, "physml/layers/spectral.py")
    assert {s.split("@")[0] for s in kernel} == {"train_boon", "constrain_boon", "seed_study_boon"}, kernel
    anp = _touched(project, "physml/models/anp.py")  # the ensemble builds on the ANP's layers
    assert {s.split("@")[0] for s in anp} == {"train_probconserv", "constrain_probconserv", "seed_study_probconserv"}, anp
    assert any(s.endswith("-anp") for s in anp) and any(s.endswith("-ensemble") for s in anp), anp
    gaussian = _touched(project, "physml/constraints/gaussian.py")  # the update, and the trained twin's loss
    assert {s.split("@")[0] for s in gaussian} == {"train_probconserv", "constrain_probconserv",
                                                  "seed_study_probconserv"}, gaussian
    variants = _touched(project, "physml/experiments/variants.py")  # how each case is posed to the FNO
    assert {s.split("@")[0] for s in variants} == {"train_boon", "constrain_boon", "evaluate_boon",
                                                  "seed_study_boon"}, variants
    seeds = _touched(project, "physml/experiments/seeds.py")  # what both families' seed studies share
    assert {s.split("@")[0] for s in seeds} == {"seed_study_probconserv", "seed_study_boon"}, seeds
    sampling = _touched(project, "physml/metrics.py")  # constrain draws Stefan's posterior samples with it
    assert {"constrain_probconserv", "evaluate_probconserv", "evaluate_boon", "seed_study_probconserv"} <= {
        s.split("@")[0] for s in sampling}, sampling

    metrics = json.loads(_run(project, str(BIN / "dvc"), "metrics", "show", "--json"))
    shown = json.dumps(metrics)
    assert "probconserv.json" in shown and "boon.json" in shown and "seeds.json" in shown
    _run(project, str(BIN / "dvc"), "plots", "show", "--out", str(tmp_path / "plots"))
    assert (tmp_path / "plots" / "index.html").is_file()

    data = yaml.safe_load((project / "params.yaml").read_text())
    data["models"]["ensemble"]["quick"]["hidden"] = 12
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    stale = _stale(project)
    assert "train_probconserv@heat-ensemble" in stale
    assert not any(s.startswith(("generate", "train_boon")) or s.endswith("-anp") for s in stale), stale

    _run(project, str(BIN / "dvc"), "repro", "--quiet")
    assert _stale(project) == set()
    out = _run(project, str(BIN / "dvc"), "repro")
    assert "didn't change" in out or "up to date" in out
