"""The generate spine end to end: CLI on a tiny params file, the verification report, the Prefect flow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from physml.cli import main
from physml.data import is_complete, open_dataset

from conftest import fno_modes_for

ROOT = Path(__file__).resolve().parents[1]


def _tiny_params(tmp_path: Path) -> Path:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())
    for case in raw["cases"].values():
        case["sizes"]["quick"] = {"train": 2, "val": 1, "test": 3}  # pme's test split holds its 3 values of m
        if "grid" in case:
            case["grid"]["quick"] = {"nx": 9, "nt": 2}
    fno_modes_for(raw, 4)  # a 9-point grid holds 4 Fourier modes (params.yaml is checked whole when loaded)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cli_generates_and_is_idempotent(tmp_path: Path) -> None:
    params = _tiny_params(tmp_path)
    out = tmp_path / "data"
    for case in ("stefan", "wave"):
        assert main(["generate", "--case", case, "--params", str(params), "--out", str(out), "--no-progress"]) == 0
        assert is_complete(out / "quick" / case)
    with open_dataset(out / "quick" / "wave" / "test.h5") as ds:
        assert ds["u"].shape == (3, 2, 9)
    stamp = (out / "quick" / "stefan" / "train.h5").stat().st_mtime_ns
    assert main(["generate", "--case", "stefan", "--params", str(params), "--out", str(out), "--no-progress"]) == 0
    assert (out / "quick" / "stefan" / "train.h5").stat().st_mtime_ns == stamp


def test_cli_generate_takes_the_project_root_as_the_other_stages_do(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    params = _tiny_params(tmp_path)
    assert main(["generate", "--case", "wave", "--params", str(params), "--root", str(tmp_path), "--no-progress"]) == 0
    assert is_complete(tmp_path / "data" / "quick" / "wave")
    with pytest.raises(SystemExit):  # one or the other
        main(["generate", "--case", "wave", "--params", str(params), "--root", str(tmp_path), "--out", str(tmp_path)])
    assert "not allowed with argument" in capsys.readouterr().err


def test_subcommand_help_describes_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["seed-study", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Retrain with every seed of the case's matrix group" in out and "ProbConserv the plain black box" in out


def test_cli_rejects_unknown_case_with_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = _tiny_params(tmp_path)
    assert main(["generate", "--case", "nope", "--params", str(params), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cases.nope" in err and "heat" in err


def test_cli_help_runs_as_a_program() -> None:
    res = subprocess.run([sys.executable, "-m", "physml.cli", "--help"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "generate" in res.stdout and "verify" in res.stdout


def test_verify_writes_the_table(tmp_path: Path) -> None:
    assert main(["verify", "--out", str(tmp_path), "--case", "heat", "--case", "wave"]) == 0
    assert not (tmp_path / "solver_verification.md").exists()  # a partial check leaves the full report alone
    text = (tmp_path / "solver_verification-heat-wave.md").read_text()
    assert "| case | check | reference | error | measured order | expected order | pass |" in text
    rows = [line for line in text.splitlines() if line.startswith("| heat ") or line.startswith("| wave ")]
    assert rows and all(line.rstrip().endswith("| yes |") for line in rows)
    assert "Only the cases heat, wave: `physml verify` without `--case` checks all." in text


def test_verification_table_gives_rounding_noise_as_a_bound() -> None:
    """Conservation checks of exact formulas measure rounding noise, whose digits and power of ten moved with
    the numpy build (pme m = 3: 1.076e-12 on one, below 1e-12 on another): all read "< 1e-09"; a
    discretisation error keeps its digits."""
    from physml.pdes.base import VerificationRecord
    from physml.verify import verification_table

    def cell(error: float) -> str:
        return verification_table([VerificationRecord("c", "k", "r", error)]).splitlines()[-1].split(" | ")[3]

    assert cell(1.076e-12) == cell(9.8e-13) == cell(0.0) == cell(3.6e-10) == "< 1e-09"
    assert (cell(1e-9), cell(1.5e-5)) == ("1.000e-09", "1.500e-05")


def test_verify_exits_non_zero_when_a_check_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`physml verify` (and `make verify`) is a gate: a failing solver check is written to the table and the
    command exits 1 naming how many fail."""
    from physml import pdes
    from physml.pdes.base import VerificationRecord

    wrong = VerificationRecord(case="wave", check="a check that fails", reference="-", error=1.0, tolerance=1e-3)
    monkeypatch.setattr(type(pdes.get("wave")), "verification", lambda self: [wrong])
    assert main(["verify", "--out", str(tmp_path), "--case", "wave"]) == 1
    assert "1 solver check(s) fail" in capsys.readouterr().err
    assert "| wave | a check that fails |" in (tmp_path / "solver_verification-wave.md").read_text()


def test_verify_refuses_an_unknown_case_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--out", str(tmp_path / "reports"), "--case", "heat", "--case", "nope"]) == 2
    assert "unknown case 'nope'; known cases: heat" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def test_prefect_flow_fans_out_one_task_per_case_also_on_dask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    params = _tiny_params(tmp_path)
    code = f"""
import prefect_dask
from prefect.testing.utilities import prefect_test_harness
from flows.generate import generate, run_generate

through_dask = []
_submit = prefect_dask.DaskTaskRunner.submit
def submit(self, task, parameters, *args, **kwargs):  # what the Dask runner was handed, by task and case
    through_dask.append((task.name, parameters["case"]))
    return _submit(self, task, parameters, *args, **kwargs)
prefect_dask.DaskTaskRunner.submit = submit

with prefect_test_harness(server_startup_timeout=60):
    result = generate(cases=["heat", "stokes2"], params_path={str(params)!r}, out={str(tmp_path / 'data')!r})
    print(sorted(result), "dask saw", through_dask)
    on_dask = run_generate(cases=["wave"], params_path={str(params)!r}, out={str(tmp_path / 'data')!r}, dask=True, n_workers=1)
    print("dask", sorted(on_dask), "dask saw", through_dask)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "['heat', 'stokes2'] dask saw []" in res.stdout  # the default runner: nothing through Dask
    assert "dask ['wave'] dask saw [('generate-case', 'wave')]" in res.stdout
    for case in ("heat", "stokes2", "wave"):
        assert is_complete(tmp_path / "data" / "quick" / case)
