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


_FINGERPRINTED = """
import json, sys
from pathlib import Path
import numpy as np
import physml
from physml import pdes
from physml.config import load_params
from physml.experiments import boon, probconserv
from physml.models import build_model
from physml.models.boon import operator_loss
from physml.training import code_version, model_loss

params = load_params(sys.argv[1])
nets = {}
for case in params.matrix.probconserv.cases:
    for model in params.matrix.probconserv.models:
        for twin, kw in (("plain", {}), ("softc", {"softc": True}), ("trained", {"constrained": True})):
            nets[f"probconserv {case} {model} {twin}"] = (
                build_model(probconserv.model_config(case, model, params, **kw)), model_loss)
for case in params.matrix.boon.cases:
    grid = params.grid(case)
    fno = boon.fno_config(case, params, np.linspace(0.0, 1.0, grid.nx), grid.resolve_times(pdes.get(case).t_domain))
    for variant in ("plain", "boon"):
        nets[f"boon {case} fno {variant}"] = (build_model(boon._model_config(case, variant, fno)), operator_loss)
root = Path(physml.__file__).parent
before = {name: code_version(net, loss) for name, (net, loss) in nets.items()}
hashed = {name: [] for name in nets}
for path in sorted(root.rglob("*.py")):
    text = path.read_bytes()
    path.write_bytes(text + b"\\n# touched\\n")
    try:
        for name, (net, loss) in nets.items():
            if code_version(net, loss) != before[name]:
                hashed[name].append("physml/" + path.relative_to(root).as_posix())
    finally:
        path.write_bytes(text)
print(json.dumps(hashed))
"""


def test_a_stage_that_trains_lists_every_file_its_checkpoints_fingerprint(tmp_path: Path) -> None:
    """A checkpoint records the fingerprint of the code that trained it (``code_version``: the modules of the
    model and of its loss, and what they import). If that covers a file the training stage does not list in
    dvc.yaml, editing the file leaves the stage up to date while a fresh `dvc repro` writes checkpoints of
    other bytes: the lock no longer reproduces (stop 46 found all 150 checkpoints off in that field alone).
    Every file whose edit changes a shipped training's fingerprint, found by editing each physml file of a copy
    of the package in turn, must be a dep of each stage that trains that network."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "physml", copy / "physml", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(copy))
    done = subprocess.run([sys.executable, "-c", _FINGERPRINTED, str(ROOT / "params.yaml")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    hashed: dict[str, list[str]] = json.loads(done.stdout)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    trainers = {"probconserv": ("train_probconserv", "seed_study_probconserv"), "boon": ("train_boon", "seed_study_boon")}
    missing = []
    for name, files in hashed.items():
        group, case, model, _twin = name.split()
        assert "physml/training.py" in files, name  # the probe sees the fingerprint at all
        for stage in trainers[group]:
            deps = [d.replace("${item.case}", case).replace("${item.model}", model) for d in stages[stage]["deps"]]
            missing += [f"{stage}@{case}-{model}: {f}" for f in files
                        if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]
    assert not missing, "\n".join(sorted(set(missing)))
