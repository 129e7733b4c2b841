"""params.yaml validation: the shipped file is valid; every bad input names its key path and allowed range."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from physml import pdes
from physml.config import MAX_SEED, PROFILES, load_params, read_params_yaml, validate_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return read_params_yaml(PARAMS)


def test_shipped_params_validate_and_cover_the_registry() -> None:
    params = load_params(PARAMS)
    assert set(params.cases) == set(pdes.names())
    for name in params.cases:
        problem = pdes.get(name)
        assert set(params.cases[name].parameters) == set(problem.parameter_names)


@pytest.mark.parametrize("profile", PROFILES)
def test_both_profiles_resolve(profile: str) -> None:
    params = load_params(PARAMS).with_profile(profile)
    for name in params.cases:
        sizes = params.sizes(name)
        assert min(sizes.train, sizes.val, sizes.test) >= 1
        problem = pdes.get(name)
        if problem.family == "operator":
            times = params.grid(name).resolve_times(problem.t_domain)
            assert times[0] > problem.t_domain[0] and times[-1] <= problem.t_domain[1] + 1e-12
    for model in ("anp", "ensemble", "fno", "softc"):
        assert params.model_settings(model) is not None
    # 5 probconserv cases x 2 models x 7 constraints + 5 operator cases x FNO x 4 constraints
    exps = params.experiments()
    assert len(exps) == len(set(exps)) == 5 * 2 * 7 + 5 * 1 * 4
    assert ("stefan", "anp", "probconserv") in exps and ("cavity", "fno", "boon") in exps


def test_grid_times_end_on_the_domain_end() -> None:
    """t0 + (t1 − t0)·k/nt rounds past t1 for 22 values of nt ≤ 300 on Stefan's [0, 0.1] (nt = 3: 0.10000000000000002),
    which the conservation constraint refused after training; the last time is t1 exactly."""
    from physml.config import Grid

    for nt in range(1, 301):
        times = Grid(nx=8, nt=nt).resolve_times((0.0, 0.1))
        assert times[-1] == 0.1 and np.all(np.diff(times) > 0) and times.shape == (nt,), nt
    np.testing.assert_array_equal(Grid(nx=8, nt=4).resolve_times((1.0, 2.0)), [1.25, 1.5, 1.75, 2.0])


def test_paper_profile_is_the_reference_scale() -> None:
    params = load_params(PARAMS).with_profile("paper")
    assert params.sizes("stefan").train == 10_000
    anp = params.model_settings("anp")
    assert anp.hidden == 128 and anp.train.epochs == 500
    fno = params.model_settings("fno")
    assert (fno.width, fno.modes) == (64, 16)
    cavity = params.model_settings("fno", "cavity")
    assert (cavity.width, cavity.modes, cavity.train.batch_size) == (20, 8, 10)
    assert cavity.train.lr == fno.train.lr and cavity.train.grad_clip == fno.train.grad_clip


def test_case_overrides_merge_key_by_key() -> None:
    """models.<m>.cases.<case>.<profile> changes only the keys it names, ``train`` included."""
    params = load_params(PARAMS).with_profile("quick")
    base, stefan = params.model_settings("anp"), params.model_settings("anp", "stefan")
    assert stefan.train.epochs != base.train.epochs
    assert stefan.model_copy(update={"train": base.train}) == base
    assert params.model_settings("anp", "heat") == base


def test_fixed_and_values_specs_resolve() -> None:
    params = load_params(PARAMS)
    assert params.cases["stefan"].parameters["p_star"].split_spec("test") == [0.5, 0.6]
    assert params.cases["stefan"].parameters["p_star"].split_spec("val") == (0.55, 0.7)
    assert params.cases["stokes2"].parameters["nu"].split_spec("train") == (0.1, 0.1)


def _set(d: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


_DELETE = object()

# (mutation path, new value, key path expected in the message, allowed range/values expected in it)
BAD = [
    ("cases.foo", {"parameters": {}, "sizes": {}}, "cases.foo", "known cases: heat, pme, stefan"),
    ("cases.stefan.parameters.p_star.train", [0.7, 1.2], "cases.stefan.parameters.p_star.train", "(0, 1)"),
    ("cases.heat.parameters.k.train", [-1.0, 5.0], "cases.heat.parameters.k.train", "(0, inf)"),
    ("cases.pme.parameters.m.test", {"values": [0.5, 3.0]}, "cases.pme.parameters.m.test", "[1, 50]"),
    ("cases.heat_neumann.parameters.k", -0.01, "cases.heat_neumann.parameters.k", "(0, inf)"),
    ("cases.heat_neumann.parameters.omega.train", [2.0, 300.0], "cases.heat_neumann.parameters.omega.train", "[0, 256]"),
    ("cases.burgers_dirichlet.parameters.nu", 5e-5, "cases.burgers_dirichlet.parameters.nu", "allowed nu >= 9.38e-05"),
    ("cases.heat.parameters.k.train", [5.0, 1.0], "cases.heat.parameters.k.train", "lo <= hi"),
    ("cases.heat_neumann.grid.quick.times", [0.1, 0.1, 0.3], "cases.heat_neumann.grid.quick.times", "strictly increasing"),
    ("cases.heat_neumann.grid.quick.nx", 4, "cases.heat_neumann.grid.quick.nx", "[8, inf)"),
    ("cases.stokes2.grid.paper", {"nx": 64, "times": [0.5, 2.0]}, "cases.stokes2.grid.paper.times", "(0, 1.2]"),
    ("cases.heat.sizes.quick.train", 0, "cases.heat.sizes.quick.train", "[1, inf)"),
    ("cases.pme.sizes.paper.val", -5, "cases.pme.sizes.paper.val", "[1, inf)"),
    ("cases.heat.sampling.n_context", 0, "cases.heat.sampling.n_context", "[1, inf)"),
    ("profile", "fast", "profile", "'quick' or 'paper'"),
    ("matrix.probconserv.models", ["anp", "gp"], "matrix.probconserv.models", "allowed: anp, ensemble"),
    ("matrix.boon.constraints", ["none", "magic"], "matrix.boon.constraints", "allowed: none, overwrite, boon, boon_posthoc"),
    ("matrix.probconserv.constraints", ["none", "hardc", "probconserv"], "matrix.probconserv.constraints",
     "must list every constraint (none, softc, hardc, probconserv, probconserv_mixture, probconserv_nonnegative, probconserv_trained), since dvc.yaml's evaluate stages declare one metrics file each; missing: softc, probconserv_mixture, probconserv_nonnegative, probconserv_trained"),
    ("matrix.probconserv.cases", ["heat", "wave"], "matrix.probconserv.cases", "probconserv cases only"),
    ("cases.wave.parameters.a3", _DELETE, "cases.wave.parameters.a3", "[-1, 1]"),
    ("cases.heat.parameters.q", 1.0, "cases.heat.parameters.q", "heat has ['k']"),
    ("models.fno.quick.train.lr", 0.0, "models.fno.quick.train.lr", "(0, inf)"),
    ("models.fno.quick.train.grad_clip", -1.0, "models.fno.quick.train.grad_clip", "(0, inf)"),
    ("models.fno.paper.time_padding", -1, "models.fno.paper.time_padding", "[0, inf)"),
    # Fourier modes: checked against each case's grid (n//2 per axis, n//2 + 1 on the last) when loaded, where a
    # stage used to cap them with a warning; the key that set them is named (the case's override, else the profile)
    ("models.fno.cases.cavity.quick.modes", [7, 6, 8], "models.fno.cases.cavity.quick.modes: for cavity (quick grid "
     "nx = 13, axes x, y, t): [7, 6, 8] is more than the FNO grid [13, 13, 16] holds", "allowed per axis: [1, 6], [1, 6], [1, 9]"),
    ("models.fno.cases.cavity.quick.modes", 8, "models.fno.cases.cavity.quick.modes", "8 is more than the FNO grid [13, 13, 16]"),
    ("models.fno.cases.cavity.quick.time_padding", 0, "models.fno.cases.cavity.quick.modes", "[13, 13, 10] holds; allowed "
     "per axis: [1, 6], [1, 6], [1, 6]"),
    ("models.fno.cases.cavity.quick.modes", [6, 6], "models.fno.cases.cavity.quick.modes", "[6, 6] gives 2 axes, but the "
     "FNO grid [13, 13, 16] has 3; give one number for every axis or 3"),
    ("models.fno.quick.modes", [8, 8], "models.fno.quick.modes: for burgers_dirichlet (quick grid nx = 32, axes x)",
     "FNO grid [32] has 1"),
    ("cases.heat_neumann.grid.quick.nx", 9, "models.fno.quick.modes: for heat_neumann (quick grid nx = 9, axes x, t)",
     "8 is more than the FNO grid [9, 19] holds; allowed per axis: [1, 4], [1, 10]"),
    ("models.fno.paper.modes", 0, "models.fno.paper.modes", "allowed range [1, inf) per axis"),
    ("models.fno.quick.modes", [8, -1], "models.fno.quick.modes", "allowed range [1, inf) per axis"),
    ("models.fno.quick.modes", [], "models.fno.quick.modes", "non-empty list"),
    ("models.fno.quick.modes", "8", "models.fno.quick.modes", "not a string"),
    ("models.fno.quick.modes", [8, True], "models.fno.quick.modes", "holds a boolean"),
    # a number written as a string inside a list: lax mode would read '1' as 1.0
    ("models.fno.quick.modes", [8, "8"], "models.fno.quick.modes", "give numbers, not strings (got [8, '8'])"),
    ("cases.heat.parameters.k.train", ["1", 5.0], "cases.heat.parameters.k.train",
     "give numbers, not strings (got ['1', 5.0])"),
    ("cases.heat.parameters.k.test", {"values": [1.0, "2"]}, "cases.heat.parameters.k.test.values",
     "give numbers, not strings (got [1.0, '2'])"),
    ("cases.heat_neumann.grid.quick.times", ["0.1", 0.3], "cases.heat_neumann.grid.quick.times", "not strings"),
    ("cases.heat_neumann.parameters.k", "0.01", "cases.heat_neumann.parameters.k",
     "give a number (the fixed value) or train: [lo, hi] and test: [lo, hi] | {values}, not a string (got '0.01')"),
    # two-sided ranges are given whole, whichever side failed
    ("models.boon_posthoc.rcond", -0.5, "models.boon_posthoc.rcond", "allowed range [0, 1)"),
    ("models.boon_posthoc.rcond", 1.5, "models.boon_posthoc.rcond", "allowed range [0, 1)"),
    ("models.fno.quick.train.lr_gamma", 0.0, "models.fno.quick.train.lr_gamma", "allowed range (0, 1]"),
    ("models.fno.cases.heat_neumann.quick.train.lr_gamma", 2.0, "models.fno.cases.heat_neumann.quick.train.lr_gamma",
     "allowed range (0, 1]"),
    ("models.fno.quick.train.lr", float("inf"), "models.fno.quick.train.lr", "finite number"),
    ("models.fno.quick.train.weight_decay", float("nan"), "models.fno.quick.train.weight_decay", "finite number"),
    ("matrix.boon.seeds.quick", 0, "matrix.boon.seeds.quick", "[1, inf)"),
    # YAML's true/false: pydantic's lax mode would read them as 1/0
    ("models.fno.quick.train.epochs", True, "models.fno.quick.train.epochs", "is a boolean"),
    ("cases.heat_neumann.parameters.k", True, "cases.heat_neumann.parameters.k", "is a boolean"),
    ("cases.heat.parameters.k.train", [False, 1.0], "cases.heat.parameters.k.train", "[False, 1.0] holds a boolean"),
    ("seed", False, "seed", "is a boolean"),
    ("matrix.probconserv.seeds.paper", 0, "matrix.probconserv.seeds.paper", "[1, inf)"),
    ("models.fno.quick.train.epochs", "3", "models.fno.quick.train.epochs", "give a number, not a string; write it without quotes (got '3')"),
    ("cases.heat.parameters.k.test", {"values": []}, "cases.heat.parameters.k.test.values: List should have at least 1 item", ""),
    ("models.anp.quick.heads", 3, "models.anp.quick.heads", "3 must divide hidden = 32; allowed: 1, 2, 4, 8, 16, 32"),
    ("models.fno.cases.heat", {"quick": {"width": 8}}, "models.fno.cases.heat",
     "a case of the other family (fno serves operator cases); allowed: heat_neumann, stokes2"),
    ("models.ensemble.cases.wave", {"quick": {"members": 3}}, "models.ensemble.cases.wave",
     "a case of the other family (ensemble serves probconserv cases); allowed: heat, pme, stefan"),
    ("models.anp.quick.min_std", 0.0, "models.anp.quick.min_std", "(0, inf)"),
    ("models.ensemble.paper.constraint_noise_var", -0.1, "models.ensemble.paper.constraint_noise_var", "[0, inf)"),
    ("models.ensemble.quick.min_std", _DELETE, "models.ensemble.quick.min_std", "Field required"),
    ("models.anp.cases.stefan.quick.train.epochs", 0, "models.anp.cases.stefan.quick.train.epochs", "[1, inf)"),
    ("models.ensemble.cases.stefan.quick.width", 4, "models.ensemble.cases.stefan.quick.width", "Extra inputs are not "
     "permitted; allowed keys here: members, hidden, layers, min_std, constraint_noise_var, train"),
    ("models.fno.cases.wave.quik", {}, "models.fno.cases.wave.quik", "allowed keys here: quick, paper"),
    # the default of a setting left out is checked too (the ANP's 4 heads against the profile's hidden size)
    ("models.anp.paper", {"hidden": 6, "latent": 8, "n_latent_samples": 4, "min_std": 0.01, "constraint_noise_var": 0.0,
                          "train": {"epochs": 1, "batch_size": 2, "lr": 1e-3, "weight_decay": 0.0, "lr_step": 10,
                                    "lr_gamma": 1.0}},
     "models.anp.paper.heads", "4 must divide hidden = 6; allowed: 1, 2, 3, 6"),
    ("cases.heat.parameters.k.train", [1.0], "cases.heat.parameters.k", "train must be a range [lo, hi] (2 numbers), "
     "got a list of 1"),
    ("cases.heat.parameters.k.train", {"values": [1.0, 2.0]}, "cases.heat.parameters.k", "{values: [...]} is for test only"),
    ("matrix.boon.seeds", 3, "matrix.boon.seeds", "give a mapping with one entry per profile, {quick: ..., paper: ...}"),
    # a number in quotes stays a string in YAML
    ("models.fno.quick.train.lr", "1e-3", "models.fno.quick.train.lr", "not a string; write it without quotes (got '1e-3')"),
    # unquoted, YAML 1.2 reads .5e3 as a string (its float needs a digit before the dot with an exponent)
    ("models.fno.quick.train.lr", ".5e3", "models.fno.quick.train.lr", "YAML reads .5e3 as a string: write 500.0"),
    ("models.fno.cases.nope", {"quick": {"width": 8}}, "models.fno.cases.nope", "not a configured case"),
    ("cases.stefan.test_grid.quick.nx", 2, "cases.stefan.test_grid.quick.nx", "[8, inf)"),
    ("cases.stefan.test_grid.quick", {"nx": 9, "times": [0.0, 0.05]}, "cases.stefan.test_grid.quick.times", "(0, 0.1]"),
    # a time past t1 by less than the old 1e-12 slack passed validation, and constrain refused it after training
    ("cases.stefan.test_grid.quick", {"nx": 9, "times": [0.05, 0.1 + 5e-13]}, "cases.stefan.test_grid.quick.times", "(0, 0.1]"),
    ("cases.stokes2.test_grid", {"quick": {"nx": 9, "nt": 2}, "paper": {"nx": 9, "nt": 2}}, "cases.stokes2.test_grid", "not allowed for operator cases"),
    # values the stages would have failed on, or silently dropped
    ("seed", 2**64, "seed", "allowed range [0, 4294967295]"),
    ("models.softc.penalty", 0.0, "models.softc.penalty", "(0, inf)"),
    ("matrix.boon.cases", ["stokes2", "wave", "stokes2"], "matrix.boon.cases", "'stokes2' listed more than once"),
    ("matrix.probconserv.constraints", ["none", "hardc", "none"], "matrix.probconserv.constraints", "listed more than once"),
    ("cases.pme.sizes.quick.test", 2, "cases.pme.sizes.quick.test", "values of cases.pme.parameters.m.test; allowed: >= 3"),
]


@pytest.mark.parametrize(("path", "value", "where", "allowed"), BAD, ids=[b[0] + "=" + repr(b[1])[:20] for b in BAD])
def test_bad_input_names_path_and_range(raw: dict[str, Any], path: str, value: Any, where: str, allowed: str) -> None:
    data = copy.deepcopy(raw)
    _set(data, path, value)
    with pytest.raises(ValueError) as info:
        validate_params(data)
    msg = str(info.value)
    assert where in msg, msg
    assert allowed in msg, msg


@pytest.mark.parametrize("group", ["probconserv", "boon"])
def test_study_seeds_start_at_the_project_seed_and_default_to_it_alone(raw: dict[str, Any], group: str) -> None:
    params = load_params(PARAMS)
    for profile in PROFILES:
        seeds = params.with_profile(profile).study_seeds(group)
        assert seeds == [params.seed + i for i in range(raw["matrix"][group]["seeds"][profile])]
    data = copy.deepcopy(raw)
    del data["matrix"][group]["seeds"]
    assert validate_params(data).study_seeds(group) == [data["seed"]]


def test_the_seed_study_must_stay_within_the_seed_range(raw: dict[str, Any]) -> None:
    """The study trains with seed, seed + 1, …: every one of them must be a seed training takes."""
    from physml.training import MAX_SEED as training_max, TrainConfig

    assert training_max == MAX_SEED
    group, profile = max(((g, p) for g in ("probconserv", "boon") for p in PROFILES),
                         key=lambda gp: raw["matrix"][gp[0]]["seeds"][gp[1]])
    n = raw["matrix"][group]["seeds"][profile]
    assert n > 1, "params.yaml's seed studies have one seed in every profile: this test checks nothing"
    data = copy.deepcopy(raw)
    data["seed"] = MAX_SEED - n + 1
    last = validate_params(data)
    for p in PROFILES:
        for g in ("probconserv", "boon"):
            for seed in last.with_profile(p).study_seeds(g):
                TrainConfig(epochs=1, batch_size=1, lr=1e-3, seed=seed)
    data["seed"] = MAX_SEED - n + 2
    with pytest.raises(ValueError) as info:
        validate_params(data)
    msg = str(info.value)
    assert f"seed: the {profile} seed study (matrix.{group}.seeds.{profile} = {n})" in msg, msg
    assert f"would train with seed {MAX_SEED + 1}" in msg, msg
    assert f"allowed range with that study [0, {MAX_SEED - n + 1}]" in msg, msg


def test_with_profile_rejects_unknown() -> None:
    with pytest.raises(ValueError, match=r"profile: 'gpu' .*allowed: quick, paper"):
        load_params(PARAMS).with_profile("gpu")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="is a directory, not a YAML file"):
        load_params(tmp_path)


def test_malformed_yaml_is_a_clear_error(tmp_path: Path) -> None:
    """A YAML syntax error is a ValueError (the CLI's one-line message), with the parser's line and column."""
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: quick\nseed: [\n")
    with pytest.raises(ValueError, match=r"params file .*params.yaml' is not valid YAML: .*line 3"):
        load_params(bad)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    """A YAML loader may keep the last of two equal keys (PyYAML's ``seed`` twice loads the second); DVC's
    reader refuses the file, and so does physml, naming the key and both lines. A merge key's entries may be
    overridden, as YAML intends; a file that is not UTF-8 is named."""
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text() + "\nseed: 7\n")
    lines = PARAMS.read_text().splitlines()
    first = 1 + next(i for i, line in enumerate(lines) if line.startswith("seed:"))
    again = len(lines) + 2
    with pytest.raises(ValueError, match=rf"found the key 'seed' twice \(first line {first}, again line {again}\); "
                                         r"give each key once"):
        load_params(path)
    nested = PARAMS.read_text().replace("      heads: 2\n", "      heads: 2\n      heads: 4\n", 1)
    path.write_text(nested)
    with pytest.raises(ValueError, match=r"found the key 'heads' twice"):
        load_params(path)
    path.write_text("base: &b {a: 1, b: 2}\nother: {<<: *b, a: 3}\n")
    assert read_params_yaml(path)["other"] == {"a": 3, "b": 2}
    for text, message in (
            # beside a merge key, where ruamel (and so DVC) keeps the last y silently
            ("base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n  y: 3\n", "the key 'y' twice (first line 4, again line 5)"),
            ("a: 1\n1: a\n0x1: b\n", "the key 1 twice (first line 2, again line 3)"),  # equal as values
            ("a: {x: 1, y: 2, x: 3}\n", "the key 'x' twice (first line 1 column 5, again column 17)"),
            ("a:\n- {x: 1}\n- y: 1\n  y: 2\n", "the key 'y' twice (first line 3, again line 4)")):
        path.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message) + "; give each key once"):
            read_params_yaml(path)
    for text in ("# nothing yet\n", "---\n"):
        path.write_text(text)
        with pytest.raises(ValueError, match=r"params.yaml' is empty: it holds no settings"):
            load_params(path)
    # a %YAML 1.1 directive would read 010 as 8 where the key check reads 10: only YAML 1.2 is read
    path.write_text("%YAML 1.1\n---\n010: a\n10: b\n")
    with pytest.raises(ValueError, match=r"%YAML 1.1: physml reads YAML 1.2 .*remove the directive"):
        load_params(path)
    path.write_text("a: !!int ''\n")  # ruamel raises an IndexError building it: still the one clear ValueError
    with pytest.raises(ValueError, match=r"params.yaml' is not valid YAML: a tagged value could not be built"):
        load_params(path)
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ValueError, match=r"params.yaml' is nested too deeply to read"):
        load_params(path)
    path.write_bytes(PARAMS.read_bytes() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"params.yaml' is not UTF-8 text"):
        load_params(path)


@pytest.mark.parametrize("text", [
    # an anchor that merges and overrides, merged again: PyYAML gives top.x = 1 (and the old duplicate-key check
    # refused it); YAML and DVC give the nearest key, 2
    "base: &base {x: 1, y: 1}\nouter:\n  mid: &mid\n    <<: *base\n    x: 2\ntop:\n  <<: *mid\n  y: 3\n",
    # YAML 1.2 reads an exponent without a dot as a number; PyYAML (YAML 1.1) as a string
    "lr: 1e-3\nsteps: 1e3\nquoted: '1e-3'\nflag: on\n",
    None,  # the project's params.yaml
])
def test_params_are_read_as_dvc_reads_them(tmp_path: Path, text: str | None) -> None:
    """physml trains on the settings DVC reads for ``${...}``, ``dvc params diff`` and ``dvc exp run -S``: the
    same file gives the same mapping through both readers."""
    from dvc.utils.serialize import parse_yaml

    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text() if text is None else text)
    ours = read_params_yaml(path)
    assert ours == parse_yaml(path.read_text(), str(path))
    if text is not None and "top" in ours:
        assert ours["top"] == {"x": 2, "y": 3}
    if text is not None and "lr" in ours:
        assert ours["lr"] == 1e-3 and ours["steps"] == 1000.0 and ours["quoted"] == "1e-3"


@pytest.mark.parametrize("values", [[], [1.0, "2"]])
def test_test_values_are_reported_once_not_also_as_a_range(raw: dict[str, Any], values: list) -> None:
    """``test`` is a range or ``{values}``: bad ``{values}`` fail against both, but only the second is meant."""
    data = copy.deepcopy(raw)
    data["cases"]["heat"]["parameters"]["k"]["test"] = {"values": values}
    with pytest.raises(ValueError) as info:
        validate_params(data)
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 1 and lines[0].startswith("cases.heat.parameters.k.test.values: "), lines


def test_a_value_of_the_wrong_type_is_echoed(raw: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    data["models"]["anp"]["quick"]["train"]["epochs"] = "eight"
    with pytest.raises(ValueError, match=r"models.anp.quick.train.epochs: give a number, not a string \(got 'eight'\)"):
        validate_params(data)
