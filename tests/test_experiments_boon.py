"""BOON experiments end to end on tiny data: generate → train → constrain → evaluate.

What is checked is what BOON guarantees (Saad et al., ICLR 2023): whatever the (barely trained) weights,
the corrected operator meets the boundary condition to float64 round-off — Dirichlet values on every wall,
Neumann data on the one-sided second-order stencil — while the plain FNO does not; the overwrite control meets
it as exactly and is the plain FNO everywhere else; the metrics files are
flat {name: float}; and wrong-shaped boundary data stop the experiment with a clear error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from physml import pdes, stages, tracking
from physml.config import ParamsModel, load_params
from physml.experiments import boon
from physml.models import BOONFNO, build_model
from physml.training import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-10


def tiny_params(seeds: int = 1, **grids: dict) -> ParamsModel:
    """params.yaml with a tiny quick profile: small grids and splits, a 2-layer width-8 FNO (time axis padded
    by 2 in the multi-step cases), 2 epochs, ``seeds`` seeds in the seed study."""
    data = load_params(ROOT / "params.yaml").model_dump(mode="json", exclude_none=True)
    for case in data["cases"].values():
        for name, spec in list(case["parameters"].items()):
            if "fixed" in spec:
                case["parameters"][name] = spec["fixed"]
    for case, grid in grids.items():
        data["cases"][case]["grid"]["quick"] = grid
        data["cases"][case]["sizes"]["quick"] = {"train": 6, "val": 3, "test": 4}
    data["models"]["fno"]["quick"] = {"width": 8, "modes": 3, "layers": 2, "time_padding": 2,
                                      "train": {"epochs": 2, "batch_size": 3, "lr": 1e-3, "weight_decay": 0.0,
                                                "lr_step": 10, "lr_gamma": 0.5}}
    data["models"]["fno"]["cases"] = {}
    data["matrix"]["boon"]["seeds"] = {"quick": seeds, "paper": 1}
    return ParamsModel.model_validate(data)


@pytest.fixture(scope="module")
def heat_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ParamsModel, Path, dict]:
    params = tiny_params(heat_neumann={"nx": 16, "nt": 4})
    root = tmp_path_factory.mktemp("boon_heat")
    stages.generate("heat_neumann", params, root, progress=False)
    stages.train("heat_neumann", "fno", params, root, progress=False)
    stages.constrain("heat_neumann", "fno", params, root)
    results = stages.evaluate("heat_neumann", "fno", params, root)
    return params, root, results


def test_round_trip_heat_neumann_files_and_flat_metrics(heat_run: tuple[ParamsModel, Path, dict]) -> None:
    params, root, results = heat_run
    lay = stages.Layout(root, params.profile)
    models = lay.models("heat_neumann", "fno")
    assert (models / "plain.pt").is_file() and (models / "boon.pt").is_file()
    summary = json.loads((models / "train_summary.json").read_text())
    assert summary["plain"]["epochs"] == 2 and summary["boon"]["parameters"] == summary["plain"]["parameters"]
    metrics_dir = lay.metrics("heat_neumann", "fno")
    assert set(results) == {"none", "overwrite", "boon", "boon_posthoc"}
    for name, values in results.items():
        on_disk = json.loads((metrics_dir / f"{name}.json").read_text())
        assert on_disk == values
        assert all(isinstance(v, float) and np.isfinite(v) for v in on_disk.values())
        assert {"rel_l2", "rel_l2_final", "boundary_max_abs"} <= set(on_disk)
    per_time = json.loads((metrics_dir / "per_time.json").read_text())
    records = per_time["rel_l2_per_time"]  # records, as dvc plots reads them
    assert len(records) == 4 and all(set(r) == {"t", *results} for r in records)
    assert all(records[-1][k] == results[k]["rel_l2_final"] for k in results)
    assert np.isfinite(per_time["truth_boundary_max_abs"])
    for fig in ("error_over_time.png", "boundary_gradient.png", "field_error.png"):
        assert (metrics_dir / "figures" / fig).stat().st_size > 0
    assert not list(metrics_dir.rglob(".*partial*"))


def test_boon_meets_neumann_data_on_the_stencil(heat_run: tuple[ParamsModel, Path, dict]) -> None:
    """(−3u₀ + 4u₁ − u₂)/(2h) = 0 at x = 0 and (3u_N − 4u_{N−1} + u_{N−2})/(2h) = U sin(πt) at x = 1."""
    params, root, results = heat_run
    lay = stages.Layout(root, params.profile)
    with h5py.File(lay.predictions("heat_neumann", "fno") / "predictions.h5", "r") as fh:
        x, t = fh["x"][:], fh["t"][:]
        preds = {k: fh[k][:] for k in ("none", "overwrite", "boon", "boon_posthoc")}
    h = x[1] - x[0]
    with h5py.File(lay.data("heat_neumann") / "test.h5", "r") as fh:
        U = fh["params"][:, 2]
    for name in ("overwrite", "boon", "boon_posthoc"):
        u = preds[name]
        left = (-3 * u[..., 0] + 4 * u[..., 1] - u[..., 2]) / (2 * h)
        right = (3 * u[..., -1] - 4 * u[..., -2] + u[..., -3]) / (2 * h)
        assert np.max(np.abs(left)) <= TOL
        assert np.max(np.abs(right - U[:, None] * np.sin(np.pi * t)[None, :])) <= TOL
        assert results[name]["boundary_max_abs"] <= TOL
    assert results["none"]["boundary_max_abs"] > 1e-3  # the plain FNO knows nothing of the flux
    np.testing.assert_array_equal(preds["overwrite"][..., 1:-1], preds["none"][..., 1:-1])  # only the ends move


def test_seed_study_first_seed_is_the_main_evaluation_and_the_others_train_anew(
        heat_run: tuple[ParamsModel, Path, dict]) -> None:
    """seeds.json: the project seed's relative L2 equals evaluate's to the bit (the same networks), the other
    seeds train their own networks (other initial weights: other errors), mean, spread and the count are
    those of the listed values, and a re-run resumes the finished trainings instead of repeating them."""
    params, root, results = heat_run
    study_params = tiny_params(seeds=3, heat_neumann={"nx": 16, "nt": 4})
    study = stages.seed_study("heat_neumann", "fno", study_params, root, progress=False)
    lay = stages.Layout(root, params.profile)
    assert study == json.loads(lay.seed_study_file("heat_neumann", "fno").read_text())
    assert study["seeds"] == [params.seed, params.seed + 1, params.seed + 2]
    for name in ("none", "overwrite", "boon", "boon_posthoc"):
        values = study["rel_l2"][name]
        assert len(values) == 3 and values[0] == results[name]["rel_l2"]
        assert len(set(values)) == 3, values
        assert study["rel_l2_mean"][name] == pytest.approx(np.mean(values), rel=1e-15)
        assert study["rel_l2_spread"][name] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert study["boon_ahead"] == sum(b <= f for b, f in zip(study["rel_l2"]["boon"], study["rel_l2"]["none"]))
    seed_dirs = sorted(p.name for p in lay.seed_models("heat_neumann", "fno").iterdir())
    assert seed_dirs == [f"seed_{params.seed + 1}", f"seed_{params.seed + 2}"]
    ckpt = lay.seed_models("heat_neumann", "fno") / f"seed_{params.seed + 1}" / "boon.pt"
    summary = json.loads((ckpt.parent / "train_summary.json").read_text())
    assert summary["train_config"]["seed"] == params.seed + 1 and summary["n_train"] == 6
    stamp = ckpt.stat().st_mtime_ns
    assert stages.seed_study("heat_neumann", "fno", study_params, root, progress=False) == study
    assert ckpt.stat().st_mtime_ns == stamp


def test_seed_study_is_one_mlflow_run_with_the_values_per_seed(heat_run: tuple[ParamsModel, Path, dict],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    params, root, _ = heat_run
    study_params = tiny_params(seeds=3, heat_neumann={"nx": 16, "nt": 4})
    study = stages.seed_study("heat_neumann", "fno", study_params, root, progress=False)
    uri = f"sqlite:///{root / 'mlflow-seeds.db'}"
    monkeypatch.setenv("PHYSML_TRACKING_URI", uri)
    monkeypatch.setenv("PHYSML_ARTIFACT_ROOT", str(root / "mlartifacts"))
    run_id = stages.track_seed_study("heat_neumann", "fno", study_params, root)
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.tags["constraint"] == "seed_study" and run.info.run_name == "fno-seed_study"
    assert run.data.params["seeds"] == ",".join(map(str, study["seeds"]))
    assert run.data.metrics["boon.rel_l2_mean"] == study["rel_l2_mean"]["boon"]
    assert run.data.metrics["boon_ahead"] == study["boon_ahead"]
    history = client.get_metric_history(run_id, "none.rel_l2")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == list(enumerate(study["rel_l2"]["none"]))
    from physml.report import paired_difference

    for baseline in ("none", "overwrite"):
        mean, se, _ = paired_difference(study, baseline)
        metrics = run.data.metrics
        assert metrics[f"boon_minus_{baseline}.mean"] == mean and metrics[f"boon_minus_{baseline}.se"] == se
    mean, se, _ = paired_difference(study, "overwrite", "boon_posthoc")
    assert metrics["boon_posthoc_minus_overwrite.mean"] == mean and metrics["boon_posthoc_minus_overwrite.se"] == se
    (figure,) = client.list_artifacts(run_id, "figures")
    assert figure.path == "figures/seed_study.png" and figure.file_size > 0


def test_seed_study_refuses_a_non_finite_error_and_writes_nothing(heat_run: tuple[ParamsModel, Path, dict],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN error would make the seed mean NaN; the study stops, naming the constraint and the seed, and leaves
    seeds.json as it was (here: absent), as evaluate refuses a non-finite metric."""
    params, root, _ = heat_run
    out = stages.Layout(root, params.profile).seed_study_file("heat_neumann", "fno")
    out.unlink(missing_ok=True)
    metrics = boon._metrics

    def nan_for_boon(case, pred, truth, boundary, x):
        values, per_time = metrics(case, pred, truth, boundary, x)
        return ({**values, "rel_l2": float("nan")} if pred is boon_pred[0] else values), per_time

    boon_pred: list[np.ndarray] = [None]
    predictions = boon._constraint_predictions

    def remember(*args, **kwargs):
        preds, rest = predictions(*args, **kwargs)
        boon_pred[0] = preds["boon"]
        return preds, rest

    monkeypatch.setattr(boon, "_constraint_predictions", remember)
    monkeypatch.setattr(boon, "_metrics", nan_for_boon)
    with pytest.raises(ValueError, match=rf"heat_neumann × fno × boon, seed {params.seed}: non-finite rel_l2"):
        stages.seed_study("heat_neumann", "fno", params, root, progress=False)
    assert not out.exists()


def test_track_writes_to_the_store_of_its_root_not_of_the_working_directory(
        heat_run: tuple[ParamsModel, Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``physml track --root R`` run from elsewhere: without a tracking URI or project in the environment, the
    runs and their artifacts land in R (beside the data and metrics they log), not in the working directory;
    ``PHYSML_PROJECT_DIR`` keeps one store for runs made under several roots."""
    import mlflow

    params, root, _ = heat_run
    for var in ("PHYSML_TRACKING_URI", "MLFLOW_TRACKING_URI", "PHYSML_PROJECT_DIR", "PHYSML_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runs = stages.track("heat_neumann", "fno", params, root)
    assert not list(elsewhere.iterdir())
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    assert client.get_run(runs["boon"]).info.artifact_uri.startswith((root / "mlartifacts").resolve().as_uri())
    # the registry's champion is the BOON network itself: rebuilt from its logged config, it predicts the
    # test split as the checkpoint's network does, with the Neumann condition built in
    name = tracking.registered_model_name("heat_neumann", "fno", params.profile)
    champion = tracking.load_model(name, uri=f"sqlite:///{root / 'mlflow.db'}")
    trained, _, _ = load_checkpoint(stages.Layout(root, params.profile).models("heat_neumann", "fno") / "boon.pt",
                                    build_model, map_location="cpu")
    assert isinstance(champion, BOONFNO) and not champion.training
    test = boon.load_split("heat_neumann", stages.Layout(root, params.profile).data("heat_neumann"), "test")
    expected = boon.predict(trained, test, device="cpu")
    np.testing.assert_array_equal(boon.predict(champion, test, device="cpu"), expected)
    # and as an MLflow pyfunc model (what `mlflow models serve` serves): the test split's inputs and boundary data in,
    # the evaluated predictions out
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")  # where models:/ URIs resolve
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_array_equal(served.predict({"u": test.inputs, "bc": test.bc[0]})["u"], expected)
    # a run logged before versions carried the configuration and the MLmodel: `track` gives it both
    artifacts = Path(client.get_run(runs["boon"]).info.artifact_uri.removeprefix("file://"))
    for logged in ("model_config.json", "MLmodel"):
        (artifacts / "model" / logged).unlink()
    with pytest.raises(ValueError, match="logged without model_config.json, so its network cannot be rebuilt"):
        tracking.load_model(name, uri=f"sqlite:///{root / 'mlflow.db'}")
    with pytest.raises(mlflow.exceptions.MlflowException, match='Could not find an "MLmodel"'):
        mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert stages.track("heat_neumann", "fno", params, root, only_missing=True) == runs
    assert isinstance(tracking.load_model(name, uri=f"sqlite:///{root / 'mlflow.db'}"), BOONFNO)
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_array_equal(served.predict({"u": test.inputs, "bc": test.bc[0]})["u"], expected)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert stages.track("heat_neumann", "fno", params, root, only_missing=True) == runs
    shared = tmp_path / "project"
    monkeypatch.setenv("PHYSML_PROJECT_DIR", str(shared))
    shared.mkdir()
    stages.track("heat_neumann", "fno", params, root)
    assert (shared / "mlflow.db").is_file() and (shared / "mlartifacts").is_dir() and not list(elsewhere.iterdir())


def test_networks_trained_with_other_settings_are_refused(heat_run: tuple[ParamsModel, Path, dict],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """After an edit of params.yaml, a manual constrain, evaluate, seed study or track would use (and attribute to
    the new settings) networks trained with the old ones: each refuses, naming the keys that differ."""
    params, root, _ = heat_run
    data = params.model_dump(mode="json", exclude_none=True)
    data["models"]["fno"]["quick"]["train"]["lr"] = 0.5
    edited = ParamsModel.model_validate(data)
    pattern = (r"trained with other settings than the params read now give \(model\.train\.lr: 0\.\d+ → 0\.5\); "
               r"run `physml train")
    with pytest.raises(ValueError, match=pattern):
        stages.constrain("heat_neumann", "fno", edited, root)
    with pytest.raises(ValueError, match=pattern):
        stages.seed_study("heat_neumann", "fno", edited, root, progress=False)
    with pytest.raises(ValueError, match=pattern):  # it would write the old networks' metrics under the new settings
        stages.evaluate("heat_neumann", "fno", edited, root)
    monkeypatch.setenv("PHYSML_TRACKING_URI", f"sqlite:///{root / 'mlflow-settings.db'}")
    with pytest.raises(ValueError, match=pattern):
        stages.track("heat_neumann", "fno", edited, root)
    assert stages._differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == ["a.c", "d"]
    # lists element by element; a bool is not the number it equals; lists of other lengths differ whole
    assert stages._differences({"r": [0.0, 1.0], "f": True}, {"r": [0.0, 2.0], "f": 1}) == ["f", "r[1]"]
    assert stages._differences({"r": [[1, 2]]}, {"r": [[1, 3]]}) == ["r[0][1]"]
    assert stages._differences({"r": [1]}, {"r": [1, 2]}) == ["r"]
    assert stages._said(stages._changes({"a": [1], "b": "x"}, {"a": [1, 2], "c": 0.5})) == \
        'a: [1] → [1, 2]; b: "x" → absent; c: absent → 0.5'


def test_seed_study_needs_the_main_training_and_the_data(tmp_path: Path) -> None:
    params = tiny_params(seeds=2, stokes2={"nx": 12, "nt": 3})
    stages.generate("stokes2", params, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"trained_with\.json is missing: .*run `physml train --case stokes2 --model fno --profile quick`"):
        stages.seed_study("stokes2", "fno", params, tmp_path, progress=False)
    with pytest.raises(ValueError, match="no trained networks of the project seed; run `physml train --case stokes2 --model fno --profile quick` first"):
        boon.seed_study("stokes2", "fno", params, tmp_path / "data" / "quick" / "stokes2", tmp_path / "models",
                        tmp_path / "seeds", tmp_path / "seeds.json", progress=False)
    with pytest.raises(ValueError, match="data/quick/heat: no completion marker dataset.json"):  # ProbConserv's too
        stages.seed_study("heat", "anp", params, tmp_path, progress=False)
    with pytest.raises(ValueError, match="matrix.boon.models: 'anp' is not configured for stokes2"):
        stages.seed_study("stokes2", "anp", params, tmp_path, progress=False)


def test_train_resumes_only_the_same_settings_on_the_same_data(tmp_path: Path) -> None:
    """Run outside DVC (which deletes a stage's outputs first), ``physml train`` finds the last run's checkpoints:
    with the same data and settings it resumes them (finished: nothing retrains); with another learning-rate
    schedule, or with regenerated data, it trains afresh, and each checkpoint records the data it saw."""
    def with_changes(params: ParamsModel, lr_step: int | None = None, n_train: int | None = None) -> ParamsModel:
        data = params.model_dump(mode="json", exclude_none=True)
        if lr_step is not None:
            data["models"]["fno"]["quick"]["train"]["lr_step"] = lr_step
        if n_train is not None:
            data["cases"]["heat_neumann"]["sizes"]["quick"]["train"] = n_train
        return ParamsModel.model_validate(data)

    params = tiny_params(heat_neumann={"nx": 16, "nt": 4})
    lay = stages.Layout(tmp_path, params.profile)
    stages.generate("heat_neumann", params, tmp_path, progress=False)
    stages.train("heat_neumann", "fno", params, tmp_path, progress=False)
    ckpt = lay.models("heat_neumann", "fno") / "boon.pt"

    def recorded() -> tuple[str | None, int, int]:
        payload = torch.load(ckpt, weights_only=True)
        summary = json.loads((ckpt.parent / "train_summary.json").read_text())
        return payload["data_version"], payload["train_config"]["lr_step"], summary["n_train"]

    fingerprint = json.loads((lay.data("heat_neumann") / "dataset.json").read_text())["fingerprint"]
    assert recorded() == (fingerprint, 10, 6)
    stamp = ckpt.stat().st_mtime_ns
    stages.train("heat_neumann", "fno", params, tmp_path, progress=False)
    assert ckpt.stat().st_mtime_ns == stamp

    stages.train("heat_neumann", "fno", with_changes(params, lr_step=4), tmp_path, progress=False)
    assert recorded() == (fingerprint, 4, 6)

    more_data = with_changes(params, lr_step=4, n_train=7)
    stages.generate("heat_neumann", more_data, tmp_path, progress=False)
    new_fingerprint = json.loads((lay.data("heat_neumann") / "dataset.json").read_text())["fingerprint"]
    assert new_fingerprint != fingerprint
    stages.train("heat_neumann", "fno", more_data, tmp_path, progress=False)
    assert recorded() == (new_fingerprint, 4, 7)


def test_cavity_shapes_and_wall_velocities(tmp_path: Path) -> None:
    """2-D + time: (u, v) predictions (N, nt, ny, nx, 2); BOON's walls carry the lid speed (top, corners
    included) and no slip elsewhere, to round-off."""
    params = tiny_params(cavity={"nx": 9, "nt": 3})
    stages.generate("cavity", params, tmp_path, progress=False)
    stages.train("cavity", "fno", params, tmp_path, progress=False)
    path = stages.constrain("cavity", "fno", params, tmp_path)
    results = stages.evaluate("cavity", "fno", params, tmp_path)
    lay = stages.Layout(tmp_path, params.profile)
    with h5py.File(lay.data("cavity") / "test.h5", "r") as fh:
        truth_shape, lid = fh["u"].shape, fh["params"][:, 0]
    with h5py.File(path, "r") as fh:
        preds = {k: fh[k][:] for k in ("none", "overwrite", "boon", "boon_posthoc")}
    for name, u in preds.items():
        assert u.shape == (*truth_shape[:-1], 2), name
    for name in ("overwrite", "boon", "boon_posthoc"):
        u = preds[name]
        expected_top = np.zeros_like(u[:, :, -1])
        expected_top[..., 0] = lid[:, None, None]
        assert np.max(np.abs(u[:, :, -1] - expected_top)) <= TOL
        assert np.max(np.abs(u[:, :, 0])) <= TOL
        assert np.max(np.abs(u[:, :, :-1, 0])) <= TOL and np.max(np.abs(u[:, :, :-1, -1])) <= TOL
        assert results[name]["boundary_max_abs"] <= TOL
    assert results["none"]["boundary_max_abs"] > 1e-3
    np.testing.assert_array_equal(preds["overwrite"][:, :, 1:-1, 1:-1], preds["none"][:, :, 1:-1, 1:-1])
    assert (lay.metrics("cavity", "fno") / "figures" / "error_over_time.png").is_file()


def test_wrong_shaped_boundary_data_is_a_clear_error(tmp_path: Path) -> None:
    params = tiny_params(stokes2={"nx": 12, "nt": 3})
    case_dir = stages.generate("stokes2", params, tmp_path, progress=False)
    with h5py.File(case_dir / "train.h5", "r+") as fh:
        good = fh["boundary"][:]
        del fh["boundary"]
        fh.create_dataset("boundary", data=good[:, :, :1])
    with pytest.raises(ValueError, match=r"boundary has shape \(6, 3, 1\); stokes2 needs \(6, 3, 2\)"):
        boon.load_split("stokes2", case_dir, "train")
    with pytest.raises(ValueError, match=r"train.h5 differ from what dataset.json recorded"):  # edited after generation
        stages.train("stokes2", "fno", params, tmp_path, progress=False)
    assert not (stages.Layout(tmp_path, params.profile).models("stokes2", "fno") / "plain.pt").exists()


def test_a_split_missing_from_finished_data_stops_training(heat_run: tuple[ParamsModel, Path, dict], tmp_path: Path) -> None:
    """The completion marker lists every split file; one gone → the data are incomplete, nothing is trained."""
    params, root, _ = heat_run
    data = tmp_path / "data"
    shutil.copytree(stages.Layout(root, params.profile).data("heat_neumann"), data)
    (data / "test.h5").unlink()
    with pytest.raises(ValueError, match=rf"{data}: files listed in dataset.json are missing: test.h5; run `physml generate --case heat_neumann --profile quick`$"):
        boon.train("heat_neumann", "fno", params, data, tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()


def test_neumann_stencil_of_the_reference_solution_converges_at_order_two() -> None:
    """The metric's stencil derivative of the exact heat solution tends to the prescribed u_x as h²."""
    problem = pdes.get("heat_neumann")
    p = {"omega": 2.7, "k": 0.01, "U": 5.0}
    t = np.array([0.25, 0.5, 1.0])
    errors = []
    for n in (17, 33, 65):
        x = np.linspace(0.0, 1.0, n)
        u = problem.solve(p, x, t)[None]
        errors.append(boon.boundary_error("heat_neumann", u, problem.boundary_data(p, t)[None], x))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.8), (errors, orders)


def test_an_evaluation_that_fails_leaves_the_previous_outputs(heat_run: tuple[ParamsModel, Path, dict],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics and figures are built in a staging folder: a failure while drawing (a kill, a full disk)
    leaves every earlier metrics file and figure as it was, and no staging folder behind."""
    params, root, _ = heat_run
    out = stages.Layout(root, params.profile).metrics("heat_neumann", "fno")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(boon, "_figures", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stages.evaluate("heat_neumann", "fno", params, root)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_stages_refuse_inputs_other_settings_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage run by hand after an edit, or out of order, stops naming the file and the command that remakes
    it: data generated with other case settings, a data file changed since generation, networks trained on
    other data, predictions made from other networks; and track and the report, metrics computed from other
    data, networks or predictions than those on disk (the report would list versions that did not make its
    numbers, track would register a network under another network's score)."""
    params = tiny_params(stokes2={"nx": 16, "nt": 3})
    lay = stages.Layout(tmp_path, "quick")
    stages.generate("stokes2", params, tmp_path, progress=False)
    stages.train("stokes2", "fno", params, tmp_path, progress=False)
    stages.constrain("stokes2", "fno", params, tmp_path)
    stages.evaluate("stokes2", "fno", params, tmp_path)

    edited = params.model_dump(mode="json", exclude_none=True)
    edited["cases"]["stokes2"]["parameters"]["nu"] = 0.2
    with pytest.raises(ValueError, match=r"generated with other settings than the params read now give \(cases\."
                                         r"stokes2 or the generation code changed since.*physml generate --case stokes2"):
        stages.train("stokes2", "fno", ParamsModel.model_validate(edited), tmp_path, progress=False)
    reseeded = params.model_dump(mode="json", exclude_none=True)
    reseeded["seed"] = params.seed + 1  # the marker records the seed: the refusal says what it was
    with pytest.raises(ValueError, match=rf"\(seed: {params.seed} → {params.seed + 1}\); run `physml generate"):
        stages.train("stokes2", "fno", ParamsModel.model_validate(reseeded), tmp_path, progress=False)

    test_file = lay.data("stokes2") / "test.h5"
    original = test_file.read_bytes()
    test_file.write_bytes(original[:-8] + bytes(8))
    with pytest.raises(ValueError, match=r"test.h5 differ from what dataset.json recorded .*--force"):
        stages.evaluate("stokes2", "fno", params, tmp_path)
    test_file.write_bytes(original)

    other = ParamsModel.model_validate(edited)  # other data, the same training settings
    stages.generate("stokes2", other, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"boon.pt: trained on other data .*physml train --case stokes2 --model fno"):
        stages.constrain("stokes2", "fno", other, tmp_path)
    stages.train("stokes2", "fno", other, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"predictions.h5: made from other data or other networks .*physml constrain"):
        stages.evaluate("stokes2", "fno", other, tmp_path)
    monkeypatch.setenv("PHYSML_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PHYSML_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    stale = r"metrics/quick/stokes2/fno: computed from other {} than .* now hold\(s\); run `physml evaluate --case stokes2"
    for step in (lambda: stages.track("stokes2", "fno", other, tmp_path), lambda: stages.report(other, tmp_path)):
        with pytest.raises(ValueError, match=stale.format("data and networks")):
            step()
    stages.constrain("stokes2", "fno", other, tmp_path)
    with pytest.raises(ValueError, match=stale.format("data and networks and predictions")):
        stages.track("stokes2", "fno", other, tmp_path)
    assert not (tmp_path / "mlflow.db").exists()  # refused before anything was logged
    assert set(stages.evaluate("stokes2", "fno", other, tmp_path)) == set(params.matrix.boon.constraints)
    recorded = json.loads((lay.metrics("stokes2", "fno") / stages.MADE_FROM).read_text())
    assert recorded == stages.made_from("stokes2", "fno", lay) and set(recorded) == {"data", "networks", "predictions"}
    assert set(recorded["networks"]) == {p.name for p in lay.models("stokes2", "fno").glob("*.pt")}
    assert set(stages.track("stokes2", "fno", other, tmp_path)) == set(params.matrix.boon.constraints)
    table = stages.report(other, tmp_path).read_text().split("## Versions")[1]
    assert f"| data | stokes2 | {recorded['data'][:12]} |" in table
    assert f"| model | stokes2/fno/boon | {recorded['networks']['boon.pt'][:12]} |" in table

    # metrics with no record (evaluated by an older physml, or an evaluation that did not finish): track refuses
    # them; without data and networks on disk (a fresh clone) the report lists what its metrics recorded, and
    # "not recorded" where there is no record
    record = lay.metrics("stokes2", "fno") / stages.MADE_FROM
    record.unlink()
    with pytest.raises(ValueError, match=r"made_from.json is missing: .*physml evaluate --case stokes2 --model fno --profile quick`"):
        stages.track("stokes2", "fno", other, tmp_path)
    record.write_text(json.dumps(recorded))
    shutil.rmtree(lay.data("stokes2"))
    shutil.rmtree(lay.models("stokes2", "fno"))
    assert f"| data | stokes2 | {recorded['data'][:12]} |" in stages.report(other, tmp_path).read_text()
    record.unlink()
    assert "| model | stokes2/fno | not recorded |" in stages.report(other, tmp_path).read_text()


def test_output_times_the_operators_cannot_represent_are_refused(tmp_path: Path) -> None:
    """A single-step case (u₀ ↦ u(T)) with several output times, and a multi-step case with uneven times (its
    FNO's time coordinates and modes assume a uniform grid): ``physml generate`` refuses the grid of params.yaml
    before solving anything; data made by other means stop at loading, before training."""
    import yaml

    from physml.cli import main as cli_main
    from physml.data.generate import generate_case

    for case, grid, reason in (("burgers_dirichlet", {"nx": 16, "nt": 3}, "single-step operator"),
                               ("stokes2", {"nx": 16, "nt": 3, "times": [0.1, 0.2, 0.9]}, "not equally spaced")):
        params = tiny_params(**{case: grid})
        with pytest.raises(ValueError, match=rf"cases.{case}.grid.quick \(the params file\).*{reason}"):
            stages.generate(case, params, tmp_path, progress=False)
        params_file = tmp_path / f"{case}.yaml"
        params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", exclude_none=True), sort_keys=False))
        assert cli_main(["generate", "--case", case, "--params", str(params_file), "--out", str(tmp_path / "data"),
                         "--no-progress"]) == 2  # what dvc repro runs
        assert not stages.Layout(tmp_path, "quick").data(case).exists()
        data = generate_case(case, params, tmp_path / "data", progress=False)
        with pytest.raises(ValueError, match=reason):
            boon.load_split(case, data, "train")
        with pytest.raises(ValueError, match=reason):
            stages.train(case, "fno", params, tmp_path, progress=False)
        assert not stages.Layout(tmp_path, "quick").models(case, "fno").exists()


def test_layouts_round_trip_and_unknown_case() -> None:
    rng = np.random.default_rng(0)
    for case, shape in (("stokes2", (2, 5, 7)), ("burgers_dirichlet", (2, 1, 7)), ("cavity", (2, 3, 5, 5, 2))):
        u = rng.standard_normal(shape)
        assert np.array_equal(boon._to_data_layout(case, boon._to_model_layout(case, u)), u)
    with pytest.raises(ValueError, match="case: 'heat' has no BOON variant"):
        boon.fno_config("heat", load_params(ROOT / "params.yaml"), np.zeros(8), np.zeros(2))


def test_time_padding_reaches_the_multi_step_fnos_only() -> None:
    """Multi-step cases get params.yaml's time_padding and keep their modes on the padded time axis;
    single-step ones have no time axis to pad."""
    params = tiny_params()
    x = np.linspace(0.0, 1.0, 16)
    multi = boon.fno_config("stokes2", params, x, np.linspace(0.1, 1.0, 3))
    assert (multi["nt"], multi["time_padding"], multi["modes"]) == (3, 2, [3, 3])  # 3 + 2 steps hold 3 modes
    single = boon.fno_config("burgers_dirichlet", params, x, np.array([1.0]))
    assert (single["nt"], single["time_padding"]) == (None, 0)


def test_the_fno_keeps_the_modes_params_yaml_gives_per_axis() -> None:
    """The cavity's quick grid (13 points, 10 + 6 padded times) holds at most [6, 6, 9] modes; params.yaml gives it
    [6, 6, 8], which the FNO builds without a warning (MLflow logs the built value as network.fno.modes), and one
    number serves every axis (stokes2: 8 in x and t). Data on another grid than params.yaml's (the load-time check
    cannot see them) are refused, not capped: the modes and the axes' allowed ranges are named."""
    import warnings

    params = load_params(ROOT / "params.yaml").with_profile("quick")
    x, t = np.linspace(0.0, 1.0, 13), np.linspace(0.2, 2.0, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert boon.fno_config("cavity", params, x, t)["modes"] == [6, 6, 8]
        assert boon.fno_config("stokes2", params, np.linspace(0.0, 1.0, 32), t)["modes"] == [8, 8]
    with pytest.raises(ValueError, match=r"models.fno modes for cavity: \[6, 6, 8\] is more than the FNO grid \[11, 11, 16\] "
                                         r"holds; allowed per axis: \[1, 5\], \[1, 5\], \[1, 9\]"):
        boon.fno_config("cavity", params, np.linspace(0.0, 1.0, 11), t)
