"""MLflow tracking and registry (physml.tracking) against a real SQLite store in a temp folder.

Guarantees checked: every record of an experiment lands (tags, params incl. the dataset's DVC md5,
metrics, figure, state dict that loads back bit-identical), the champion alias moves only to a
strictly better version (both directions of "better"), ranks other than 0 log nothing, two
processes logging into one SQLite file at the same time lose no run and no model version, and
concurrent promotions leave the best version as champion.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
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


def test_dataset_version_is_the_md5_dvc_records_for_the_folder(tmp_path: Path) -> None:
    """DVC 3's directory hash (md5 of the sorted [{md5, relpath}] JSON, ``.dir``), from the files; any file's
    bytes, name or presence changes it. (tests/test_dvc_pipeline.py checks it against a real dvc.lock.)"""
    data = tmp_path / "heat"
    assert tracking.dataset_version(data) is None  # no data yet
    (data / "sub").mkdir(parents=True)
    (data / "train.h5").write_bytes(b"abc")
    (data / "sub" / "x.csv").write_bytes(b"1,2\n")
    listing = [{"md5": hashlib.md5(b"1,2\n").hexdigest(), "relpath": "sub/x.csv"},
               {"md5": hashlib.md5(b"abc").hexdigest(), "relpath": "train.h5"}]
    first = tracking.dataset_version(data)
    assert first == hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"
    (data / "train.h5").write_bytes(b"abd")
    second = tracking.dataset_version(data)
    (data / "train.h5").rename(data / "val.h5")
    assert len({first, second, tracking.dataset_version(data)}) == 3


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
    assert record.model_name == "physml-heat-anp-quick" and record.model_version == "1"

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

    loaded = tracking.load_state_dict("physml-heat-anp-quick", 1)
    original = net.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)
    # logged without the config a network is built from: its weights load, the network cannot be rebuilt
    with pytest.raises(ValueError, match=r"'physml-heat-anp-quick' at 1 was logged without model_config.json"):
        tracking.load_model("physml-heat-anp-quick", 1)


def test_a_version_logged_with_its_config_loads_as_the_network(store: str) -> None:
    """load_model: the registered version's network rebuilt from the model_config.json logged beside its weights
    (physml.models.build_model), weights loaded, in eval mode: it predicts what the logged network does."""
    from physml.models import build_model

    config = {"variant": "boon", "boundary": "dirichlet", "neumann_order": 1,
              "fno": {"n_space": 1, "width": 8, "modes": 4, "n_layers": 2, "proj_width": 8}}
    torch.manual_seed(3)
    net = build_model(config)
    record = tracking.log_experiment("burgers_dirichlet", "fno", "boon", "quick", metrics={"rel_l2": 0.1},
                                     state_dict=net.state_dict(), model_config=config)
    assert record is not None and record.model_version == "1"
    loaded = tracking.load_model(record.model_name, 1)
    assert type(loaded) is type(net) and not loaded.training
    u0, ends = torch.randn(3, 32), torch.randn(3, 2)  # (B, nx), the Dirichlet values (B, 2)
    with torch.no_grad():
        out = loaded(u0, ends)
        torch.testing.assert_close(out, net.eval()(u0, ends), rtol=0, atol=0)
    torch.testing.assert_close(out[:, [0, -1]], ends, rtol=0, atol=1e-5)  # the condition, built in


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


def test_champion_moves_only_to_a_version_better_by_the_margin(store: str) -> None:
    name = tracking.registered_model_name("wave", "fno", "quick")
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
    # within the margin (0.1 % of 0.3 = 3e-4): a retraining's noise does not take the alias; beyond it does
    noise = _version_with("wave", mse=0.3 - 1e-5, accuracy=0.2)
    assert tracking.promote_if_better(name, noise, "mse") is False
    assert tracking.promote_if_better(name, noise, "mse", margin=0.0) is True  # strictly lower is enough at 0
    assert tracking.promote_if_better(name, v4, "mse", margin=0.0) is False
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        tracking.promote_if_better(name, v4, "mse", margin=-0.1)

    # higher is better: a separate alias so both rankings can be read side by side
    assert tracking.promote_if_better(name, v1, "accuracy", higher_is_better=True, alias="best_acc") is True
    assert tracking.promote_if_better(name, v4, "accuracy", higher_is_better=True, alias="best_acc") is False
    assert tracking.promote_if_better(name, v2, "accuracy", higher_is_better=True, alias="best_acc") is True
    assert tracking.champion_version(name, alias="best_acc") == v2
    assert tracking.champion_version(name) == noise  # the champion alias did not move

    with pytest.raises(ValueError, match="'nll' was not logged"):
        tracking.promote_if_better(name, v2, "nll")


def test_a_champion_evaluated_on_other_data_is_no_comparison(store: str) -> None:
    """A metric on another test set (another dataset_version) does not compare: the version evaluated on the
    new data, logged after the holder, takes the champion even with a larger error, and the contest continues on
    those data; the old version offered again does not take it back."""
    name = tracking.registered_model_name("wave", "fno", "quick")

    def version(mse: float, data: str) -> str:
        record = tracking.log_experiment("wave", "fno", "boon", "quick", metrics={"mse": mse}, dataset_version=data,
                                         state_dict={"w": torch.tensor([mse])})
        assert record is not None and record.model_version is not None
        return record.model_version

    old = version(0.1, "md5-old")
    assert tracking.promote_if_better(name, old, "mse") is True
    new = version(0.4, "md5-new")
    assert tracking.version_dataset(name, new) == "md5-new"
    assert tracking.promote_if_better(name, new, "mse") is True and tracking.champion_version(name) == new
    # the old result offered again (`physml track` in an older checkout) is older than the holder: it stays out
    assert tracking.promote_if_better(name, old, "mse") is False and tracking.champion_version(name) == new
    assert tracking.promote_if_better(name, version(0.5, "md5-new"), "mse") is False
    better = version(0.3, "md5-new")
    assert tracking.promote_if_better(name, better, "mse") is True and tracking.champion_version(name) == better


def test_a_failure_while_opening_a_run_leaves_it_failed_not_running(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logging the dataset version is part of the run: if it fails, the run ends FAILED, not RUNNING forever."""
    def refuse(self, params):
        raise RuntimeError("store unavailable")

    monkeypatch.setattr(tracking.ExperimentRun, "log_params", refuse)
    with pytest.raises(RuntimeError, match="store unavailable"):
        with tracking.start_run("pme", "anp", "none", "quick", dataset_version="md5"):
            pass
    mlc = tracking.client(store)
    (run,) = mlc.search_runs([mlc.get_experiment_by_name("physml-pme").experiment_id])
    assert run.info.status == "FAILED"


def test_profiles_have_their_own_registered_model_and_champion(store: str) -> None:
    """A quick run (smaller network, other test set) never takes the paper profile's champion."""
    paper = tracking.log_experiment("wave", "fno", "boon", "paper", metrics={"mse": 0.01}, state_dict={"w": torch.zeros(1)})
    quick = tracking.log_experiment("wave", "fno", "boon", "quick", metrics={"mse": 0.005}, state_dict={"w": torch.ones(1)})
    assert paper is not None and quick is not None
    assert (paper.model_name, quick.model_name) == ("physml-wave-fno-paper", "physml-wave-fno-quick")
    assert tracking.promote_if_better(paper.model_name, paper.model_version, "mse") is True
    assert tracking.promote_if_better(quick.model_name, quick.model_version, "mse") is True
    assert tracking.load_state_dict("physml-wave-fno-paper")["w"].item() == 0.0


def test_find_run_matches_tags_and_registered_version_finishes_a_failed_registration(store: str) -> None:
    """Two runs with one digest are told apart by their model/constraint tags; a run whose model was logged
    but never registered (a failed registration) gets its version once, and a run without a model none."""
    for constraint in ("hardc", "probconserv"):
        tracking.log_experiment("heat", "anp", constraint, "quick", metrics={"mse": 0.1}, tags={"digest": "d1"},
                                state_dict={"w": torch.ones(1)}, register=False)
    hardc = tracking.find_run("heat", "digest", "d1", model="anp", constraint="hardc")
    probconserv = tracking.find_run("heat", "digest", "d1", model="anp", constraint="probconserv")
    assert None not in (hardc, probconserv) and hardc != probconserv
    assert tracking.find_run("heat", "digest", "d1", model="ensemble") is None
    version = tracking.registered_version("heat", "anp", "quick", probconserv)
    assert version == "1" and tracking.registered_version("heat", "anp", "quick", probconserv) == "1"
    bare = tracking.log_experiment("heat", "anp", "none", "quick", metrics={"mse": 0.2})
    assert bare is not None and tracking.registered_version("heat", "anp", "quick", bare.run_id) is None


def test_a_deleted_version_or_experiment_is_not_brought_back(store: str) -> None:
    """A version deleted from the registry (a model retired on purpose) is not registered again from its run,
    so it cannot become champion again; a deleted experiment is refused by name (MLflow keeps its name and
    would refuse the run with a bare exception), and its runs are no longer found."""
    record = tracking.log_experiment("heat", "anp", "probconserv", "quick", metrics={"mse": 0.1},
                                     tags={"digest": "d1"}, state_dict={"w": torch.ones(1)})
    assert record is not None and tracking.promote_if_better(record.model_name, record.model_version, "mse")
    mlc = tracking.client(store)
    mlc.delete_model_version(record.model_name, record.model_version)
    assert tracking.registered_version("heat", "anp", "quick", record.run_id) is None
    assert tracking.champion_version(record.model_name) is None
    assert mlc.search_model_versions(f"name = '{record.model_name}'") == []
    mlc.delete_experiment(record.experiment_id)
    assert tracking.find_run("heat", "digest", "d1", model="anp", constraint="probconserv") is None
    with pytest.raises(ValueError, match=rf"MLflow experiment 'physml-heat' \(id {record.experiment_id}\) in .* is "
                                         rf"deleted, so nothing can be logged to it: restore it"):
        tracking.log_experiment("heat", "anp", "none", "quick", metrics={"mse": 0.2})


_REPORT_TRACKER = """
import os, sys, time
from pathlib import Path
from physml import stages, tracking
from physml.config import load_params
root, params, sync, n = Path(sys.argv[1]), load_params(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
look = tracking.find_report_run


def slow_look(*args, **kwargs):
    found = look(*args, **kwargs)
    time.sleep(1.0)  # between looking and logging: every process would look before any logs, but for the lock
    return found


tracking.find_report_run = slow_look
tracking.client()  # the store opened (its first use in a process takes a while)
(sync / str(os.getpid())).touch()
while len(list(sync.iterdir())) < n:  # every process ready and waiting: they look together
    time.sleep(0.001)
print(stages.track_report(params, root, only_missing=True))
"""


def test_processes_tracking_one_result_at_once_log_it_once(store: str, tmp_path: Path) -> None:
    """``only_missing`` looks for the result's run and logs it under one lock (``tracking.result_lock``): three
    processes tracking the same report together, each pausing 1 s between looking and logging, leave one run,
    whose id each of them returns."""
    (tmp_path / "reports" / "quick").mkdir(parents=True)
    (tmp_path / "reports" / "quick" / "index.md").write_text("# physml results — profile `quick`\n")
    sync = tmp_path / "sync"
    sync.mkdir()
    tracking.client(store)  # its tables made here, not by the first process while the others wait
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _REPORT_TRACKER, str(tmp_path), str(ROOT / "params.yaml"),
                               str(sync), "3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    ids = set()
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-3000:]
        ids.add(out.decode().strip())
    mlc = tracking.client(store)
    runs = mlc.search_runs([mlc.get_experiment_by_name(tracking.REPORT_EXPERIMENT).experiment_id])
    assert len(runs) == 1 and ids == {runs[0].info.run_id}


def test_store_uris_locate_their_locks_and_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite URI's query is not part of its file (so its locks are the same file whatever the query); a
    database server's store, like SQLite, keeps its artifacts under the project (MLflow runs in this process),
    while a tracking server chooses its own."""
    monkeypatch.delenv("PHYSML_ARTIFACT_ROOT", raising=False)
    assert tracking._sqlite_path("sqlite:////x/m.db?timeout=30") == Path("/x/m.db")
    for uri in ("postgresql://u@db/mlflow", "mysql://u@db/mlflow", f"sqlite:///{tmp_path / 'm.db'}"):
        assert tracking.artifact_root(uri, tmp_path) == (tmp_path.resolve() / "mlartifacts").as_uri()
    for uri in ("http://mlflow.example:5000", "https://mlflow.example", "databricks"):
        assert tracking.artifact_root(uri, tmp_path) is None


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
        tracking.registered_model_name("heat/../x", "anp", "quick")
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
    versions = mlc.search_model_versions("name='physml-burgers-anp-quick'", max_results=1000)
    assert sorted(int(v.version) for v in versions) == list(range(1, 2 * n + 1))
    assert {v.run_id for v in versions} == {r.info.run_id for r in runs}


_PROMOTER = """
import os, sys, time
from pathlib import Path
from physml import tracking
version, sync, n, pause = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
read = tracking.champion_version

def slow_read(*args, **kwargs):  # between reading the holder and setting the alias, a pause of this process's own
    found = read(*args, **kwargs)
    time.sleep(pause)
    return found

tracking.champion_version = slow_read
tracking.client()  # the store opened (its first use in a process takes a while)
(sync / str(os.getpid())).touch()
while len(list(sync.iterdir())) < n:  # every process ready and waiting: they read together
    time.sleep(0.001)
tracking.promote_if_better(tracking.registered_model_name("wave", "fno", "quick"), version, "mse")
"""


def test_concurrent_promotions_leave_the_best_version_champion(store: str, tmp_path: Path) -> None:
    """Four processes promote their versions at the same instant, each pausing between reading the holder and
    setting the alias, the worst the longest: unserialised, all four would read "no champion" and the worst,
    writing last, would end champion. The read–compare–set of each is serialised, so the champion ends on the
    lowest error."""
    name = tracking.registered_model_name("wave", "fno", "quick")
    versions = {mse: _version_with("wave", mse=mse, accuracy=0.0) for mse in (0.9, 0.4, 0.2, 0.6)}
    sync = tmp_path / "sync"
    sync.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _PROMOTER, v, str(sync), str(len(versions)), str(0.5 + 2 * mse)],
                              env=env, stderr=subprocess.PIPE)
             for mse, v in versions.items()]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-3000:]
    assert tracking.champion_version(name) == versions[0.2]


def test_a_report_folder_is_logged_whole_as_a_run_of_the_reports_experiment(store: str, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """log_report keeps reports/<profile>/ (index.md and its figures) as the artifacts of a FINISHED run of
    ``physml-reports`` tagged with its profile; find_report_run finds it by tag; a folder without index.md is
    refused and ranks other than 0 log nothing."""
    folder = tmp_path / "reports" / "paper"
    (folder / "figures").mkdir(parents=True)
    (folder / "index.md").write_text("# physml results — profile `paper`\n")
    (folder / "figures" / "seed_study.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    run_id = tracking.log_report(folder, "paper", tags={"result_digest": "abc"})
    mlc = tracking.client(store)
    run = mlc.get_run(run_id)
    assert mlc.get_experiment(run.info.experiment_id).name == tracking.REPORT_EXPERIMENT == "physml-reports"
    assert run.info.status == "FINISHED" and run.data.tags["profile"] == "paper"
    assert run.data.tags["mlflow.runName"] == "report-paper"
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="report",
                                                     dst_path=str(tmp_path / "dl"), tracking_uri=store))
    assert (local / "index.md").read_text() == (folder / "index.md").read_text()
    assert (local / "figures" / "seed_study.png").read_bytes() == b"\x89PNG\r\n\x1a\n"
    assert tracking.find_report_run("result_digest", "abc", profile="paper") == run_id
    assert tracking.find_report_run("result_digest", "abc", profile="quick") is None
    with pytest.raises(ValueError, match="no index.md, so no report to log"):
        tracking.log_report(folder / "figures", "paper")
    monkeypatch.setenv("RANK", "1")
    assert tracking.log_report(folder, "paper") is None
    assert len(mlc.search_runs([run.info.experiment_id])) == 1


def test_a_champion_that_cannot_be_rebuilt_yields_to_an_equal_one_that_can(store: str) -> None:
    """A holder logged without model_config.json (before versions carried it) gives the alias to a version
    with one that is no worse beyond the margin, so load_model serves the champion; between two rebuildable
    versions the margin rule stands, and a worse one never takes it."""
    from physml.models import build_model

    config = {"variant": "plain", "fno": {"n_space": 1, "width": 4, "modes": 2, "n_layers": 1, "proj_width": 4}}
    net = build_model(config)
    name = tracking.registered_model_name("wave", "fno", "quick")

    def version(mse: float, with_config: bool) -> str:
        record = tracking.log_experiment("wave", "fno", "boon", "quick", metrics={"mse": mse},
                                         state_dict=net.state_dict(), model_config=config if with_config else None)
        assert record is not None and record.model_version is not None
        return record.model_version

    bare = version(0.3, with_config=False)
    assert tracking.promote_if_better(name, bare, "mse") is True
    worse = version(0.31, with_config=True)
    assert tracking.promote_if_better(name, worse, "mse") is False  # worse beyond the margin: not even to load it
    equal = version(0.3 + 1e-5, with_config=True)  # within the margin
    assert tracking.promote_if_better(name, equal, "mse") is True
    assert isinstance(tracking.load_model(name), type(net))
    assert tracking.promote_if_better(name, version(0.3, with_config=True), "mse") is False  # both rebuildable
    assert tracking.champion_version(name) == equal


def test_the_files_a_store_leaves_beside_it_are_ignored_by_git(store: str, tmp_path: Path) -> None:
    """What opening, tracking into and promoting in the project's default store (``<project>/mlflow.db``)
    leaves in the project folder is ignored by the project's .gitignore, so that `make quick` leaves `git status`
    clean: the files are collected from a real store's folder, not listed here."""
    version = _version_with("wave", mse=0.5, accuracy=0.0)
    with tracking.result_lock(store):
        pass
    tracking.promote_if_better(tracking.registered_model_name("wave", "fno", "quick"), version, "mse")
    left = sorted(p.name + ("/" if p.is_dir() else "") for p in tmp_path.iterdir())  # "/": a folder pattern
    assert {"mlflow.db", "mlflow.db.lock", "mlflow.db.log.lock", "mlflow.db.promote.lock"} <= set(left)
    proc = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *left], cwd=ROOT,
                          capture_output=True, text=True)
    unignored = [line.split("\t")[-1] for line in proc.stdout.splitlines() if line.startswith("::")]
    assert proc.stdout and not unignored, f"left in the project and not ignored by git: {unignored}"
