"""Datasets: contents equal the reference solution, the manifest schema guards physics, writes are atomic,
seeds are deterministic and independent per (case, split)."""

from __future__ import annotations

import copy
import re
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from physml import pdes
from physml.config import SPLITS, ParamsModel, read_params_yaml, validate_params
from physml.data import (
    MARKER,
    generate_case,
    is_complete,
    manifest_schema,
    open_dataset,
    split_seed_sequence,
    validate_manifest,
)

from conftest import fno_modes_for

ROOT = Path(__file__).resolve().parents[1]


def tiny_raw() -> dict[str, Any]:
    """The shipped params.yaml shrunk to a few samples per split and small grids (quick profile)."""
    raw = read_params_yaml(ROOT / "params.yaml")
    for case in raw["cases"].values():
        case["sizes"]["quick"] = {"train": 3, "val": 2, "test": 4}
        if "grid" in case:
            g = case["grid"]["quick"]
            nt = 1 if g.get("nt") == 1 else 3
            case["grid"]["quick"] = {"nx": 9, "nt": nt}
        if "sampling" in case:
            case["sampling"] = {"n_context": 7, "n_target_t": 3, "n_target_x": 5}
            case["test_grid"] = {"quick": {"nx": 9, "nt": 2}, "paper": {"nx": 9, "nt": 2}}
    fno_modes_for(raw, 4)  # a 9-point grid holds 4 Fourier modes (params.yaml is checked whole when loaded)
    return raw


@pytest.fixture(scope="module")
def tiny() -> ParamsModel:
    return validate_params(tiny_raw())


@pytest.fixture(scope="module")
def generated(tiny: ParamsModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    for case in pdes.names():
        generate_case(case, tiny, out, progress=False)
    return out


def _h5(out: Path, case: str, split: str) -> Path:
    return out / "quick" / case / f"{split}.h5"


@pytest.mark.parametrize("case", pdes.names())
def test_arrays_are_the_reference_solution(case: str, tiny: ParamsModel, generated: Path) -> None:
    problem = pdes.get(case)
    assert is_complete(generated / "quick" / case)
    with open_dataset(_h5(generated, case, "train")) as ds:
        assert ds.attrs["case"] == case and ds.attrs["family"] == problem.family
        assert ds.parameter_names == list(problem.parameter_names)
        assert ds["params"].shape == (3, len(problem.parameter_names))
        for i in (0, len(ds) - 1):
            s = ds.sample(i)
            p = dict(zip(problem.parameter_names, ds["params"][i], strict=True))
            if problem.family == "probconserv":
                # targets: a tensor grid of stratified times x sorted positions (shared by the slices)
                assert s["target_u"].shape == s["target_x"].shape == (3, 5)
                assert np.all(np.diff(s["target_x"], axis=1) > 0)
                t0, t1 = problem.t_domain
                strata = np.floor((s["target_t"] - t0) / (t1 - t0) * 3)
                np.testing.assert_array_equal(strata, [0, 1, 2])
                exact = problem.solve(p, s["target_x"][0], s["target_t"])
                np.testing.assert_allclose(s["target_u"], exact, rtol=1e-12, atol=1e-12)
                for j in range(2):
                    u = problem.solve(p, s["context_x"][j : j + 1], s["context_t"][j : j + 1])[0, 0]
                    assert s["context_u"][j] == pytest.approx(u, rel=1e-12, abs=1e-12)
                np.testing.assert_allclose(s["mass"], problem.mass(p, s["target_t"]), rtol=1e-12, atol=1e-12)
            else:
                x, t = ds["x"][:], ds["t"][:]
                assert x[0] == problem.x_domain[0] and x[-1] == problem.x_domain[1] and len(x) == 9
                full = problem.solve(p, x, np.concatenate([[problem.t_domain[0]], t]))
                np.testing.assert_array_equal(s["u0"], full[0])
                np.testing.assert_array_equal(s["u"], full[1:])
                assert "boundary" in s  # every operator case stores its boundary data
                np.testing.assert_array_equal(s["boundary"], problem.boundary_data(p, t))
        m = ds.manifest
        assert list(m["index"]) == [0, 1, 2] and m["finite"].all()
        if problem.nonnegative:
            assert (m["u_min"] >= -1e-9).all()


@pytest.mark.parametrize("case", [n for n in pdes.names() if pdes.get(n).family == "probconserv"])
def test_test_split_targets_are_the_regular_test_grid(case: str, generated: Path) -> None:
    """With ``test_grid`` the test targets are x_j = x_L + (x_R − x_L) j/(nx − 1), t_k = t₀ + (t₁ − t₀) k/nt
    for every function (the reference's evaluation grid), with the exact solution and mass there."""
    problem = pdes.get(case)
    (t0, t1), (xl, xr) = problem.t_domain, problem.x_domain
    with open_dataset(_h5(generated, case, "test")) as ds:
        for i in range(len(ds)):
            s = ds.sample(i)
            p = dict(zip(problem.parameter_names, ds["params"][i], strict=True))
            np.testing.assert_allclose(s["target_t"], t0 + (t1 - t0) * np.array([1, 2]) / 2, rtol=1e-15)
            np.testing.assert_allclose(s["target_x"], np.broadcast_to(np.linspace(xl, xr, 9), (2, 9)), rtol=1e-15)
            np.testing.assert_allclose(s["target_u"], problem.solve(p, s["target_x"][0], s["target_t"]), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(s["mass"], problem.mass(p, s["target_t"]), rtol=1e-12, atol=1e-12)
        assert set(ds.manifest["u_shape"]) == {"2x9"}


def test_values_list_fills_equal_blocks(generated: Path) -> None:
    """Stefan's test set: half p* = 0.5 and half p* = 0.6 (outside the training range on purpose)."""
    with open_dataset(_h5(generated, "stefan", "test")) as ds:
        np.testing.assert_array_equal(ds["params"][:, 0], [0.5, 0.5, 0.6, 0.6])
    with open_dataset(_h5(generated, "stefan", "train")) as ds:
        assert np.all((ds["params"][:, 0] >= 0.55) & (ds["params"][:, 0] <= 0.7))


def test_same_seed_gives_byte_identical_files(tiny: ParamsModel, generated: Path, tmp_path: Path) -> None:
    for case in ("stefan", "wave"):
        generate_case(case, tiny, tmp_path, progress=False)
        for split in SPLITS:
            a, b = _h5(generated, case, split), _h5(tmp_path, case, split)
            assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    other = tiny.model_copy(update={"seed": tiny.seed + 1})
    generate_case("stefan", other, tmp_path / "other", progress=False)
    with open_dataset(_h5(generated, "stefan", "train")) as a, open_dataset(_h5(tmp_path / "other", "stefan", "train")) as b:
        assert not np.array_equal(a["context_x"][:], b["context_x"][:])


def test_seed_streams_are_per_case_and_split() -> None:
    draws = {(c, s): split_seed_sequence(7, c, s).generate_state(2).tolist() for c in ("heat", "pme") for s in SPLITS}
    assert len({tuple(v) for v in draws.values()}) == 6
    assert split_seed_sequence(7, "heat", "train").generate_state(2).tolist() == draws[("heat", "train")]


def test_changing_one_case_leaves_another_untouched(generated: Path, tmp_path: Path) -> None:
    """A case's data depend on its own config alone: another case's edit changes neither its fingerprint nor
    its bytes, and the case generated last after all the others (the fixture) equals the same case generated
    alone, in a process that drew nothing before it (no random state shared between cases)."""
    from physml.data import fingerprint

    raw = tiny_raw()
    edited = copy.deepcopy(raw)
    edited["cases"]["pme"]["parameters"]["m"]["train"] = [2.0, 3.0]
    before, after = validate_params(raw), validate_params(edited)
    assert fingerprint("heat", after) == fingerprint("heat", before)
    assert fingerprint("pme", after) != fingerprint("pme", before)
    last = pdes.names()[-1]
    script = (f"from pathlib import Path; from physml.config import validate_params; from physml.data import "
              f"generate_case; import json, sys; generate_case({last!r}, validate_params(json.loads(sys.argv[1])), "
              f"Path(sys.argv[2]), progress=False)")
    subprocess.run([sys.executable, "-c", script, json.dumps(edited), str(tmp_path)], check=True, cwd=ROOT)
    for split in SPLITS:
        assert _h5(tmp_path, last, split).read_bytes() == _h5(generated, last, split).read_bytes(), split


def test_non_finite_boundary_data_fail_the_contract(tiny: ParamsModel, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """BOON trains on the stored boundary data: a NaN there fails the manifest's "finite" check, naming the
    case, the split and the file, and leaves no split behind, as a NaN in the field does."""
    problem = pdes.get("heat_neumann")
    monkeypatch.setattr(type(problem), "boundary_data", lambda self, params, t: np.full((len(t), 2), np.nan))
    with pytest.raises(ValueError, match=r"heat_neumann/train \(.*train\.h5\): dataset manifest failed validation:\n"
                                         r"column 'finite': check 'all values finite'"):
        generate_case("heat_neumann", tiny, tmp_path, progress=False)
    assert not is_complete(tmp_path / "quick" / "heat_neumann")
    assert not list((tmp_path / "quick" / "heat_neumann").glob("*.h5"))


def test_generation_repairs_an_edited_file(generated: Path, tiny: ParamsModel, tmp_path: Path) -> None:
    """Up to date means the files the marker lists have the sha256 it recorded: an edited manifest is
    regenerated (the data are the same: same seed), not kept for training to refuse later."""
    import shutil

    case_dir = tmp_path / "quick" / "pme"
    shutil.copytree(generated / "quick" / "pme", case_dir)
    assert is_complete(case_dir)
    manifest = case_dir / "train.manifest.csv"
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b"\n", b"\n ", 1))
    assert not is_complete(case_dir)
    generate_case("pme", tiny, tmp_path, progress=False)
    assert is_complete(case_dir) and manifest.read_bytes() == original
    marker = case_dir / MARKER
    record = marker.read_bytes()
    marker.write_bytes(record[:40])  # cut short: not a record, so not up to date
    assert not is_complete(case_dir)
    generate_case("pme", tiny, tmp_path, progress=False)
    assert is_complete(case_dir) and json.loads(marker.read_bytes()) == json.loads(record)


def test_a_nan_in_a_required_column_is_named_as_such(generated: Path) -> None:
    problem = pdes.get("pme")
    with open_dataset(_h5(generated, "pme", "train")) as ds:
        bad = copy.deepcopy(ds.manifest)
    bad.loc[0, "u_max"] = np.nan
    with pytest.raises(ValueError, match=r"(?s)^pme/train: .*column 'u_max': check not_nullable \(a NaN where a value is "
                                         r"required\) failed \(e\.g\. row 0\)"):
        validate_manifest(bad, manifest_schema(problem, (3, 5), {"m": (1.0, 6.0)}), where="pme/train")


def test_data_fingerprint_follows_the_config_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """physml/config.py resolves the output times and the splits' parameter draws, so an edit of it is an edit
    of every case's data source: the source digest (and with it the fingerprint) changes."""
    from physml.data import generate

    problem = pdes.get("heat")
    before = generate._source_digest(problem)
    config_file = Path(sys.modules[ParamsModel.__module__].__file__).resolve()
    read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read(self) + (b"\n" if self.resolve() == config_file else b""))
    assert generate._source_digest(problem) != before


def test_up_to_date_case_is_not_recomputed(tiny: ParamsModel, generated: Path) -> None:
    marker = generated / "quick" / "heat" / MARKER
    before = marker.stat().st_mtime_ns
    generate_case("heat", tiny, generated, progress=False)
    assert marker.stat().st_mtime_ns == before
    info = json.loads(marker.read_text())
    assert set(info["files"]) == {f"{s}{ext}" for s in SPLITS for ext in (".h5", ".manifest.csv")}


def test_error_midway_leaves_nothing_complete(tiny: ParamsModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problem = pdes.get("advection")
    calls = {"n": 0}
    original = problem.solve

    def flaky(params: Any, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] > 8:  # train (3 samples, 2 solves each) succeeds, val fails half-way
            raise RuntimeError("solver crashed")
        return original(params, x, t)

    monkeypatch.setattr(problem, "solve", flaky)
    with pytest.raises(RuntimeError, match="solver crashed"):
        generate_case("advection", tiny, tmp_path, progress=False)
    case_dir = tmp_path / "quick" / "advection"
    assert not is_complete(case_dir)
    assert not (case_dir / MARKER).exists()
    assert not (case_dir / "val.h5").exists() and not (case_dir / "val.manifest.csv").exists()
    assert not list(case_dir.glob(".*partial"))
    assert (case_dir / "train.manifest.csv").exists()  # the finished split is complete on its own
    with pytest.raises(ValueError, match="does not exist"):
        open_dataset(case_dir / "val.h5")
    monkeypatch.setattr(problem, "solve", original)
    generate_case("advection", tiny, tmp_path, progress=False)
    assert is_complete(case_dir)


def test_killed_run_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    raw = tiny_raw()
    raw["cases"]["heat"]["sizes"]["quick"] = {"train": 400, "val": 2, "test": 2}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    script = textwrap.dedent(
        f"""
        import time
        from physml import pdes
        from physml.config import load_params
        from physml.data import generate_case
        problem = pdes.get("heat")
        solve = problem.solve
        def slow(p, x, t):
            time.sleep(0.01)
            return solve(p, x, t)
        problem.solve = slow
        generate_case("heat", load_params({str(params_file)!r}), {str(tmp_path)!r}, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    case_dir = tmp_path / "quick" / "heat"
    deadline = time.monotonic() + 30
    while not list(case_dir.glob(".train.h5.*.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(case_dir.glob(".train.h5.*.partial")), "the run should have been killed while writing"
    assert not is_complete(case_dir)
    assert not (case_dir / "train.h5").exists() and not (case_dir / "train.manifest.csv").exists()


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("u_min", -0.5, "u >= 0"),
        ("finite", False, "all values finite"),
        ("mass_residual", 0.1, "mass balance residual"),
        ("mass_residual", -1.0, "mass balance residual in [0"),
        ("u_max", float("inf"), "'finite'"),
        ("u_min", float("-inf"), "'finite'"),
        ("u_shape", "3x4", "u_shape == 3x5"),
        ("m", 0.5, "m in [1, 50]"),
    ],
)
def test_manifest_schema_rejects_unphysical_rows(generated: Path, column: str, value: Any, check: str) -> None:
    problem = pdes.get("pme")
    with open_dataset(_h5(generated, "pme", "train")) as ds:
        good = ds.manifest
    schema = manifest_schema(problem, (3, 5), {"m": (1.0, 6.0)})
    validate_manifest(good, schema)
    bad = copy.deepcopy(good)
    bad.loc[1, column] = value
    with pytest.raises(ValueError) as info:
        validate_manifest(bad, schema)
    assert column in str(info.value) and check in str(info.value)


def test_manifest_schema_checks_the_table_as_a_whole(generated: Path) -> None:
    """u_min <= u_max on every row; with n_samples, exactly the rows 0..n-1 in order (a dropped, repeated
    or renumbered row, or an empty table, fails)."""
    problem = pdes.get("pme")
    with open_dataset(_h5(generated, "pme", "train")) as ds:
        good = ds.manifest
    n = len(good)
    schema = manifest_schema(problem, (3, 5), {"m": (1.0, 6.0)}, n_samples=n)
    validate_manifest(good, schema)
    swapped = good.copy()
    swapped.loc[0, "u_min"] = good.loc[0, "u_max"] + 1.0
    bad_tables = {"u_min <= u_max": swapped, f"rows index = 0..{n - 1}": good.iloc[1:],
                  "rows index = 0..": good.assign(index=good["index"] + 10)}
    bad_tables["rows index = 0.. "] = good.iloc[:0]
    for check, bad in bad_tables.items():
        with pytest.raises(ValueError, match=r"table: check .*" + re.escape(check.strip())):
            validate_manifest(bad, schema)


def test_torch_adapter_batches(generated: Path) -> None:
    import torch
    from torch.utils.data import DataLoader

    from physml.data.torch_dataset import TorchSplit

    ds = TorchSplit(_h5(generated, "heat_neumann", "test"), keys=["u0", "u", "params"])
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["u"].shape == (4, 3, 9) and batch["u0"].shape == (4, 9) and batch["u"].dtype == torch.float32
    with pytest.raises(ValueError, match="available"):
        TorchSplit(_h5(generated, "heat_neumann", "test"), keys=["target_u"])
