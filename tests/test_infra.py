"""infra/ and prefect.yaml, checked offline with the tools' own parsers and validators.

Each file must parse; the GPU work-pool template must pass Prefect's server-side schema and resolve
to a Kubernetes Job whose container asks for exactly `gpu` NVIDIA GPUs; the worker image must
install a CUDA torch before physml[pipeline]; DVC snippets must pass DVC's config schema; the MLflow
server script may only use options `mlflow server` has; names that tie files together (image tag,
working directory, service URL, pool names) must agree.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
TEMPLATE = INFRA / "k8s" / "gpu-work-pool.json"
DOCKERFILE = INFRA / "worker.Dockerfile"


def _template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


def _prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def _deployment(name: str) -> dict[str, Any]:
    (found,) = [d for d in _prefect_yaml()["deployments"] if d["name"] == name]
    return found


def _resolve(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """job_configuration with variable defaults + ``values`` substituted, as a Prefect worker does."""
    from prefect.utilities.templating import apply_values

    props = template["variables"]["properties"]
    merged = {k: v["default"] for k, v in props.items() if v.get("default") is not None}
    merged.update(values)
    return apply_values(copy.deepcopy(template["job_configuration"]), merged)


def _container(job_configuration: dict[str, Any]) -> dict[str, Any]:
    return job_configuration["job_manifest"]["spec"]["template"]["spec"]["containers"][0]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


# ---- Kubernetes GPU work pool ---------------------------------------------------------------------


def test_gpu_template_passes_prefect_server_validation() -> None:
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.utilities.templating import find_placeholders

    template = _template()
    assert set(template) == {"job_configuration", "variables"}
    pool = WorkPoolCreate(name="physml-gpu", type="kubernetes", base_job_template=template)
    assert pool.base_job_template == template
    declared = set(template["variables"]["properties"])
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    assert used <= declared and "gpu" in used

    broken = _template()
    _container(broken["job_configuration"])["resources"]["limits"]["nvidia.com/gpu"] = "{{ gpus }}"
    with pytest.raises(ValueError, match="gpus"):  # the validator has teeth: an undeclared name fails
        WorkPoolCreate(name="x", type="kubernetes", base_job_template=broken)


@pytest.mark.parametrize("gpu", [0, 1, 4])
def test_gpu_variable_becomes_the_nvidia_gpu_limit(gpu: int) -> None:
    resolved = _resolve(_template(), {"gpu": gpu, "image": "registry.example/physml-worker:1"})
    container = _container(resolved)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpu  # an int, not "4"
    assert container["image"] == "registry.example/physml-worker:1"
    leftovers = re.findall(r"\{\{.*?\}\}", json.dumps(resolved["job_manifest"]))
    assert leftovers == [], f"unresolved placeholders in the Job manifest: {leftovers}"
    manifest = resolved["job_manifest"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    assert manifest["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container["name"] == "prefect-job"  # the name the Kubernetes worker looks for
    # credentials come from a Secret (optional), not the plain-text env; a rebuilt :latest is pulled again
    assert container["envFrom"] == [{"secretRef": {"name": "physml-flow", "optional": True}}]
    assert container["imagePullPolicy"] == "Always"


def test_gpu_variable_schema_bounds_and_default() -> None:
    gpu = _template()["variables"]["properties"]["gpu"]
    assert (gpu["type"], gpu["minimum"], gpu["default"]) == ("integer", 0, 1)
    assert gpu["maximum"] >= 1


def test_the_store_claim_is_mounted_at_the_paper_deployments_root() -> None:
    """The volume that keeps a scheduled run's outputs and the flow's cache (infra/k8s/store.yaml) is what the
    template mounts, at the folder the paper deployment passes as the flow's ``root``."""
    (claim,) = yaml.safe_load_all((INFRA / "k8s" / "store.yaml").read_text())
    assert claim["kind"] == "PersistentVolumeClaim" and claim["metadata"]["namespace"] == "physml"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # one node; one run at a time: concurrency_limit 1
    pod = _resolve(_template(), {})["job_manifest"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    paper = _deployment("paper")
    assert mount["mountPath"] == paper["parameters"]["root"]
    (pull,) = paper["pull"]
    workdir = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    assert Path(mount["mountPath"]).parent == Path(workdir)  # beside the image's code, not over it:
    copied = {Path(name).name for op, args in _dockerfile() if op == "COPY" for name in args.split()[:-1]}
    assert {"physml", "flows", "params.yaml"} <= copied and Path(mount["mountPath"]).name not in copied
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]  # the volume is writable
    other = _resolve(_template(), {"store_claim": "team-store"})["job_manifest"]["spec"]["template"]["spec"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in other["volumes"] if "persistentVolumeClaim" in v] == [
        "team-store"]


# ---- worker image ---------------------------------------------------------------------------------


def test_dockerfile_installs_cuda_torch_before_physml_pipeline() -> None:
    steps = _dockerfile()
    assert steps[0][0] in ("ARG", "FROM") and any(op == "FROM" for op, _ in steps)
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX_URL"])
    assert args["TORCH_SPEC"].strip('"').startswith("torch")
    runs = [a for op, a in steps if op == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if '--index-url "${TORCH_INDEX_URL}"' in r and "${TORCH_SPEC}" in r)
    physml_step = next(i for i, r in enumerate(runs) if '".[pipeline]"' in r)
    assert torch_step < physml_step, "CUDA torch must be installed before physml's torch range is resolved"
    assert "import torch, physml" in runs[physml_step]  # the image build fails if either import fails
    copied = " ".join(a for op, a in steps if op == "COPY").split()
    for needed in ("pyproject.toml", "physml", "flows", "dvc.yaml"):  # dvc.yaml: the flow's code deps
        assert needed in copied, needed
    ignore = (INFRA / "worker.Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore and "!physml/" in ignore and "!flows/" in ignore and "!pyproject.toml" in ignore
    assert "!dvc.yaml" in ignore
    # an unprivileged user owns the working directory; the pod template refuses to run the image as root
    (user,) = [a for op, a in steps if op == "USER"]
    assert any(f"--uid {user}" in r for r in runs) and any("chown -R physml:physml /opt/physml" in r for r in runs)
    pod = _template()["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == int(user)


def test_image_workdir_is_the_paper_working_directory_and_template_default() -> None:
    workdir = [a for op, a in _dockerfile() if op == "WORKDIR"][-1]
    (pull,) = _deployment("paper")["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == workdir
    props = _template()["variables"]["properties"]
    assert props["env"]["default"]["PHYSML_PROJECT_DIR"] == workdir
    build_tag = re.search(r"docker build -f infra/worker\.Dockerfile -t (\S+) \.", DOCKERFILE.read_text()).group(1)
    assert props["image"]["default"] == build_tag == _deployment("paper")["work_pool"]["job_variables"]["image"]


# ---- prefect.yaml ---------------------------------------------------------------------------------


def test_prefect_yaml_deployments() -> None:
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.utilities.importtools import import_object

    config = _prefect_yaml()
    (default_pull,) = config["pull"]
    assert default_pull == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $PHYSML_PROJECT_DIR }}"}
    }
    assert callable(import_object("prefect.deployments.steps.set_working_directory"))
    assert {d["name"] for d in config["deployments"]} == {"quick", "paper"}

    quick, paper = _deployment("quick"), _deployment("paper")
    for d in (quick, paper):
        assert d["entrypoint"] == "flows/pipeline.py:pipeline"
    assert quick["parameters"]["profile"] == "quick" and quick["work_pool"]["name"] == "physml-process"
    assert "schedules" not in quick
    assert quick["concurrency_limit"] == paper["concurrency_limit"] == 1  # one run per checkout / per pool
    assert paper["parameters"]["profile"] == "paper" and paper["work_pool"]["name"] == "physml-gpu"
    (schedule,) = paper["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises on a bad cron
    assert cron.cron == "0 3 * * 0" and schedule["active"] is True

    declared = _template()["variables"]["properties"]
    jv = paper["work_pool"]["job_variables"]
    assert set(jv) <= set(declared), f"job variables not in the pool template: {set(jv) - set(declared)}"
    assert declared["gpu"]["minimum"] <= jv["gpu"] <= declared["gpu"]["maximum"]


# ---- Dask -----------------------------------------------------------------------------------------


def test_the_flows_local_dask_cluster_runs_one_thread_per_worker_process() -> None:
    """``--dask`` of both flows: a DaskTaskRunner over a LocalCluster of :data:`flows.pipeline.LOCAL_CLUSTER`
    (processes, one thread each: the solvers hold the GIL), each worker bounded by Dask's default memory limit
    (the machine's memory over the workers), not a fixed size a paper-sized case would outgrow."""
    from distributed import Client, LocalCluster
    from distributed.system import MEMORY_LIMIT
    from prefect_dask import DaskTaskRunner

    from flows.pipeline import LOCAL_CLUSTER

    runner = DaskTaskRunner(cluster_kwargs={**LOCAL_CLUSTER, "n_workers": 2})
    assert runner.cluster_kwargs == {"threads_per_worker": 1, "processes": True, "n_workers": 2}
    kwargs = {**LOCAL_CLUSTER, "n_workers": 1, "processes": False}  # in-process: cheap on CI
    with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
        assert client.submit(pow, 3, 4).result(timeout=30) == 81
        (worker,) = cluster.scheduler_info["workers"].values()
        assert worker["nthreads"] == 1 and worker["memory_limit"] == MEMORY_LIMIT


def test_dask_kubernetes_cluster_spec() -> None:
    spec = yaml.safe_load((INFRA / "dask" / "kubernetes.yaml").read_text())
    assert (spec["apiVersion"], spec["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    name = spec["metadata"]["name"]
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    image = _template()["variables"]["properties"]["image"]["default"]
    assert worker["image"] == scheduler["image"] == image  # tasks must be able to import physml
    assert worker["imagePullPolicy"] == scheduler["imagePullPolicy"] == "Always"  # a rebuilt :latest, everywhere
    paper = next(d for d in _prefect_yaml()["deployments"] if d["name"] == "paper")
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert env["PHYSML_TRACKING_URI"] == paper["work_pool"]["job_variables"]["env"]["PHYSML_TRACKING_URI"]
    assert worker["args"][:2] == ["dask", "worker"] and scheduler["args"][:2] == ["dask", "scheduler"]
    service = spec["spec"]["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == name
    port_names = {p["name"] for p in scheduler["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= port_names
    assert any(p["port"] == 8786 for p in service["ports"])


# ---- MLflow server --------------------------------------------------------------------------------


def _serve_options() -> set[str]:
    text = (INFRA / "mlflow" / "serve.sh").read_text()
    command = text[text.index("exec mlflow server") :]
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", command))


def test_mlflow_serve_script_uses_only_real_server_options() -> None:
    import mlflow.cli

    known = {opt for p in mlflow.cli.server.params for opt in (*p.opts, *p.secondary_opts)}
    used = _serve_options()
    assert {"--backend-store-uri", "--artifacts-destination", "--serve-artifacts"} <= used
    assert used <= known, f"not options of `mlflow server`: {used - known}"
    check = subprocess.run(["bash", "-n", str(INFRA / "mlflow" / "serve.sh")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_mlflow_compose_and_k8s_wiring() -> None:
    compose = yaml.safe_load((INFRA / "mlflow" / "docker-compose.yaml").read_text())
    services = compose["services"]
    mlflow_service = services["mlflow"]
    assert mlflow_service["command"] == ["bash", "/serve.sh"]
    assert "./serve.sh:/serve.sh:ro" in mlflow_service["volumes"]
    env = mlflow_service["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    host = re.match(r"postgresql://[^@]+@([^:/]+)", env["MLFLOW_BACKEND_STORE_URI"]).group(1)
    assert host in services and env["MLFLOW_S3_ENDPOINT_URL"].split("//")[1].split(":")[0] in services
    assert set(mlflow_service["depends_on"]) <= set(services)

    docs = list(yaml.safe_load_all((INFRA / "mlflow" / "k8s.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    deployment, service = kinds["Deployment"], kinds["Service"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    url = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:{port['port']}"
    assert _deployment("paper")["work_pool"]["job_variables"]["env"]["PHYSML_TRACKING_URI"] == url
    assert container["image"] == mlflow_service["image"]


# ---- DVC remotes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s3", "gcs", "local"])
def test_dvc_remote_snippets_pass_dvc_config_schema(name: str) -> None:
    from dvc.config import Config

    conf = Config.validate(Config.load_file(str(INFRA / "dvc" / f"remote-{name}.config")))
    default = conf["core"]["remote"]
    assert default in conf["remote"]
    url = conf["remote"][default]["url"]
    assert url.startswith({"s3": "s3://", "gcs": "gs://", "local": "/"}[name])


def test_dvc_schema_rejects_a_misspelled_option() -> None:
    from dvc.config import Config, ConfigError

    with pytest.raises(ConfigError, match="regionn"):
        Config.validate({"remote": {"storage": {"url": "s3://bucket/x", "regionn": "eu-west-1"}}})


# ---- README ---------------------------------------------------------------------------------------


def test_readme_documents_every_infra_file() -> None:
    readme = (INFRA / "README.md").read_text()
    files = [p.relative_to(INFRA).as_posix() for p in INFRA.rglob("*") if p.is_file() and p.name != "README.md"]
    missing = [f for f in files if f"`{f}`" not in readme]
    assert not missing, f"infra/README.md does not mention: {missing}"
    for line in readme.splitlines():
        if line.startswith(("prefect ", "PHYSML_PROJECT_DIR")):
            shlex.split(line.split("#")[0])  # every shown command is well-quoted


GPU_CHECK = INFRA / "gpu" / "check.sh"
WITHOUT_SERVICES = INFRA / "gpu" / "without_services"


def _gpu_check(tmp_path: Path, budget: int, cases: str, **extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "DEVICE": "cpu", "PROFILE": "quick", "CASES": cases, "SPEED": "no",
           "WHEELS": "none", "PYTHON": sys.executable, "PYTHONPATH": str(WITHOUT_SERVICES), **extra}
    run = subprocess.run(["bash", str(GPU_CHECK), str(budget)], capture_output=True, text=True, env=env, timeout=120)
    return run, out


def test_gpu_check_reports_a_stage_that_stops_and_skips_what_the_budget_cannot_start(tmp_path: Path) -> None:
    """check.sh runs a case's stages while 60 s or more of its budget are left, writes <case>.json with where
    it stopped (here: an unknown case, refused by generate), and skips the cases the budget cannot start."""
    run, out = _gpu_check(tmp_path, 90, "nosuchcase")
    assert run.returncode == 0, run.stderr
    result = json.loads((out / "nosuchcase.json").read_text())
    stopped = re.fullmatch(r"stopped in generate \(exit (\d+)\)", result["status"])
    assert stopped and int(stopped.group(1)) not in (0, 124) and result["metrics"] == {}
    assert "nosuchcase" in (out / "check.log").read_text()
    run, out = _gpu_check(tmp_path, 59, "burgers_dirichlet stokes2")
    log = (out / "check.log").read_text()
    assert "burgers_dirichlet skipped" in log and "stokes2 skipped" in log
    assert not (out / "burgers_dirichlet.json").exists()


def test_gpu_check_stops_a_stage_at_the_budget_and_says_so(tmp_path: Path) -> None:
    """A stage still running when the budget ends is stopped there, and <case>.json says "stopped in <stage>
    (budget)". The interpreter is a wrapper whose physml stages outlast any budget (everything else runs as
    usual), so the budget, not the stage, decides; a case may start with CASE_MIN_SECONDS (here 1) left."""
    slow = tmp_path / "python"
    slow.write_text(f'#!/usr/bin/env bash\n[ "$1 $2" = "-m physml.cli" ] && exec sleep 600\nexec "{sys.executable}" "$@"\n')
    slow.chmod(0o755)
    run, out = _gpu_check(tmp_path, 15, "burgers_dirichlet", PYTHON=str(slow), CASE_MIN_SECONDS="1")
    assert run.returncode == 0, run.stderr
    result = json.loads((out / "burgers_dirichlet.json").read_text())
    assert result["status"] == "stopped in generate (budget)" and result["seconds"] == {}
    assert "generate stopped after" in (out / "check.log").read_text()
    for bad in ({"CASE_MIN_SECONDS": "0"}, {"CASE_MIN_SECONDS": "soon"}):
        refused, _ = _gpu_check(tmp_path, 12, "burgers_dirichlet", **bad)
        assert refused.returncode == 2 and "CASE_MIN_SECONDS" in refused.stderr


def test_without_services_blocks_what_the_gpu_machine_lacks_and_the_stages_import_without_them() -> None:
    """The dry run's premise: with infra/gpu/without_services on PYTHONPATH mlflow, prefect and dvc fail to
    import, and the modules the CLI stages run (evaluate with --no-track) import all the same."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WITHOUT_SERVICES), str(ROOT)])}
    for name in ("mlflow", "prefect", "dvc"):
        blocked = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, env=env)
        assert blocked.returncode != 0 and "not installed on the GPU machine" in blocked.stderr
    stages = "import physml.cli, physml.stages, physml.experiments.boon, physml.data.generate"
    ok = subprocess.run([sys.executable, "-c", stages], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
