"""params.yaml: the one validated source of truth for every stage.

``load_params(path)`` returns a :class:`ParamsModel`; every error names the key path
(e.g. ``cases.stefan.parameters.p_star.train``) and the allowed range. Physical parameter bounds are
taken from the registry (:class:`physml.pdes.Parameter`), never re-typed here.

Layout (keys are stable; other stages build on them)::

    profile: quick | paper
    seed: int
    cases.<name>:
        parameters.<pname>: scalar (fixed)  |  {train: [lo, hi], test: [lo, hi] | {values: [v, ...]}}
        sampling: {n_context, n_target_t, n_target_x}      # probconserv family
        test_grid.{quick,paper}: {nx, nt, times?}           # probconserv: the test split's regular target grid
        grid.{quick,paper}: {nx, nt, times?}                # operator family
        sizes.{quick,paper}: {train, val, test}
    models: anp, ensemble, fno: {quick, paper, cases.<case>.{quick,paper}: partial overrides}; softc
    matrix: probconserv / boon: {cases, models, constraints, seeds?: {quick, paper}}
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import ruamel.yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

Profile = Literal["quick", "paper"]
PROFILES: tuple[str, ...] = ("quick", "paper")
SPLITS: tuple[str, ...] = ("train", "val", "test")
MIN_NX = 8
"""Smallest spatial grid an operator case may use (FNO needs a few Fourier modes and two boundary points)."""

CONSTRAINTS: dict[str, tuple[str, ...]] = {
    "probconserv": ("none", "softc", "hardc", "probconserv", "probconserv_mixture", "probconserv_nonnegative",
                    "probconserv_trained"),
    "boon": ("none", "overwrite", "boon", "boon_posthoc"),
}
MODELS: dict[str, tuple[str, ...]] = {"probconserv": ("anp", "ensemble"), "boon": ("fno",)}
MATRIX_FAMILY: dict[str, str] = {"probconserv": "probconserv", "boon": "operator"}


class _Strict(BaseModel):
    # allow_inf_nan=False: .inf and .nan in params.yaml stop here, with their key path, not later in a stage
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_or_numeric_strings(cls, value: Any, info: ValidationInfo) -> Any:
        """No setting is a boolean, and pydantic's lax mode would read ``true`` as 1 (``epochs: true``); no
        number is a string, alone or in a list, which lax mode would read as the number it spells (``epochs: '3'``,
        ``train: ['1', 5.0]``)."""
        if isinstance(value, bool) or (isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value)):
            raise ValueError(_boolean_error(value))
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, str) and _takes_only_numbers(annotation):
            raise ValueError("give a number, not a string" + _quoted_number_hint(value))
        if (isinstance(value, list | tuple) and any(isinstance(v, str) for v in value)
                and _takes_only_number_sequences(annotation)):
            raise ValueError(f"give numbers, not strings (got {value!r})")
        return value


_NUMBERS = (int, float)


def _arms(annotation: Any) -> tuple[Any, ...]:
    """The members of a union other than None (``int | list[int] | None`` → ``(int, list[int])``), or the
    annotation alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


def _is_number_sequence(arm: Any) -> bool:
    """``list[int]``, ``list[float]``, ``tuple[float, float]``, ``tuple[float, ...]``."""
    items = [a for a in typing.get_args(arm) if a is not Ellipsis]
    return typing.get_origin(arm) in (list, tuple) and bool(items) and all(a in _NUMBERS for a in items)


def _takes_only_numbers(annotation: Any) -> bool:
    """Every member of the annotation is a number or a sequence of numbers (``int``, ``float | None``,
    ``int | list[int]``): a string given there can only be meant as a number."""
    arms = _arms(annotation)
    return bool(arms) and all(a in _NUMBERS or _is_number_sequence(a) for a in arms)


def _takes_only_number_sequences(annotation: Any) -> bool:
    """The annotation admits a sequence and every sequence it admits holds numbers (``list[float] | None``,
    ``tuple[float, float] | TestValues | None``): a string inside a list given there can only be meant as a
    number."""
    sequences = [a for a in _arms(annotation) if typing.get_origin(a) in (list, tuple)]
    return bool(sequences) and all(_is_number_sequence(a) for a in sequences)


def _quoted_number_hint(value: str) -> str:
    """For a string that spells a finite number, how to write it as one: without quotes where YAML reads the
    bare text as a number (``"1e-3"``), else in a form it does (``.5e3``: YAML 1.2 reads a string; write
    ``500.0``)."""
    try:
        number = float(value)
        bare = ruamel.yaml.YAML(typ="safe").load(value)
    except (ValueError, ruamel.yaml.YAMLError):
        return ""
    if not math.isfinite(number):
        return ""
    if isinstance(bare, int | float) and not isinstance(bare, bool):
        return "; write it without quotes"
    return f"; YAML reads {value} as a string: write {number!r}"


def _boolean_error(value: Any) -> str:
    what = "is a boolean" if isinstance(value, bool) else "holds a boolean"
    return f"{value!r} {what}; no setting in params.yaml is one: give a number or a name"


def _fmt(v: float) -> str:
    return f"{v:g}"


class ParamSpec(_Strict):
    """One PDE parameter: fixed (``fixed``) or sampled uniformly from ``train`` and ``test``.

    ``test`` is either a range ``[lo, hi]`` (uniform draws) or ``{values: [...]}`` (the test set is
    split into equal blocks, one per value — e.g. Stefan p* ∈ {0.5, 0.6}).
    """

    fixed: float | None = None
    train: tuple[float, float] | None = None
    test: tuple[float, float] | TestValues | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar_is_fixed(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError(_boolean_error(data))
        if isinstance(data, (int, float)):
            return {"fixed": float(data)}
        if isinstance(data, str):
            raise ValueError("give a number (the fixed value) or train: [lo, hi] and test: [lo, hi] | {values}, not "
                             "a string")
        if isinstance(data, dict) and isinstance(data.get("test"), list) and len(data["test"]) != 2:
            raise ValueError(
                f"test must be a range [lo, hi] (2 numbers) or {{values: [...]}}, got a list of {len(data['test'])}"
            )
        if isinstance(data, dict) and isinstance(data.get("train"), list) and len(data["train"]) != 2:
            raise ValueError(f"train must be a range [lo, hi] (2 numbers), got a list of {len(data['train'])}")
        if isinstance(data, dict) and isinstance(data.get("train"), dict):
            raise ValueError("train must be a range [lo, hi] (2 numbers); {values: [...]} is for test only")
        return data

    @field_validator("train", "test")
    @classmethod
    def _ordered(cls, v: Any) -> Any:
        if isinstance(v, tuple):
            lo, hi = v
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"range [{lo}, {hi}] must be finite")
            if lo > hi:
                raise ValueError(f"range [{_fmt(lo)}, {_fmt(hi)}] has lo > hi; allowed: [lo, hi] with lo <= hi")
        return v

    @model_validator(mode="after")
    def _complete(self) -> ParamSpec:
        if self.fixed is None and (self.train is None or self.test is None):
            raise ValueError("give either a scalar (fixed value) or both train: [lo, hi] and test: [lo, hi] | {values}")
        if self.fixed is not None and (self.train is not None or self.test is not None):
            raise ValueError("a fixed parameter takes no train/test ranges")
        return self

    def split_spec(self, split: str) -> tuple[float, float] | list[float]:
        """The sampling spec for ``split``: a (lo, hi) range or a list of values. val draws like train."""
        if self.fixed is not None:
            return (self.fixed, self.fixed)
        spec = self.train if split in ("train", "val") else self.test
        if isinstance(spec, TestValues):
            return list(spec.values)
        assert spec is not None
        return spec

    def bounds(self) -> Iterator[tuple[str, float]]:
        """(key, value) pairs of every number that must lie inside the physical range."""
        if self.fixed is not None:
            yield "", self.fixed
            return
        assert self.train is not None and self.test is not None
        yield "train", self.train[0]
        yield "train", self.train[1]
        if isinstance(self.test, TestValues):
            for v in self.test.values:
                yield "test", v
        else:
            yield "test", self.test[0]
            yield "test", self.test[1]


class TestValues(_Strict):
    """A list of test values (each gets an equal block of the test set)."""

    values: list[float] = Field(min_length=1)


ParamSpec.model_rebuild()


class Sampling(_Strict):
    """ProbConserv sampling per function: context points and a target grid of times × positions."""

    n_context: int = Field(ge=1)
    n_target_t: int = Field(ge=1)
    n_target_x: int = Field(ge=2)


class Grid(_Strict):
    """Operator-case grid: ``nx`` points per bounded axis (boundaries included) and output times.

    ``times`` (optional) are explicit, strictly increasing output times; otherwise ``nt`` equally
    spaced times t0 + (t1 − t0)·k/nt, k = 1..nt.
    """

    nx: int = Field(ge=MIN_NX)
    nt: int | None = Field(default=None, ge=1)
    times: list[float] | None = None

    @field_validator("times")
    @classmethod
    def _increasing(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if len(v) == 0:
                raise ValueError("times must not be empty")
            d = np.diff(np.asarray(v, dtype=float))
            if np.any(d <= 0) or not np.all(np.isfinite(v)):
                raise ValueError(f"times must be finite and strictly increasing, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Grid:
        if self.times is None and self.nt is None:
            raise ValueError("give nt (>= 1) or an explicit times list")
        if self.times is not None and self.nt is not None and self.nt != len(self.times):
            raise ValueError(f"nt = {self.nt} but times has {len(self.times)} entries")
        return self

    def resolve_times(self, t_domain: tuple[float, float]) -> np.ndarray:
        """Output times, shape (nt,): t0 + (t1 − t0)·k/nt, k = 1 … nt, the last one t1 exactly (the formula
        rounds past t1 for some nt, e.g. Stefan's [0, 0.1] with nt = 3 gave 0.10000000000000002, which the
        conservation constraint then refused as outside the t-domain)."""
        if self.times is not None:
            return np.asarray(self.times, dtype=np.float64)
        t0, t1 = t_domain
        assert self.nt is not None
        times = t0 + (t1 - t0) * np.arange(1, self.nt + 1, dtype=np.float64) / self.nt
        times[-1] = t1
        return times


class SplitSizes(_Strict):
    """Number of functions (samples) per split; every split needs at least one."""

    train: int = Field(ge=1)
    val: int = Field(ge=1)
    test: int = Field(ge=1)

    def of(self, split: str) -> int:
        return int(getattr(self, split))


class PerProfile(_Strict):
    """A value for each profile."""

    quick: Any
    paper: Any

    @model_validator(mode="before")
    @classmethod
    def _one_entry_per_profile(cls, data: Any) -> Any:
        if not isinstance(data, dict | BaseModel):
            raise ValueError("give a mapping with one entry per profile, {quick: ..., paper: ...}"
                             + ("" if isinstance(data, str | int | float) else f", not a {type(data).__name__}"))
        return data

    def __getitem__(self, profile: str) -> Any:
        return getattr(self, profile)


class SizesPerProfile(PerProfile):
    quick: SplitSizes
    paper: SplitSizes


class GridPerProfile(PerProfile):
    quick: Grid
    paper: Grid


class CaseConfig(_Strict):
    """One PDE case: its parameters, how a function is sampled (probconserv) or gridded (operator), sizes."""

    parameters: dict[str, ParamSpec]
    sampling: Sampling | None = None
    test_grid: GridPerProfile | None = None
    """ProbConserv only: the test split's targets on a regular grid (``nx`` positions, ends included, ×
    ``nt`` times), as the reference evaluates on a 201 × 201 grid; without it the test split is sampled
    like train and val."""
    grid: GridPerProfile | None = None
    sizes: SizesPerProfile


class TrainConfig(_Strict):
    """Optimiser settings: Adam(lr, weight_decay) with StepLR(lr_step, lr_gamma); ``grad_clip`` caps the
    global gradient norm (null: no clipping)."""

    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    lr_step: int = Field(ge=1)
    lr_gamma: float = Field(gt=0, le=1)
    grad_clip: float | None = Field(default=None, gt=0)


class AnpConfig(_Strict):
    """ANP sizes; ``heads`` attention heads of width hidden/heads each (must divide ``hidden``); ``min_std``
    the floor of the decoder's σ; ``constraint_noise_var`` σ_G² of the constrained likelihood that the
    ``probconserv_trained`` twin is trained with (0: the exact constraint its evaluation imposes)."""

    hidden: int = Field(ge=1)
    latent: int = Field(ge=1)
    heads: int = Field(default=4, ge=1, validate_default=True)  # the default must divide hidden too
    n_latent_samples: int = Field(ge=1)
    min_std: float = Field(gt=0)
    constraint_noise_var: float = Field(ge=0)
    train: TrainConfig

    @field_validator("heads")
    @classmethod
    def _heads_divide_hidden(cls, heads: int, info: ValidationInfo) -> int:
        hidden = info.data.get("hidden")  # declared before heads; absent when itself invalid
        if hidden is not None and hidden % heads:
            allowed = [d for d in range(1, hidden + 1) if hidden % d == 0]
            raise ValueError(f"{heads} must divide hidden = {hidden}; allowed: {', '.join(map(str, allowed))}")
        return heads


class EnsembleConfig(_Strict):
    """Deep-ensemble sizes; ``min_std`` and ``constraint_noise_var`` as in :class:`AnpConfig`, per member."""

    members: int = Field(ge=1)
    hidden: int = Field(ge=1)
    layers: int = Field(ge=1)
    min_std: float = Field(gt=0)
    constraint_noise_var: float = Field(ge=0)
    train: TrainConfig


class FnoConfig(_Strict):
    """FNO sizes. ``modes``: Fourier modes kept per grid axis, one number for every axis or a list with one per
    axis (x, then y, then t on the multi-step cases), each at most what the case's grid holds (checked against
    every case's grid when params.yaml is loaded). ``time_padding``: zero steps appended to the time axis inside
    the Fourier layers of the multi-step cases (``FNO(time_padding=…)``; ignored on single-step ones)."""

    width: int = Field(ge=1)
    modes: int | list[int]
    layers: int = Field(ge=1)
    time_padding: int = Field(default=0, ge=0)
    train: TrainConfig

    @field_validator("modes")
    @classmethod
    def _modes_positive(cls, v: int | list[int]) -> int | list[int]:
        per_axis = [v] if isinstance(v, int) else v
        if not per_axis or any(m < 1 for m in per_axis):
            raise ValueError(f"{v} must be a number >= 1 or a non-empty list of them; allowed range [1, inf) per axis")
        return v


class CaseOverride(PerProfile):
    """Per-case changes to a model's settings, per profile: any of its keys, ``train`` key by key
    (e.g. BOON's width 32 / modes 12 for 1-D + time; a longer ANP training on the Stefan front)."""

    quick: dict[str, Any] = Field(default_factory=dict)
    paper: dict[str, Any] = Field(default_factory=dict)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, nested mappings merged key by key."""
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class _ModelPerProfile(PerProfile):
    """A model's settings per profile, with per-case overrides under ``cases``."""

    cases: dict[str, CaseOverride] = Field(default_factory=dict)

    def resolved(self, profile: str, case: str | None = None) -> BaseModel:
        """The settings of ``profile`` with ``case``'s override applied (validated)."""
        settings = self[profile]
        if case is None or case not in self.cases or not self.cases[case][profile]:
            return settings
        return type(settings).model_validate(_merge(settings.model_dump(), self.cases[case][profile]))

    @model_validator(mode="after")
    def _overrides_valid(self) -> _ModelPerProfile:
        errors = []
        for case, over in self.cases.items():
            for prof in PROFILES:
                try:
                    self.resolved(prof, case)
                except ValidationError as exc:
                    lines = _format_errors(exc, type(self[prof])).splitlines()
                    errors += [f".cases.{case}.{prof}.{line}" for line in lines]
        if errors:
            raise ValueError("\n".join(errors))
        return self


class AnpPerProfile(_ModelPerProfile):
    quick: AnpConfig
    paper: AnpConfig


class EnsemblePerProfile(_ModelPerProfile):
    quick: EnsembleConfig
    paper: EnsembleConfig


class FnoPerProfile(_ModelPerProfile):
    quick: FnoConfig
    paper: FnoConfig


class SoftcConfig(_Strict):
    """SoftC: weight of the conservation penalty added to the training loss."""

    penalty: float = Field(gt=0)


class BoonPosthocConfig(_Strict):
    """Post hoc BOON (the correction wrapped around the plain-trained FNO after training): ``rcond``, its
    conditioning guard (``BOONFNO(rcond=…)``). Read only after training, so apart from ``models.fno``."""

    rcond: float = Field(ge=0, lt=1)


class ModelsConfig(_Strict):
    anp: AnpPerProfile
    ensemble: EnsemblePerProfile
    softc: SoftcConfig
    fno: FnoPerProfile
    boon_posthoc: BoonPosthocConfig


class SeedsPerProfile(PerProfile):
    """How many seeds each network of a matrix group is trained with, per profile (1: the project seed only)."""

    quick: int = Field(default=1, ge=1)
    paper: int = Field(default=1, ge=1)


class MatrixGroup(_Strict):
    cases: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    constraints: list[str] = Field(min_length=1)
    seeds: SeedsPerProfile = SeedsPerProfile()

    @field_validator("cases", "models", "constraints")
    @classmethod
    def _each_once(cls, names: list[str]) -> list[str]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once; each name may appear once")
        return names


class MatrixConfig(_Strict):
    probconserv: MatrixGroup
    boon: MatrixGroup


#: The largest seed any network is trained with: numpy's and torch's generators take seeds below 2³², and the
#: seed study trains with ``seed, seed + 1, …`` (:meth:`ParamsModel.study_seeds`), so ``seed`` plus the study's
#: seeds must stay at or below it (checked when params.yaml is loaded). ``physml.training`` imports it.
MAX_SEED = 2**32 - 1


class ParamsModel(_Strict):
    """The whole params.yaml, validated against the PDE registry."""

    profile: Profile
    seed: int = Field(ge=0, le=MAX_SEED)
    cases: dict[str, CaseConfig] = Field(min_length=1)
    models: ModelsConfig
    matrix: MatrixConfig

    @model_validator(mode="before")
    @classmethod
    def _known_cases(cls, data: Any) -> Any:
        from physml import pdes

        cases = data.get("cases") if isinstance(data, dict) else None
        if isinstance(cases, dict):
            known = pdes.names()
            unknown = [f"cases.{n}: unknown case {n!r}; known cases: {', '.join(known)}" for n in cases if n not in known]
            if unknown:
                raise ValueError("\n".join(unknown))
        return data

    @model_validator(mode="after")
    def _against_registry(self) -> ParamsModel:
        from physml import pdes

        errors: list[str] = []
        known = pdes.names()
        for name, case in self.cases.items():
            path = f"cases.{name}"
            if name not in known:
                errors.append(f"{path}: unknown case {name!r}; known cases: {', '.join(known)}")
                continue
            try:
                problem = pdes.get(name)
            except ImportError as exc:
                errors.append(f"{path}: the problem module could not be imported ({exc})")
                continue
            errors += _check_case(path, case, problem)
        for group_name, group in (("probconserv", self.matrix.probconserv), ("boon", self.matrix.boon)):
            errors += _check_matrix(f"matrix.{group_name}", group_name, group, self.cases)
        for group_name, group in (("probconserv", self.matrix.probconserv), ("boon", self.matrix.boon)):
            for profile in PROFILES:
                last = self.seed + group.seeds[profile] - 1
                if last > MAX_SEED:
                    errors.append(f"seed: the {profile} seed study (matrix.{group_name}.seeds.{profile} = "
                                  f"{group.seeds[profile]}) would train with seed {last}; allowed range "
                                  f"with that study [0, {MAX_SEED - group.seeds[profile] + 1}] (got {self.seed})")
        errors += _check_fno_modes(self.models.fno, self.cases)
        for model, family in (("anp", "probconserv"), ("ensemble", "probconserv"), ("fno", "operator")):
            fits = [c for c in self.cases if c in pdes.names() and pdes.get(c).family == family]
            for name in getattr(self.models, model).cases:
                if name not in fits:
                    what = "not a configured case" if name not in self.cases else f"a case of the other family ({model} serves {family} cases)"
                    errors.append(f"models.{model}.cases.{name}: {what}; allowed: {', '.join(fits)}")
        if errors:
            raise ValueError("\n".join(errors))
        return self

    # ---- resolved views -------------------------------------------------------------------
    def with_profile(self, profile: str) -> ParamsModel:
        """A copy with another profile (validated: quick or paper)."""
        if profile not in PROFILES:
            raise ValueError(f"profile: {profile!r} is not allowed; allowed: {', '.join(PROFILES)}")
        return self.model_copy(update={"profile": profile})

    def case(self, name: str) -> CaseConfig:
        if name not in self.cases:
            raise ValueError(f"cases.{name}: not configured; configured cases: {', '.join(self.cases)}")
        return self.cases[name]

    def sizes(self, case: str) -> SplitSizes:
        """Split sizes of ``case`` for the active profile."""
        return self.case(case).sizes[self.profile]

    def grid(self, case: str) -> Grid:
        """Grid of an operator ``case`` for the active profile."""
        g = self.case(case).grid
        if g is None:
            raise ValueError(f"cases.{case}.grid: {case} is not an operator case")
        return g[self.profile]

    def test_grid(self, case: str) -> Grid | None:
        """The regular test-target grid of a ProbConserv ``case`` for the active profile (None: sampled)."""
        g = self.case(case).test_grid
        return None if g is None else g[self.profile]

    def model_settings(self, model: str, case: str | None = None) -> BaseModel:
        """Settings of ``model`` (anp, ensemble, fno, softc) for the active profile, with ``case``'s
        override (``models.<model>.cases.<case>``) applied."""
        if model == "softc":
            return self.models.softc
        if model not in ("anp", "ensemble", "fno"):
            raise ValueError(f"models.{model}: unknown model; allowed: anp, ensemble, fno, softc")
        return getattr(self.models, model).resolved(self.profile, case)

    def study_seeds(self, group: Literal["probconserv", "boon"]) -> list[int]:
        """Seeds of a matrix group's seed study for the active profile: ``seed, seed + 1, …``
        (``matrix.<group>.seeds`` of them); the first is the project seed, whose networks are the main training's."""
        return [self.seed + i for i in range(getattr(self.matrix, group).seeds[self.profile])]

    def experiments(self) -> list[tuple[str, str, str]]:
        """Every (case, model, constraint) triple of the matrix, probconserv group first."""
        out: list[tuple[str, str, str]] = []
        for group in (self.matrix.probconserv, self.matrix.boon):
            for c in group.cases:
                for m in group.models:
                    for k in group.constraints:
                        out.append((c, m, k))
        return out


def _check_case(path: str, case: CaseConfig, problem: Any) -> list[str]:
    errors: list[str] = []
    names = problem.parameter_names
    for pname in names:
        if pname not in case.parameters:
            p = problem.parameter(pname)
            errors.append(
                f"{path}.parameters.{pname}: missing; {problem.name} needs {list(names)} "
                f"({pname} allowed range {p.describe_range()})"
            )
    for pname, spec in case.parameters.items():
        if pname not in names:
            errors.append(f"{path}.parameters.{pname}: unknown parameter; {problem.name} has {list(names)}")
            continue
        p = problem.parameter(pname)
        for key, value in spec.bounds():
            if not p.contains(value):
                where = f"{path}.parameters.{pname}" + (f".{key}" if key else "")
                errors.append(
                    f"{where}: {value:g} is outside the physical range of {pname} ({p.description}); "
                    f"allowed range {p.describe_range()}"
                )
        values = spec.split_spec("test")
        for prof in PROFILES:
            n_test = case.sizes[prof].test
            if isinstance(values, list) and n_test < len(values):
                errors.append(f"{path}.sizes.{prof}.test: {n_test} test functions cannot hold the {len(values)} values of "
                              f"{path}.parameters.{pname}.test; allowed: >= {len(values)}")
    if not errors:  # every parameter present and in its range: the limits that tie them together
        box = {pname: (min(v for _, v in spec.bounds()), max(v for _, v in spec.bounds()))
               for pname, spec in case.parameters.items()}
        errors += [f"{path}.parameters.{e}" for e in problem.check_parameter_box(box)]
    if problem.family == "probconserv":
        if case.sampling is None:
            errors.append(f"{path}.sampling: required for probconserv cases ({{n_context, n_target_t, n_target_x}} >= 1)")
        if case.grid is not None:
            errors.append(f"{path}.grid: not allowed for probconserv cases (they use sampling and test_grid)")
        errors += _check_times(f"{path}.test_grid", case.test_grid, problem.t_domain)
    else:
        if case.grid is None:
            errors.append(f"{path}.grid: required for operator cases ({{quick, paper}}: {{nx >= {MIN_NX}, nt >= 1}})")
        errors += _check_times(f"{path}.grid", case.grid, problem.t_domain)
        if case.sampling is not None:
            errors.append(f"{path}.sampling: not allowed for operator cases (they use grid)")
        if case.test_grid is not None:
            errors.append(f"{path}.test_grid: not allowed for operator cases (their grid serves every split)")
    return errors


def _check_fno_modes(fno: FnoPerProfile, cases: dict[str, CaseConfig]) -> list[str]:
    """``models.fno.modes`` against the Fourier layers' grid of every configured operator case, per profile:
    n//2 modes per axis at most (n//2 + 1 on the last), where n is nx on a spatial axis and nt + time_padding on
    a multi-step case's time axis (:mod:`physml.experiments.variants`). The error names the key that set the
    modes: the case's override when it has one, else the profile's."""
    from physml import pdes
    from physml.experiments.variants import VARIANTS, modes_per_axis

    errors = []
    for name, case in cases.items():
        if name not in VARIANTS or case.grid is None:
            continue
        problem = pdes.get(name)
        for prof in PROFILES:
            settings = fno.resolved(prof, name)
            assert isinstance(settings, FnoConfig)
            grid = case.grid[prof]
            fno_grid = VARIANTS[name].fno_grid(grid.nx, len(grid.resolve_times(problem.t_domain)), settings.time_padding)
            try:
                modes_per_axis(settings.modes, fno_grid)
            except ValueError as exc:
                override = name in fno.cases and "modes" in fno.cases[name][prof]
                key = f"models.fno.cases.{name}.{prof}.modes" if override else f"models.fno.{prof}.modes"
                errors.append(f"{key}: for {name} ({prof} grid nx = {grid.nx}, axes "
                              f"{', '.join(VARIANTS[name].axes)}): {exc}")
    return errors


def _check_times(path: str, grid: GridPerProfile | None, t_domain: tuple[float, float]) -> list[str]:
    """Every profile's grid times must lie in (t0, t1]."""
    if grid is None:
        return []
    t0, t1 = t_domain
    errors = []
    for prof in PROFILES:
        times = grid[prof].resolve_times(t_domain)
        if times[0] <= t0 or times[-1] > t1:
            errors.append(
                f"{path}.{prof}.times: must lie in ({t0:g}, {t1:g}] (the problem's time domain), "
                f"got [{times[0]:g}, {times[-1]:g}]"
            )
    return errors


def _check_matrix(path: str, group_name: str, group: MatrixGroup, cases: dict[str, CaseConfig]) -> list[str]:
    from physml import pdes

    errors: list[str] = []
    family = MATRIX_FAMILY[group_name]
    for c in group.cases:
        if c not in cases:
            errors.append(f"{path}.cases: {c!r} is not configured under cases; allowed: {', '.join(cases)}")
            continue
        try:
            fam = pdes.get(c).family
        except (ImportError, ValueError):
            continue
        if fam != family:
            errors.append(f"{path}.cases: {c!r} is a {fam} case; this group takes {family} cases only")
    for m in group.models:
        if m not in MODELS[group_name]:
            errors.append(f"{path}.models: unknown model {m!r}; allowed: {', '.join(MODELS[group_name])}")
    for k in group.constraints:
        if k not in CONSTRAINTS[group_name]:
            errors.append(f"{path}.constraints: unknown constraint {k!r}; allowed: {', '.join(CONSTRAINTS[group_name])}")
    missing = [k for k in CONSTRAINTS[group_name] if k not in group.constraints]
    if missing:
        errors.append(f"{path}.constraints: must list every constraint ({', '.join(CONSTRAINTS[group_name])}), since "
                      f"dvc.yaml's evaluate stages declare one metrics file each; missing: {', '.join(missing)}")
    return errors


def _format_errors(exc: ValidationError, root: type[BaseModel] | None = None) -> str:
    """One line per error of ``exc``: key path, message, allowed range; ``root`` is the model validated
    (default :class:`ParamsModel`), where the fields' bounds are looked up."""
    lines = []
    errors = exc.errors()
    for err in errors:
        if _other_arm(err, errors):
            continue
        loc = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p))
        msg = err["msg"].removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if any(bound in ctx for bound in ("ge", "gt", "le", "lt")):
            bounds = {**_field_bounds(root or ParamsModel, err["loc"]), **ctx}  # ctx: the failed bound only
            msg = f"{msg}; allowed range " + _range_from_ctx(bounds)
        if err["type"] == "extra_forbidden":
            allowed = _keys_at(root or ParamsModel, err["loc"][:-1])
            msg = f"{msg}; allowed keys here: {', '.join(allowed)}" if allowed else msg
        if isinstance(err.get("input"), (str, int, float, bool)) and "(got " not in msg:
            msg = f"{msg} (got {err['input']!r})"
        for line in msg.splitlines():  # a line starting with "." continues the key path (nested validators)
            lines.append(f"{loc}{line}" if line.startswith(".") else f"{loc}: {line}" if loc else line)
    return "\n".join(lines)


def _other_arm(err: Any, errors: list[Any]) -> bool:
    """Whether ``err`` is a union member's type mismatch beside an error of the member the value was meant for
    (``test: {values: []}`` fails as a range, "Input should be a valid tuple", and as ``{values}``, "List should
    have at least 1 item"): only the second helps."""
    if not (err["type"].endswith("_type") and any(_is_union_tag(p) for p in err["loc"])):
        return False
    where = [p for p in err["loc"] if not _is_union_tag(p)]
    return any(other is not err and not other["type"].endswith("_type")
               and [p for p in other["loc"] if not _is_union_tag(p)][:len(where)] == where for other in errors)


_TYPE_TAG = re.compile(r"(int|float|str|bool|list|dict|tuple|none)|[a-z][a-z_-]*\[.*\]")
"""What pydantic puts into an error's key path for the member of a union it tried (``tuple[float, float]``,
``float``, ``function-after[...]``); the member models' class names are tags too (:func:`_is_union_tag`)."""


def _is_union_tag(part: Any) -> bool:
    """Whether a part of a pydantic error path names a union member (a type) rather than a params.yaml key."""
    return isinstance(part, str) and (_TYPE_TAG.fullmatch(part) is not None or part in _model_names())


def _model_names() -> set[str]:
    names, todo = set(), [_Strict]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


def _field_bounds(root: type[BaseModel], loc: tuple[Any, ...]) -> dict[str, float]:
    """Every numeric bound (ge, gt, le, lt) of the field at ``loc`` in the model ``root``, found by walking the
    models along the path (dict keys and union members on the way); {} where the path leaves them."""
    node: Any = root
    field = None
    for part in loc:
        node = _model_in(node)
        if node is None or not isinstance(part, str):
            return {}
        if part not in node.model_fields:
            continue  # a dict key (a case or model name): the walk stays on the dict's value model
        field = node.model_fields[part]
        node = field.annotation
    bounds: dict[str, float] = {}
    for item in field.metadata if field is not None else ():
        for name in ("ge", "gt", "le", "lt"):
            if getattr(item, name, None) is not None:
                bounds[name] = getattr(item, name)
    return bounds


def _keys_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at ``loc`` of the model ``root`` (the fields of the model there, found as
    :func:`_field_bounds` walks), [] where the path leaves the models."""
    node: Any = root
    for part in loc:
        model = _model_in(node)
        if model is None or not isinstance(part, str):
            return []
        if part in model.model_fields:
            node = model.model_fields[part].annotation
    model = _model_in(node)
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds: itself, a dict's values, or a union's model member."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _bound(value: float) -> str:
    """A bound as written in params.yaml: integers in full (4294967295, not 4.29497e+09)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range_from_ctx(ctx: dict[str, Any]) -> str:
    left = f"[{_bound(ctx['ge'])}" if "ge" in ctx else f"({_bound(ctx['gt'])}" if "gt" in ctx else "(-inf"
    right = f"{_bound(ctx['le'])}]" if "le" in ctx else f"{_bound(ctx['lt'])})" if "lt" in ctx else "inf)"
    return f"{left}, {right}"


def validate_params(data: Any) -> ParamsModel:
    """Validate an already-parsed params mapping; ValueError listing every problem with its key path."""
    if not isinstance(data, dict):
        raise ValueError(f"params: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return ParamsModel.model_validate(data)
    except ValidationError as exc:
        raise ValueError("invalid params:\n" + _format_errors(exc)) from None


def load_params(path: str | Path = "params.yaml") -> ParamsModel:
    """Read and validate params.yaml; ValueError naming each bad key path and its allowed range."""
    return validate_params(read_params_yaml(path))


def read_params_yaml(path: str | Path) -> Any:
    """The contents of a params file, read as DVC reads it: ruamel.yaml's safe loader, YAML 1.2 (``1e-3`` is
    a number; ``<<:`` merges keep the nearest key, also through an anchor that itself merges). PyYAML differs
    on both, so a params.yaml read by it could train on settings other than those DVC's ``${...}`` and
    ``dvc exp`` read. A key given twice in one mapping (equal as values: ``1`` and ``0x1``, ``~`` and ``null``)
    is refused with both its places, also beside a merge key, where ruamel lets the last one win silently.
    ValueError names a missing, empty, non-UTF-8, malformed or too deeply nested file, and a ``%YAML``
    directive other than 1.2 (the key check builds keys as YAML 1.2 does)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"params file {str(path)!r} is a directory, not a YAML file")
    if not path.is_file():
        raise ValueError(f"params file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"params file {str(path)!r} is not UTF-8 text ({exc})") from None
    name = f"params file {str(path)!r}"
    directive = re.search(r"^%YAML\s+(\S+)", text, re.MULTILINE)
    if directive and directive[1] != "1.2":
        raise ValueError(f"{name}: %YAML {directive[1]}: physml reads YAML 1.2 (as DVC does by default); remove "
                         f"the directive")
    try:
        reader = ruamel.yaml.YAML(typ="safe")
        tree = reader.compose(text)
        repeated = None if tree is None else _repeated_key(tree, ruamel.yaml.YAML(typ="safe").constructor)
        data = None if tree is None or repeated else reader.load(text)
    except ruamel.yaml.YAMLError as exc:
        raise ValueError(f"{name} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ValueError(f"{name} is nested too deeply to read") from None
    except (ValueError, TypeError, KeyError, IndexError, AssertionError, OverflowError) as exc:
        # a tagged value ruamel cannot build (``!!int ""``, ``!!bool foo``) escapes as a plain exception
        raise ValueError(f"{name} is not valid YAML: a tagged value could not be built "
                         f"({type(exc).__name__}: {exc})") from None
    if repeated:
        raise ValueError(f"{name}: {repeated}")
    if data is None:
        raise ValueError(f"{name} is empty: it holds no settings")
    return data


def _repeated_key(tree: ruamel.yaml.nodes.Node, constructor: Any) -> str | None:
    """``found the key 'seed' twice (first line 3, again line 40); give each key once`` for the first mapping of
    the composed ``tree`` that holds a key twice (keys compared as the values they construct; merge keys left
    out, as what a merge brings in may be overridden), else None. Walks the tree without recursion, each node
    once (an aliased anchor is one node)."""
    stack, seen = [tree], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ruamel.yaml.nodes.MappingNode):
            first: dict[Any, Any] = {}
            for key, _ in node.value:
                if not isinstance(key, ruamel.yaml.nodes.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                value = constructor.construct_object(key, deep=True)
                if value in first:
                    where = _places(first[value].start_mark, key.start_mark)
                    return f"found the key {value!r} twice ({where}); give each key once"
                first[value] = key
            stack += [n for pair in reversed(node.value) for n in reversed(pair)]
        elif isinstance(node, ruamel.yaml.nodes.SequenceNode):
            stack += reversed(node.value)
    return None


def _places(first: Any, again: Any) -> str:
    """``first line 3, again line 40``; with columns when both are on one line."""
    if first.line == again.line:
        return f"first line {first.line + 1} column {first.column + 1}, again column {again.column + 1}"
    return f"first line {first.line + 1}, again line {again.line + 1}"


__all__ = [
    "CONSTRAINTS",
    "PROFILES",
    "SPLITS",
    "CaseConfig",
    "Grid",
    "ParamSpec",
    "ParamsModel",
    "Sampling",
    "SplitSizes",
    "load_params",
    "read_params_yaml",
    "validate_params",
]
