"""prefect.yaml against a REAL Prefect server, work pools, worker and deployment run.

What it proves: the repository's prefect.yaml deploys as written (both deployments, pull steps,
schedule, job variables); the GPU work pool's base job template (infra/) passes the server's own
validation; a process worker picks up a run of the `quick` deployment, the pull step moves it into
the project folder, and the run finishes COMPLETED having written its output there.

Everything lives in a temp folder (PREFECT_HOME, the project copy, the outputs); every process the
test starts is stopped in `finally`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import tiny_params

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))

# (entrypoint, parameters of the `quick` deployment under test, output the run must write, relative to
# the project). The project copy gets the tiny params.yaml of conftest (one case per family).
TARGET: tuple[str, dict[str, Any], str] = ("flows/pipeline.py:pipeline", {"profile": "quick"}, "reports/quick/index.md")

# What the run needs from the checkout (physml itself is imported from the installed package).
PROJECT_FILES = ("flows", "params.yaml", "dvc.yaml", "dvc.lock")

pytestmark = pytest.mark.services


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}{path}", data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if _api(url, "/health") is True:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the process group this test started, then SIGKILL it after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess:
    result = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _project_copy(dst: Path) -> Path:
    """The checkout's files a run needs + the repo's prefect.yaml with TARGET's entrypoint/parameters."""
    dst.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, dst / name)
    (dst / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entrypoint, parameters, _ = TARGET
    for deployment in config["deployments"]:
        deployment["entrypoint"] = entrypoint
        deployment["parameters"] = {**deployment.get("parameters", {}), **parameters}
    (dst / "prefect.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dst


def test_quick_deployment_runs_on_a_real_server_pool_and_worker(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    project = _project_copy(tmp_path / "project")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_TRACKING_URI", "PHYSML_")) and k != "RANK"
    }
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_HEARTBEAT_SECONDS="5",
        DO_NOT_TRACK="1",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server = worker = None
    try:
        with server_log.open("w") as out:
            server = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait_healthy(url, server, server_log)

        _cli(["work-pool", "create", "physml-process", "--type", "process"], env, project)
        _cli(
            ["work-pool", "create", "physml-gpu", "--type", "kubernetes",
             "--base-job-template", str(ROOT / "infra" / "k8s" / "gpu-work-pool.json")],
            env, project,
        )  # the server validates every job_configuration placeholder against the variables schema
        _cli(["--no-prompt", "deploy", "--all", "--prefect-file", str(project / "prefect.yaml")], env, project)

        deployments = {d["name"]: d for d in _api(url, "/deployments/filter", {})}
        assert set(deployments) == {"quick", "paper"}
        quick, paper = deployments["quick"], deployments["paper"]
        assert quick["work_pool_name"] == "physml-process" and quick["parameters"] == {**TARGET[1]}
        assert quick["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PHYSML_PROJECT_DIR }}"}}
        ]
        assert paper["work_pool_name"] == "physml-gpu" and paper["job_variables"]["gpu"] == 1
        assert [s["schedule"]["cron"] for s in paper["schedules"]] == ["0 3 * * 0"]
        gpu_pool = _api(url, "/work_pools/physml-gpu")
        limits = gpu_pool["base_job_template"]["job_configuration"]["job_manifest"]["spec"]["template"]["spec"][
            "containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "{{ gpu }}"

        # The worker starts outside the project: only the pull step can move the run into it.
        with worker_log.open("w") as out:
            worker = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", "physml-process", "--type", "process"],
                env={**env, "PHYSML_PROJECT_DIR": str(project)}, cwd=tmp_path,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        output = project / TARGET[2]
        assert not output.exists()
        flow_name = _api(url, f"/flows/{quick['flow_id']}")["name"]
        started = time.time()
        run = subprocess.run(
            [PREFECT, "deployment", "run", f"{flow_name}/quick", "--watch", "--watch-timeout", "240"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-2000:]}\nworker:\n{worker_log.read_text()[-4000:]}"

        runs = _api(url, "/flow_runs/filter", {"deployments": {"id": {"any_": [quick["id"]]}}})
        assert len(runs) == 1
        assert runs[0]["state"]["type"] == "COMPLETED"
        assert runs[0]["parameters"] == {**TARGET[1]}
        assert output.is_file() and output.stat().st_mtime >= started - 1.0
        metrics = sorted((project / "metrics" / "quick").glob("*/*/*.json"))  # metrics files and per-time records
        # heat: 2 models × (7 constraints, seeds.json, made_from.json); stokes2: 4 constraints, seeds.json,
        # per_time.json and made_from.json
        assert len(metrics) == 25, metrics
        assert (project / "metrics" / "quick" / "stokes2" / "fno" / "seeds.json").is_file()
        assert (project / "mlflow.db").is_file()  # MLflow ran inside the project (PHYSML_PROJECT_DIR)
    finally:
        _stop(worker)  # before the server, so the worker can deregister instead of retrying forever
        _stop(server)
