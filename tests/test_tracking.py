"""MLflow tracking and registry (physml.tracking) against a real SQLite store in a temp folder.

Guarantees checked: every record of an experiment lands (tags, params incl. the dataset's DVC md5,
metrics, figure, state dict that loads back bit-identical), the champion alias moves only to a
strictly better version (both directions of "better"), ranks other than 0 log nothing, two
processes logging into one SQLite file at the same time lose no run and no model version, and
concurrent promotions leave the best version as champion.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from physml import tracking  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store + artifact folder; returns the tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("PHYSML_TRACKING_URI", uri)
    monkeypatch.setenv("PHYSML_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.delenv("RANK", raising=False)
    return uri


def test_uri_defaults_to_sqlite_in_project_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PHYSML_TRACKING_URI", "MLFLOW_TRACKING_URI", "PHYSML_PROJECT_DIR", "PHYSML_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "params.yaml").write_text("profile: quick\n")
    nested = tmp_path / "reports" / "deep"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert tracking.project_dir() == tmp_path.resolve()
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert tracking.artifact_root() == (tmp_path.resolve() / "mlartifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.tracking_uri() == "http://mlflow.example:5000"
    assert tracking.artifact_root() is None  # a server picks its own artifact store
    monkeypatch.setenv("PHYSML_TRACKING_URI", "sqlite:////elsewhere/m.db")
    assert tracking.tracking_uri() == "sqlite:////elsewhere/m.db"


def test_dataset_version_reads_md5_from_dvc_lock(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    assert tracking.dataset_version("heat", lock) is None  # no lock yet
    lock.write_text(
        textwrap.dedent(
            """\
            schema: '2.0'
            stages:
              generate@heat:
                cmd: physml generate heat
                outs:
                - path: data/heat
                  hash: md5
                  md5: 0123456789abcdef0123456789abcdef.dir
                  size: 10
                  nfiles: 3
              generate@pme:
                cmd: physml generate pme
                outs:
                - path: data/pme/train.h5
                  md5: aaaa
                - path: data/pme/test.h5
                  md5: bbbb
            """
        )
    )
    assert tracking.dataset_version("heat", lock) == "0123456789abcdef0123456789abcdef.dir"
    assert tracking.dataset_version("stefan", lock) is None
    pme = tracking.dataset_version("pme", lock)
    assert pme is not None and len(pme) == 32
    lock.write_text(lock.read_text().replace("md5: bbbb", "md5: cccc"))
    assert tracking.dataset_version("pme", lock) not in (None, pme)  # any split changing changes it


def test_log_experiment_round_trip(store: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    record = tracking.log_experiment(
        "heat",
        "anp",
        "probconserv",
        "quick",
        params={"lr": 1e-3, "model": {"width": 4, "depth": 2}},
        metrics={"mse": 0.25, "conservation_error": 1e-12, "nll": {"test": -1.5}},
        figures={"solution": fig},
        state_dict=net.state_dict(),
        dataset_version="abc123.dir",
    )
    plt.close(fig)
    assert record is not None
    assert record.model_name == "physml-heat-anp" and record.model_version == "1"

    mlc = tracking.client(store)
    run = mlc.get_run(record.run_id)
    assert run.info.status == "FINISHED"
    assert mlc.get_experiment(record.experiment_id).name == "physml-heat"
    tags = run.data.tags
    assert (tags["case"], tags["model"], tags["constraint"], tags["profile"]) == ("heat", "anp", "probconserv", "quick")
    assert tags["dataset_version"] == "abc123.dir"
    assert run.data.params == {"lr": "0.001", "model.width": "4", "model.depth": "2", "dataset_version": "abc123.dir"}
    assert run.data.metrics == {"mse": 0.25, "conservation_error": 1e-12, "nll.test": -1.5}
    artifacts = {a.path for a in mlc.list_artifacts(record.run_id, "figures")}
    assert artifacts == {"figures/solution.png"}
    png = Path(run.info.artifact_uri.removeprefix("file://")) / "figures" / "solution.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(tmp_path / "mlartifacts") in run.info.artifact_uri

    loaded = tracking.load_state_dict("physml-heat-anp", 1)
    original = net.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)


def _version_with(case: str, mse: float, accuracy: float) -> str:
    record = tracking.log_experiment(
        case,
        "fno",
        "boon",
        "quick",
        metrics={"mse": mse, "accuracy": accuracy},
        state_dict={"w": torch.tensor([mse])},
    )
    assert record is not None and record.model_version is not None
    return record.model_version


def test_champion_moves_only_to_a_strictly_better_version(store: str) -> None:
    name = tracking.registered_model_name("wave", "fno")
    v1 = _version_with("wave", mse=0.5, accuracy=0.7)
    assert tracking.champion_version(name) is None
    assert tracking.promote_if_better(name, v1, "mse") is True  # no champion yet
    v2 = _version_with("wave", mse=0.7, accuracy=0.9)
    assert tracking.promote_if_better(name, v2, "mse") is False  # worse error
    assert tracking.champion_version(name) == v1
    v3 = _version_with("wave", mse=0.5, accuracy=0.1)
    assert tracking.promote_if_better(name, v3, "mse") is False  # a tie is not better
    v4 = _version_with("wave", mse=0.3, accuracy=0.2)
    assert tracking.promote_if_better(name, v4, "mse") is True
    assert tracking.champion_version(name) == v4
    assert torch.equal(tracking.load_state_dict(name)["w"], torch.tensor([0.3]))

    # higher is better: a separate alias so both rankings can be read side by side
    assert tracking.promote_if_better(name, v1, "accuracy", higher_is_better=True, alias="best_acc") is True
    assert tracking.promote_if_better(name, v4, "accuracy", higher_is_better=True, alias="best_acc") is False
    assert tracking.promote_if_better(name, v2, "accuracy", higher_is_better=True, alias="best_acc") is True
    assert tracking.champion_version(name, alias="best_acc") == v2
    assert tracking.champion_version(name) == v4  # the champion alias did not move

    with pytest.raises(ValueError, match="'nll' was not logged"):
        tracking.promote_if_better(name, v2, "nll")


def test_only_rank_zero_logs(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    assert tracking.is_main_process() is False
    assert tracking.log_experiment("heat", "anp", "none", "quick", metrics={"mse": 1.0}) is None
    monkeypatch.setenv("RANK", "0")
    assert tracking.client(store).get_experiment_by_name("physml-heat") is None


def test_failed_block_marks_run_failed_and_bad_names_are_rejected(store: str) -> None:
    with pytest.raises(RuntimeError, match="diverged"):
        with tracking.start_run("pme", "ensemble", "none", "quick") as run:
            run.log_metrics({"loss": 3.0}, step=1)
            raise RuntimeError("training diverged")
    assert tracking.client(store).get_run(run.run_id).info.status == "FAILED"
    with pytest.raises(ValueError, match="constraint must be"):
        with tracking.start_run("pme", "ensemble", "", "quick"):
            pass
    with pytest.raises(ValueError, match="case must be"):
        tracking.registered_model_name("heat/../x", "anp")
    with pytest.raises(ValueError, match="metric 'mse' must be a real number"):
        tracking.log_experiment("pme", "ensemble", "none", "quick", metrics={"mse": "low"})


_WRITER = """
import sys, time
from pathlib import Path
import torch
from physml import tracking
tag, n, sync = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
(sync / tag).touch()
while len(list(sync.iterdir())) < 2:  # start together
    time.sleep(0.01)
for i in range(n):
    tracking.log_experiment(
        "burgers", "anp", f"c{tag}", "quick",
        params={"i": i, "writer": tag}, metrics={"mse": float(i)},
        state_dict={"w": torch.tensor([float(i)])},
    )
"""


def test_two_processes_logging_at_once_lose_nothing(store: str, tmp_path: Path) -> None:
    n = 8
    sync = tmp_path / "sync"
    sync.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, tag, str(n), str(sync)], env=env, stderr=subprocess.PIPE)
        for tag in ("A", "B")
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-3000:]

    mlc = tracking.client(store)
    experiment = mlc.get_experiment_by_name("physml-burgers")
    runs = mlc.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) == 2 * n
    assert all(r.info.status == "FINISHED" for r in runs)
    for tag in ("A", "B"):
        mine = [r for r in runs if r.data.tags["constraint"] == f"c{tag}"]
        assert sorted(int(r.data.params["i"]) for r in mine) == list(range(n))
        assert sorted(r.data.metrics["mse"] for r in mine) == [float(i) for i in range(n)]
    versions = mlc.search_model_versions("name='physml-burgers-anp'", max_results=1000)
    assert sorted(int(v.version) for v in versions) == list(range(1, 2 * n + 1))
    assert {v.run_id for v in versions} == {r.info.run_id for r in runs}


_PROMOTER = """
import sys, time
from pathlib import Path
from physml import tracking
version, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
tracking.promote_if_better(tracking.registered_model_name("wave", "fno"), version, "mse")
"""


def test_concurrent_promotions_leave_the_best_version_champion(store: str) -> None:
    """Four processes promote their versions at the same instant, the worst first in line: the read–
    compare–set of each is serialised, so the champion ends on the lowest error whatever the order."""
    import time

    name = tracking.registered_model_name("wave", "fno")
    versions = {mse: _version_with("wave", mse=mse, accuracy=0.0) for mse in (0.9, 0.4, 0.2, 0.6)}
    start = time.time() + 6.0  # every process imported and waiting before the gun
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _PROMOTER, v, str(start)], env=env, stderr=subprocess.PIPE)
             for v in versions.values()]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-3000:]
    assert tracking.champion_version(name) == versions[0.2]
