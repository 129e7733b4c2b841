"""The pipeline's last stage: one readable index of both methods' results.

Reads every ``metrics/<profile>/<case>/<model>/<constraint>.json`` the evaluate stage wrote, tabulates
them (ProbConserv: case × model rows, one column group per constraint; BOON: case rows, FNO vs the FNO
with its boundary entries overwritten vs BOON trained vs BOON post hoc, and FNO ÷ BOON), copies the figures
next to the index, checks the quality bars the issues set (for every profile; in the paper profile also the
article's factor, :data:`PAPER_L2_FACTOR`), names the cases the profile has not run, and records which data
and model versions produced the numbers.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import scipy.stats

from physml import pdes
from physml.atomic import staging_dir
from physml.config import ParamsModel
from physml.metrics import per_value_key
from physml.stages import Layout, read_made_from

PROBCONSERV_COLUMNS = ("mse", "conservation_error", "bound_violation", "log_likelihood", "crps", "coverage_90",
                       "coverage_90_above_bound")
BOON_COLUMNS = ("rel_l2", "boundary_max_abs")
#: What a method's table says when the profile has no metrics of its cases.
NO_METRICS = "_No metrics in this profile._"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def collect_metrics(params: ParamsModel, root: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    """Every (case, model, constraint) → metrics dict that exists on disk for the active profile."""
    lay = Layout(Path(root), params.profile)
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    for case, model, constraint in params.experiments():
        path = lay.metrics(case, model) / f"{constraint}.json"
        if path.is_file():
            out[(case, model, constraint)] = json.loads(path.read_text())
    return out


def collect_seed_studies(params: ParamsModel, root: Path, group: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (case, model) of the matrix ``group`` → its ``seeds.json``, when that file exists and holds the seeds
    the active params ask for (:meth:`ParamsModel.study_seeds`); a study of other seeds is stale and left out."""
    lay = Layout(Path(root), params.profile)
    matrix = getattr(params.matrix, group)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for case in matrix.cases:
        for model in matrix.models:
            path = lay.seed_study_file(case, model)
            if path.is_file():
                study = json.loads(path.read_text())
                if study.get("seeds") == params.study_seeds(group):
                    out[(case, model)] = study
    return out


def _table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _grid_text(params: ParamsModel) -> str:
    """'nt × nx (cases)' for each distinct test grid of the ProbConserv cases, or 'sampled' without one."""
    groups: dict[str, list[str]] = {}
    for case in params.matrix.probconserv.cases:
        g = params.test_grid(case)
        label = ("sampled like training" if g is None
                 else f"{len(g.resolve_times(pdes.get(case).t_domain))} times × {g.nx} positions")
        groups.setdefault(label, []).append(case)
    return "; ".join(f"{label} ({', '.join(cases)})" for label, cases in groups.items())


SHOCK_COLUMNS = ("shock_bias", "shock_std", "shock_coverage_90")
#: Front read at u = p*/2 (no suffix) and at u = 0 (the reference's level); ``physml.experiments.probconserv``.
SHOCK_LEVEL_SUFFIXES = {"p*/2": "", "0": "_level0"}


def shock_table(params: ParamsModel, metrics: Mapping[tuple[str, str, str], Mapping[str, float]]) -> str:
    """Markdown table of the Stefan shock-position posteriors: per model × constraint, at each reading
    level, the mean signed error of the posterior mean, the mean posterior std and the fraction of test
    functions whose exact front lies in the posterior's central 90 % interval. Empty string without Stefan."""
    group = params.matrix.probconserv
    rows = []
    for model in group.models:
        for constraint in group.constraints:
            m = metrics.get(("stefan", model, constraint))
            if m is None or "shock_bias" not in m:
                continue
            rows.append([model, constraint] + [_fmt(m.get(f"{c}{suffix}")) for suffix in SHOCK_LEVEL_SUFFIXES.values()
                                               for c in SHOCK_COLUMNS])
    if not rows:
        return ""
    header = [f"{c.removeprefix('shock_').replace('coverage_90', 'x* in 90 %')} (u = {level})"
              for level in SHOCK_LEVEL_SUFFIXES for c in SHOCK_COLUMNS]
    return _table(rows, ["model", "constraint", *header])


def truth_conservation_line(params: ParamsModel, metrics: Mapping[tuple[str, str, str], Mapping[str, float]]) -> str:
    """One sentence: the exact solution's own conservation error on each case's test grid (the trapezoid
    rule's error there), the scale against which the black boxes' errors and the updates' round-off read."""
    parts = []
    for case in params.matrix.probconserv.cases:
        found = [m["conservation_error_truth"] for (c, _, _), m in metrics.items()
                 if c == case and "conservation_error_truth" in m]
        if found:
            parts.append(f"{case} {_fmt(found[0])}")
    if not parts:
        return ""
    return ("The exact solution's own conservation error at the same targets (the trapezoid rule's error on "
            f"this grid): {', '.join(parts)}. The updates make the prediction's trapezoid mass equal b to "
            "round-off; the true field itself misses b by this much, so an error below it is not closer to the "
            "physics, only to the quadrature.")


def _value_text(pname: str, value: float, lo: float, hi: float) -> str:
    """'p_star = 0.6', marked when the value lies outside the parameter's training range [lo, hi]."""
    return f"{pname} = {value:g}" + ("" if lo <= value <= hi else f" (outside train [{lo:g}, {hi:g}])")


def per_value_table(params: ParamsModel, metrics: Mapping[tuple[str, str, str], Mapping[str, float]],
                    metric: str = "mse") -> str:
    """Markdown table of ``metric`` per test value, for the cases whose test set is drawn at a list of parameter
    values (params.yaml ``test: {values: [...]}``; the overall number pools values the black box meets very
    differently, e.g. stefan's p* = 0.5 outside its training range and 0.6 inside): per case × model × value,
    every constraint's ``metric`` over that value's test functions (the key ``<metric>_<parameter>_<value>`` of
    :func:`~physml.metrics.per_value_key`), and for the MSE the plain black box's over ProbConserv's. A value
    outside the parameter's training range is marked. Empty string without such a case or metric."""
    group = params.matrix.probconserv
    ratio = metric == "mse"
    rows = []
    for case in group.cases:
        for pname, spec in params.case(case).parameters.items():
            values, (lo, hi) = spec.split_spec("test"), spec.split_spec("train")
            if not isinstance(values, list):
                continue
            for model in group.models:
                for value in values:
                    key = per_value_key(metric, pname, value)
                    found = {c: metrics.get((case, model, c), {}).get(key) for c in group.constraints}
                    if all(v is None for v in found.values()):
                        continue
                    plain, updated = found.get("none"), found.get("probconserv")
                    label = _value_text(pname, value, lo, hi)
                    rows.append([case, model, label, *(_fmt(found[c]) for c in group.constraints),
                                 *([f"{plain / updated:.2f}" if plain is not None and updated else "–"]
                                   if ratio else [])])
    if not rows:
        return ""
    return _table(rows, ["case", "model", "test value", *(f"{c} {metric}" for c in group.constraints),
                         *(["none ÷ probconserv"] if ratio else [])])


def probconserv_table(params: ParamsModel, metrics: Mapping[tuple[str, str, str], Mapping[str, float]]) -> str:
    """Markdown table: one row per case × model × constraint, the ProbConserv metrics as columns."""
    group = params.matrix.probconserv
    rows = []
    for case in group.cases:
        for model in group.models:
            for constraint in group.constraints:
                m = metrics.get((case, model, constraint))
                if m is None:
                    continue
                rows.append([case, model, constraint] + [_fmt(m.get(c)) for c in PROBCONSERV_COLUMNS]
                            + [_fmt(m.get("shock_abs_error")) if case == "stefan" else "–"])
    if not rows:
        return NO_METRICS
    return _table(rows, ["case", "model", "constraint", *PROBCONSERV_COLUMNS, "shock position error (u = p*/2)"])


def l2_factor(plain: float, boon: float) -> float:
    """How many times lower BOON's relative L2 is than the FNO's: e(FNO) / e(BOON) (the article's 2–20×;
    below 1 BOON is worse); inf when BOON's error is 0."""
    return math.inf if boon == 0 else plain / boon


def boon_table(params: ParamsModel, metrics: Mapping[tuple[str, str, str], Mapping[str, float]]) -> str:
    """Markdown table: one row per case that has metrics, relative L2 and boundary error for each BOON variant,
    and FNO ÷ BOON (:func:`l2_factor`) of the project seed's networks."""
    group = params.matrix.boon
    header = ["case", "model"]
    for constraint in group.constraints:
        header += [f"{constraint} {c}" for c in BOON_COLUMNS]
    rows = []
    for case in group.cases:
        for model in group.models:
            if not any((case, model, c) in metrics for c in group.constraints):
                continue
            row = [case, model]
            for constraint in group.constraints:
                m = metrics.get((case, model, constraint), {})
                row += [_fmt(m.get(c)) for c in BOON_COLUMNS]
            plain, boon = (metrics.get((case, model, c), {}).get("rel_l2") for c in ("none", "boon"))
            row.append(f"{l2_factor(plain, boon):.2f}" if plain is not None and boon is not None else "–")
            rows.append(row)
    if not rows:
        return NO_METRICS
    return _table(rows, [*header, "FNO ÷ BOON rel_l2"])


def truth_boundary_line(params: ParamsModel, root: Path) -> str:
    """One sentence: the exact solution's own boundary error on each BOON case's test split
    (``truth_boundary_max_abs`` of its ``per_time.json``: the boundary error's measure applied to the true
    field), the scale against which BOON's round-off reads. 0 for Dirichlet data (the true boundary values);
    for a Neumann condition, the one-sided stencil's truncation error on the sampled exact field."""
    from physml.experiments.boon import PER_TIME_FILE

    lay = Layout(Path(root), params.profile)
    parts = []
    for case in params.matrix.boon.cases:
        found = [json.loads(path.read_text()).get("truth_boundary_max_abs") for model in params.matrix.boon.models
                 if (path := lay.metrics(case, model) / PER_TIME_FILE).is_file()]
        if found and found[0] is not None:
            parts.append(f"{case} {_fmt(found[0])}")
    if not parts:
        return ""
    return ("The exact solution's own boundary error on the same test fields (the same measure applied to the "
            f"true field): {', '.join(parts)}. Dirichlet data are the true boundary values; a Neumann condition is "
            "measured with the one-sided difference stencil of the sampled field, which the exact solution meets "
            "only to the stencil's truncation error. BOON and the control meet that discrete condition to "
            "round-off, a condition the true field itself misses by this much.")


def not_run(params: ParamsModel, metrics: Mapping[tuple[str, str, str], Mapping[str, float]]) -> list[str]:
    """The matrix's cases without a single metrics file in this profile (e.g. a paper profile run in part)."""
    have = {case for case, _, _ in metrics}
    return [case for case in dict.fromkeys(c for c, _, _ in params.experiments()) if case not in have]


#: Two-sided level of the seed-noise test: a paired difference is called lower (or higher) when a difference of
#: 0 would give one as far out on that side with probability at most NOISE_LEVEL / 2 (:func:`noise_threshold`).
NOISE_LEVEL = 0.05
#: The article's headline: BOON's relative L2 is 2× to 20× lower than that of the FNO it corrects. The paper
#: profile (the reference sizes) is held to the lower end (a quality bar there only).
PAPER_L2_FACTOR = 2.0
#: The profile at the reference sizes, where the article's factor is a bar.
PAPER_PROFILE = "paper"
#: What "exact" means in the bars: both methods' guarantees are computed in float64 (ProbConserv's update,
#: BOON's predictions, :mod:`physml.experiments.boon`), so the conservation error and BOON's boundary error
#: must be at float64 round-off, not at float32's.
ROUND_OFF = 1e-10
#: The constraints BOON is compared with seed by seed (:func:`paired_difference`), and their names in tables.
PAIRED_BASELINES: dict[str, str] = {"none": "FNO", "overwrite": "overwrite"}


class PairedDifference(NamedTuple):
    """Mean and standard error of the per-seed differences of one seed study, and its number of seeds."""

    mean: float
    se: float
    n: int


def paired_difference(study: Mapping[str, Any], baseline: str = "none",
                      constraint: str = "boon", metric: str = "rel_l2") -> PairedDifference | None:
    """Mean and standard error of d_i = e_i(constraint) - e_i(baseline) over a seed study's n seeds, e the study's
    ``metric`` (BOON: each seed trains both networks, so the pairs share data and initial draw; ``overwrite``
    and ``boon_posthoc`` are the plain network of the same seed with its boundary entries set, or its kernels
    corrected; ProbConserv, ``mse``: every constraint is the same plain network of that seed, updated); None
    without both or with fewer than 2 seeds.

    mean = (1/n) Σ d_i, s.e. = sd(d) / √n with the sample standard deviation: |mean| < :func:`noise_threshold`
    (n) · s.e. is a difference the seed alone could make.
    """
    errors = study.get(metric, {})
    if constraint not in errors or baseline not in errors or len(errors[constraint]) < 2:
        return None
    d = [c - base for c, base in zip(errors[constraint], errors[baseline], strict=True)]
    if not all(math.isfinite(x) for x in d):
        # a diverged seed: no verdict (paired_verdict says so, and the bar fails)
        return PairedDifference(math.nan, math.nan, len(d))
    return PairedDifference(statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d)), len(d))


@functools.lru_cache(maxsize=64)
def noise_threshold(n: int) -> float:
    """t_{1 − NOISE_LEVEL/2, n − 1}, Student's quantile with n − 1 degrees of freedom (2.78 for 5 seeds, 2.36 for
    8): for normal per-seed differences of mean 0, mean / s.e. is t-distributed with n − 1 degrees of freedom,
    so it lies beyond this on one side with probability NOISE_LEVEL / 2. (A fixed 2 s.e. would be passed by
    a true difference of 0 about 6 % of the time on one side with 5 seeds.)"""
    if n < 2:
        raise ValueError(f"n must be at least 2 seeds for a standard error, got {n}")
    return float(scipy.stats.t.ppf(1.0 - NOISE_LEVEL / 2, n - 1))


def _noise_text(seeds: list[int]) -> str:
    """The report's sentence on what a seed study of ``seeds`` calls seed noise (:func:`noise_threshold`)."""
    n = len(seeds)
    if n < 2:
        return "one seed gives no standard error, so no difference is told from seed noise"
    return (f"a difference under {noise_threshold(n):.2f} standard errors, the "
            f"{100 * (1 - NOISE_LEVEL / 2):g} % quantile of Student's t with {n - 1} degrees of freedom (a "
            f"two-sided {100 * NOISE_LEVEL:g} % test), is one the seed alone could make")


def paired_verdict(diff: PairedDifference, name: str = "BOON") -> str:
    """"<name> lower" / "<name> higher" when the mean paired difference is at least :func:`noise_threshold`
    (n) standard errors from zero on that side, "non-finite" when a seed's error is not finite, else "within
    seed noise" (the L2 bar holds on "lower" and "within seed noise" only)."""
    mean, se, n = diff
    if not (math.isfinite(mean) and math.isfinite(se)):
        return "non-finite"
    threshold = noise_threshold(n)
    if mean > 0 and mean >= threshold * se:
        return f"{name} higher"
    if mean < 0 and -mean >= threshold * se:
        return f"{name} lower"
    return "within seed noise"


def _paired_text(diff: PairedDifference, name: str = "BOON") -> str:
    return f"{_fmt(diff.mean)} ± {_fmt(diff.se)} ({paired_verdict(diff, name)})"


def posthoc_summary(studies: Mapping[tuple[str, str], Mapping[str, Any]]) -> str | None:
    """What the seed studies say about correcting an already trained FNO: post hoc BOON (``boon_posthoc``)
    against the overwrite control on the same plain network, per seed (:func:`paired_difference`), and, when the
    seeds put one of the two lower on every case, which. None when no study has both."""
    diffs = {f"{case}/{model}": d for (case, model), study in studies.items()
             if (d := paired_difference(study, "overwrite", "boon_posthoc")) is not None}
    if not diffs:
        return None
    verdicts = [paired_verdict(d, "post hoc") for d in diffs.values()]
    text = ("Post hoc: `boon_posthoc` corrects the kernels of the FNO trained without the correction (its own "
            "weights, no retraining); `overwrite` makes the same network meet the condition by setting its "
            "boundary entries alone. Post hoc − overwrite per seed (mean ± s.e.): "
            + "; ".join(f"{name} {_paired_text(d, 'post hoc')}" for name, d in diffs.items()) + ".")
    if all(v == "post hoc higher" for v in verdicts):
        text += (" The control is lower on every case: to make an already trained FNO meet the condition, set "
                 "its boundary entries rather than correct its kernels.")
    elif all(v == "post hoc lower" for v in verdicts):
        text += " Post hoc BOON is lower than the control on every case."
    return text


def seed_study_table(params: ParamsModel, studies: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """Markdown table: one row per studied case, relative L2 mean ± spread over the seeds per constraint."""
    constraints = params.matrix.boon.constraints
    baselines = [b for b in PAIRED_BASELINES if b in constraints]
    rows = []
    for (case, model), study in studies.items():
        n = len(study["seeds"])
        row = [case, model, str(n)]
        row += [f"{_fmt(study['rel_l2_mean'][c])} ± {_fmt(study['rel_l2_spread'][c])}" if c in study["rel_l2_mean"]
                else "–" for c in constraints]
        row.append(f"{study['boon_ahead']}/{n}" if "boon_ahead" in study else "–")
        for baseline in baselines:
            diff = paired_difference(study, baseline)
            row.append(_paired_text(diff) if diff is not None else "–")
        rows.append(row)
    return _table(rows, ["case", "model", "seeds", *(f"{c} rel_l2" for c in constraints), "BOON ≤ FNO",
                         *(f"BOON − {PAIRED_BASELINES[b]} per seed (mean ± s.e.)" for b in baselines)])


#: Per matrix group: the metric its seed study records per seed, its name in a figure's title and on its axis.
STUDY_METRIC: dict[str, tuple[str, str, str]] = {"boon": ("rel_l2", "relative L2", "relative L2 error"),
                                                 "probconserv": ("mse", "MSE", "MSE")}


def study_differences(study: Mapping[str, Any], group: str) -> dict[str, PairedDifference]:
    """The paired per-seed differences the report and MLflow give for a seed study of matrix ``group``:
    BOON − each of :data:`PAIRED_BASELINES` and post hoc BOON − overwrite (relative L2); ProbConserv − the
    plain black box (MSE). Name → (mean, s.e., n) (:func:`paired_difference`), those with two seeds or more."""
    if group == "boon":
        diffs = {f"boon_minus_{b}": paired_difference(study, b) for b in PAIRED_BASELINES}
        diffs["boon_posthoc_minus_overwrite"] = paired_difference(study, "overwrite", "boon_posthoc")
    else:
        diffs = {"probconserv_minus_none": paired_difference(study, "none", "probconserv", "mse")}
    return {name: d for name, d in diffs.items() if d is not None}


def seed_study_figure(params: ParamsModel, studies: Mapping[tuple[str, str], Mapping[str, Any]], path: Path,
                      group: str) -> Path:
    """Every study of matrix ``group``: its metric per seed and constraint (one dot per seed, a bar at the
    mean) → ``path``."""
    from physml import plots

    metric, name, axis = STUDY_METRIC[group]
    labels, palette = ((plots.OPERATOR_LABELS, plots.OPERATOR_COLORS) if group == "boon"
                       else (plots.METHOD_LABELS, plots.METHOD_COLORS))
    matrix = getattr(params.matrix, group)
    groups = {(case if len(matrix.models) == 1 else f"{case} · {model}"):
              {labels.get(c, c): study[metric][c] for c in matrix.constraints if c in study[metric]}
              for (case, model), study in studies.items()}
    colors = {labels.get(c, c): color for c, color in palette.items()}
    n = len(params.study_seeds(group))
    what = "trainings per network" if group == "boon" else "trainings of each black box"
    return plots.errors_per_seed(groups, path, f"seed study: test {name} of {n} {what} (bar: mean)", colors,
                                 ylabel=axis)


def _seed_study_figure(params: ParamsModel, studies: Mapping[tuple[str, str], Mapping[str, Any]], path: Path,
                       group: str) -> str:
    """Draw every study's per-seed errors into ``path``; returns the report's markdown for it."""
    seed_study_figure(params, studies, path, group)
    what = "relative L2" if group == "boon" else "black boxes' MSE"
    return f"### seed study · {what} per seed\n\n![seed study](figures/{path.name})\n"


def seeds_ahead(errors: Mapping[str, list[float]], constraint: str = "probconserv", baseline: str = "none") -> int:
    """On how many seeds ``constraint``'s error is at most ``baseline``'s (per-seed lists of one study)."""
    return sum(c <= base for c, base in zip(errors[constraint], errors[baseline], strict=True))


def ratio_per_seed(errors: Mapping[str, list[float]], constraint: str = "probconserv",
                   baseline: str = "none") -> tuple[float, float, float]:
    """baseline ÷ constraint per seed: its geometric mean exp((1/n) Σ log(e_i(baseline) / e_i(constraint))), min
    and max. The geometric mean, so that one seed's large ratio does not dominate and the inverse ratio's
    mean is the inverse; inf when the constraint's error is 0 on a seed."""
    ratios = [base / c if c else math.inf for c, base in zip(errors[constraint], errors[baseline], strict=True)]
    if math.inf in ratios:
        return math.inf, min(ratios), math.inf
    return math.exp(statistics.fmean(math.log(r) for r in ratios)), min(ratios), max(ratios)


def probconserv_seed_table(params: ParamsModel, studies: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """Markdown table of the ProbConserv seed studies: per case × model, over all test functions and over those
    of each listed test value, the MSE mean ± spread over the seeds per post hoc constraint, none ÷ probconserv
    per seed (:func:`ratio_per_seed`: geometric mean and range), on how many seeds probconserv's MSE is at
    most the plain black box's, and the paired difference probconserv − none (mean ± s.e.,
    :func:`paired_difference`)."""
    order = [c for c in params.matrix.probconserv.constraints if any(c in s["mse"] for s in studies.values())]
    rows = []
    for (case, model), study in studies.items():
        n = len(study["seeds"])
        subsets = [("all", study["mse"])]
        for key, per_constraint in study.get("mse_per_value", {}).items():
            subsets.append((_value_label(params, case, key), per_constraint))
        for label, errors in subsets:
            row = [case, model, label, str(n)]
            row += [f"{_fmt(statistics.fmean(errors[c]))} ± {_fmt(statistics.stdev(errors[c]) if n > 1 else 0.0)}"
                    if c in errors else "–" for c in order]
            if "none" in errors and "probconserv" in errors:
                mean, lo, hi = ratio_per_seed(errors)
                diff = paired_difference({"mse": errors}, "none", "probconserv", "mse")
                row += [f"{mean:.2f} [{lo:.2f}–{hi:.2f}]", f"{seeds_ahead(errors)}/{n}",
                        _paired_text(diff, "ProbConserv") if diff is not None else "–"]
            else:
                row += ["–", "–", "–"]
            rows.append(row)
    return _table(rows, ["case", "model", "test functions", "seeds", *(f"{c} mse" for c in order),
                         "none ÷ probconserv per seed: geometric mean [range]", "probconserv ≤ none",
                         "probconserv − none per seed (mean ± s.e.)"])


def _value_label(params: ParamsModel, case: str, key: str) -> str:
    """'p_star = 0.6' for the per-value key ``mse_p_star_0.6`` of ``case`` (:func:`~physml.metrics.per_value_key`),
    marked when the value lies outside the parameter's training range; the key itself if no listed value gives it."""
    for pname, spec in params.case(case).parameters.items():
        values, (lo, hi) = spec.split_spec("test"), spec.split_spec("train")
        for value in values if isinstance(values, list) else []:
            if per_value_key("mse", pname, value) == key:
                return _value_text(pname, value, lo, hi)
    return key


#: The metrics every constraint's file must hold for the bars of its family.
REQUIRED_METRICS = {"probconserv": ("mse", "conservation_error"), "operator": ("rel_l2", "boundary_max_abs")}


def _completeness(params: ParamsModel, metrics: Mapping[tuple[str, str, str], Mapping[str, float]]) -> list[tuple[str, bool, str]]:
    """One bar: every case × model with any metrics has a file for each constraint of its matrix group, holding
    :data:`REQUIRED_METRICS`, so that a lost file (or key) fails a bar instead of silently dropping the bars
    it feeds. (A case with no metrics at all is named as not run instead.) No bar without metrics."""
    expected, missing = 0, []
    for group in (params.matrix.probconserv, params.matrix.boon):
        for case in group.cases:
            required = REQUIRED_METRICS[pdes.get(case).family]
            for model in group.models:
                if not any((case, model, c) in metrics for c in group.constraints):
                    continue
                for c in group.constraints:
                    expected += 1
                    m = metrics.get((case, model, c))
                    if m is None:
                        missing.append(f"{case}/{model}/{c}.json")
                    elif lost := [k for k in required if k not in m]:
                        missing.append(f"{case}/{model}/{c}.json ({', '.join(lost)})")
    if not expected:
        return []
    return [("every constraint's metrics file of the cases run, with the metrics the bars read", not missing,
             f"missing: {'; '.join(missing)}" if missing else f"{expected} of {expected}")]


def quality_checks(params: ParamsModel, metrics: Mapping[tuple[str, str, str], Mapping[str, float]],
                   studies: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
                   probconserv_studies: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
                   ) -> list[tuple[str, bool, str]]:
    """The quality bars of the ProbConserv and BOON issues, evaluated on these metrics (bars of a case that
    has no metrics are left out).

    BOON's relative L2 bar: where ``studies`` holds a seed study of more than one seed (the project seed's
    pair is one draw of that comparison), it holds unless BOON's per-seed difference to the FNO is above zero
    by :func:`noise_threshold` standard errors or more (:func:`paired_difference`): "no worse" as far as the seeds can
    tell, which a comparison of two means would decide by round-off when the two tie. Without a study it
    compares the project seed's pair. In the paper profile BOON's relative L2 must also be PAPER_L2_FACTOR
    times lower than the FNO's (:func:`l2_factor`), on the seed means when there is a study.

    Stefan's MSE bars: where ``probconserv_studies`` holds a Stefan study of more than one seed, each constraint
    it holds (probconserv, probconserv_mixture, probconserv_nonnegative) must have an MSE lower than the plain
    black box's beyond seed noise (:func:`paired_verdict` "ProbConserv lower"; a claim of "lower", not BOON's
    "not worse", which a true difference of 0 passes with probability NOISE_LEVEL / 2), in place of the
    project seed's pair; the trained twin (one training) and the shock positions compare the project seed's networks.
    """
    studies = studies or {}
    probconserv_studies = probconserv_studies or {}
    checks = _completeness(params, metrics)
    pc = params.matrix.probconserv
    for case in pc.cases:
        for model in pc.models:
            for constraint in ("probconserv", "probconserv_mixture", "probconserv_nonnegative", "probconserv_trained",
                               "hardc"):
                m = metrics.get((case, model, constraint))
                if constraint == "probconserv_nonnegative" and not pdes.get(case).nonnegative:
                    continue  # u changes sign (heat): the file is probconserv_mixture's numbers under another name
                if m is not None and "conservation_error" in m:
                    ce = m["conservation_error"]
                    checks.append((f"{case}/{model}: {constraint} conservation error ≤ {ROUND_OFF:g}", ce <= ROUND_OFF,
                                   _fmt(ce)))
            m = metrics.get((case, model, "probconserv_nonnegative"))
            if m is not None and "bound_violation" in m:  # a case whose physics keeps u ≥ 0
                worst = m["bound_violation"]
                checks.append((f"{case}/{model}: probconserv_nonnegative mean ≥ 0 (to 1e-12)", worst <= 1e-12,
                               _fmt(worst)))
            if m is not None and "draw_bound_violation" in m:  # a case with posterior draws (stefan)
                worst = m["draw_bound_violation"]
                checks.append((f"{case}/{model}: probconserv_nonnegative posterior draws ≥ 0 (to 1e-12)",
                               worst <= 1e-12, _fmt(worst)))
    for model in pc.models:
        study = probconserv_studies.get(("stefan", model))
        for constraint in ("probconserv", "probconserv_mixture", "probconserv_nonnegative", "probconserv_trained"):
            base, ours = metrics.get(("stefan", model, "none")), metrics.get(("stefan", model, constraint))
            diff = (paired_difference(study, "none", constraint, "mse")
                    if study is not None and constraint in study["mse"] else None)
            if diff is not None:
                n, errors = len(study["seeds"]), study["mse"]
                checks.append((f"stefan/{model}: {constraint} MSE lower than unconstrained beyond seed noise ({n} seeds)",
                               paired_verdict(diff, "ProbConserv") == "ProbConserv lower",
                               f"{constraint} − none per seed {_paired_text(diff, 'ProbConserv')}; means "
                               f"{_fmt(study['mse_mean'][constraint])} vs {_fmt(study['mse_mean']['none'])}; ahead on "
                               f"{seeds_ahead(errors, constraint)}/{n} seeds (project seed: {_fmt(errors[constraint][0])} "
                               f"vs {_fmt(errors['none'][0])})"))
            elif base and ours:
                spread = (f"; the plain black box's MSE is {_fmt(study['mse_mean']['none'])} ± "
                          f"{_fmt(study['mse_spread']['none'])} over the {len(study['seeds'])} seeds of its study"
                          if study is not None and "none" in study["mse_mean"] else "")
                checks.append((f"stefan/{model}: {constraint} MSE < unconstrained MSE", ours["mse"] < base["mse"],
                               f"{_fmt(ours['mse'])} vs {_fmt(base['mse'])} (one training each, project seed{spread})"))
            if base and ours and "shock_abs_error" in ours and "shock_abs_error" in base:
                a, b = ours["shock_abs_error"], base["shock_abs_error"]
                checks.append((f"stefan/{model}: {constraint} shock position (u = p*/2) closer to the true front", a < b,
                               f"{_fmt(a)} vs {_fmt(b)} (the project seed's networks)"))
    bo = params.matrix.boon
    for case in bo.cases:
        for model in bo.models:
            plain, boon = metrics.get((case, model, "none")), metrics.get((case, model, "boon"))
            if boon is not None and "boundary_max_abs" in boon:
                checks.append((f"{case}/{model}: BOON boundary error at round-off (≤ {ROUND_OFF:g})",
                               boon["boundary_max_abs"] <= ROUND_OFF, _fmt(boon["boundary_max_abs"])))
            pair = bool(plain and boon and "rel_l2" in plain and "rel_l2" in boon)
            study = studies.get((case, model))
            diff = paired_difference(study) if study is not None and len(study["seeds"]) > 1 else None
            if diff is not None:
                mean, spread, n = study["rel_l2_mean"], study["rel_l2_spread"], len(study["seeds"])
                first = study["rel_l2"]
                checks.append((f"{case}/{model}: BOON relative L2 not above FNO's beyond seed noise ({n} seeds)",
                               paired_verdict(diff) in ("BOON lower", "within seed noise"),
                               f"BOON − FNO per seed {_paired_text(diff)}; means {_fmt(mean['boon'])} ± "
                               f"{_fmt(spread['boon'])} vs {_fmt(mean['none'])} ± {_fmt(spread['none'])}; BOON "
                               f"ahead on {study['boon_ahead']}/{n} seeds (project seed: {_fmt(first['boon'][0])} "
                               f"vs {_fmt(first['none'][0])})"))
            elif pair:
                checks.append((f"{case}/{model}: BOON relative L2 ≤ FNO's", boon["rel_l2"] <= plain["rel_l2"],
                               f"{_fmt(boon['rel_l2'])} vs {_fmt(plain['rel_l2'])}"))
            if params.profile == PAPER_PROFILE and pair:
                if diff is not None:
                    e_plain, e_boon = study["rel_l2_mean"]["none"], study["rel_l2_mean"]["boon"]
                    source = f"means over {len(study['seeds'])} seeds"
                else:
                    e_plain, e_boon, source = plain["rel_l2"], boon["rel_l2"], "project seed"
                factor = l2_factor(e_plain, e_boon)
                checks.append((f"{case}/{model}: BOON relative L2 ≥ {PAPER_L2_FACTOR:g}× lower than FNO's "
                               "(the article's 2–20×)", factor >= PAPER_L2_FACTOR,
                               f"FNO ÷ BOON = {factor:.2f} ({_fmt(e_plain)} / {_fmt(e_boon)}, {source})"))
    return checks


#: The version table's entry for a case × model evaluated before :data:`physml.stages.MADE_FROM` was kept.
NOT_RECORDED = "not recorded"


def versions(params: ParamsModel, root: Path, metrics: Mapping[tuple[str, str, str], Any]) -> list[list[str]]:
    """(kind, name, version) rows for what made the report's ``metrics``, as each case × model's evaluation
    recorded it (:func:`physml.stages.made_from`; data and networks need not be on disk): the fingerprint of
    each dataset a metrics file was computed on and the sha256 of each checkpoint of those case × model pairs,
    each to 12 hex digits (data and networks of cases the report does not show are left out); a pair with no
    record gets one row, :data:`NOT_RECORDED`, and its case's data row says so beside the fingerprints the
    other models recorded."""
    lay = Layout(Path(root), params.profile)
    pairs = dict.fromkeys((case, model) for case, model, _ in metrics)
    records = {pair: read_made_from(*pair, lay) or {} for pair in pairs}
    rows: list[list[str]] = []
    for case in (c for c in params.cases if any(c == case for case, _ in pairs)):
        found = list(dict.fromkeys(r["data"][:12] for (c, _), r in records.items() if c == case and "data" in r))
        unrecorded = [m for (c, m), r in records.items() if c == case and "data" not in r]
        if found and unrecorded:
            found.append(f"{NOT_RECORDED} for {', '.join(unrecorded)}")
        rows.append(["data", case, ", ".join(found) or NOT_RECORDED])
    for (case, model), record in records.items():
        networks = record.get("networks") or {}
        rows += [["model", f"{case}/{model}/{Path(name).stem}", digest[:12]] for name, digest in networks.items()]
        if not networks:
            rows.append(["model", f"{case}/{model}", NOT_RECORDED])
    return rows


def write_report(params: ParamsModel, root: Path) -> Path:
    """Write ``reports/<profile>/index.md`` with tables, figures, quality checks and versions; returns it.

    The folder is built in a temporary sibling and swapped in whole, so a failed report leaves the
    previous one intact.
    """
    from physml.experiments.probconserv import N_POSTERIOR_SAMPLES, POST_HOC  # torch: only where a report is written
    from physml.models.anp import SOFTC_POINTS

    root = Path(root)
    lay = Layout(root, params.profile)
    metrics = collect_metrics(params, root)
    final = lay.reports()
    final.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(final) as tmp:
        fig_dir = tmp / "figures"
        fig_dir.mkdir()
        figure_lines: list[str] = []
        for case, model in dict.fromkeys((c, m) for c, m, _ in params.experiments()):
            src = lay.metrics(case, model) / "figures"
            for png in sorted(src.glob("*.png")) if src.is_dir() else []:
                name = f"{case}-{model}-{png.name}"
                shutil.copy2(png, fig_dir / name)
                figure_lines.append(f"### {case} · {model} · {png.stem.replace('_', ' ')}\n\n![{png.stem}](figures/{name})\n")
        studies = collect_seed_studies(params, root, "boon")
        pc_studies = collect_seed_studies(params, root, "probconserv")
        checks = quality_checks(params, metrics, studies, pc_studies)
        if studies:
            figure_lines.insert(0, _seed_study_figure(params, studies, fig_dir / "seed_study.png", "boon"))
        if pc_studies:
            figure_lines.insert(0, _seed_study_figure(params, pc_studies, fig_dir / "seed_study_probconserv.png",
                                                      "probconserv"))
        passed = sum(ok for _, ok, _ in checks)
        missing = not_run(params, metrics)
        truth_line, shocks = truth_conservation_line(params, metrics), shock_table(params, metrics)
        per_value = per_value_table(params, metrics)
        coverage_per_value = per_value_table(params, metrics, "coverage_90_above_bound")
        parts = [
            f"# physml results — profile `{params.profile}`",
            f"Generated by `physml report` from {len(metrics)} metrics files (seed {params.seed}; no clock time, so "
            f"the same metrics give the same bytes). Do not edit: rerun the pipeline.",
            *([f"**Not run in this profile** (no metrics, so no rows and no bars): {', '.join(missing)}."]
              if missing else []),
            "## ProbConserv (conservation as an exact Gaussian update)",
            "MSE of the posterior mean at the test targets (the regular `test_grid` of params.yaml: "
            f"{_grid_text(params)}); conservation error = mean over time slices of "
            "|∫ mean dx − true mass|; log-likelihood per target (higher is better) and CRPS, the continuous ranked "
            "probability score of N(μ, σ²) per target (lower is better; in units of u, linear in a target's error "
            "where the log-likelihood is quadratic over σ², so a few targets far outside a tiny σ, at a front, can "
            "carry the log-likelihood's mean but not the CRPS); 90 % interval coverage, pooled over every target, and on the cases whose "
            "physics keeps u ≥ 0 also over the targets where the exact u > 0 alone (`coverage_90_above_bound`: "
            "where u is 0, ahead of a front, the decoder's σ floor covers it almost always, so on a case with "
            "such a region the pooled coverage can read higher than where u varies). `probconserv` is the "
            "exact update applied after training to the plain black box, on its predictive mean and covariance; "
            "`probconserv_mixture` updates each of the plain black box's latent draws (ANP) or members "
            "(ensemble), then mixes them, which is what the paper's ProbConserv-ANP evaluates; "
            "`probconserv_nonnegative` does the same with each draw or member also kept ≥ 0 where the physics keeps "
            "u ≥ 0 (pme, stefan, advection, burgers: its most probable u on {G u = b, u ≥ 0}, the points held at 0 "
            "keeping the draw's variance; on heat, whose u changes sign, it is `probconserv_mixture`), and "
            "`bound_violation` "
            "is the most negative mean's distance below 0 there; "
            "`probconserv_trained` is a twin trained through the constrained likelihood (the network "
            "the reference trains and then replaces by the plain ANP at evaluation), each latent draw or member "
            "updated, then mixed; `softc` penalises the squared "
            f"error of the trapezoid mass of the network's mean on a uniform grid of {SOFTC_POINTS} positions per "
            "training time "
            "(the reference's SoftC penalises a PDE residual instead; "
            "`physml/models/anp.py`, `physml/experiments/probconserv.py`).",
            probconserv_table(params, metrics),
            *([truth_line] if truth_line else []),
            *(["MSE per test value: where a case's test set is drawn at listed parameter values, the MSE over the "
               "test functions of each value (the MSE above pools them; a value outside the training range asks the "
               "black box to extrapolate).", per_value] if per_value else []),
            *(["90 % coverage per test value, over the test functions of each value and their targets where the "
               "exact u > 0 (`coverage_90_above_bound` above pools the values): about 0.9 is honest, well below it "
               "an interval too narrow for the error; a value outside the training range shows whether the black "
               "box's σ widens where it extrapolates.", coverage_per_value] if coverage_per_value else []),
            *([f"### Seed study of the black boxes ({len(params.study_seeds('probconserv'))} seeds: "
               f"{', '.join(map(str, params.study_seeds('probconserv')))})",
               "The tables above come from one training per black box, with the project seed. Each black box was also "
               "trained with every seed of `matrix.probconserv.seeds` (same data, budget and settings; each seed "
               "also draws its own latent samples), and the constraints made from the plain network alone "
               f"({', '.join(c for c in params.matrix.probconserv.constraints if c in POST_HOC)}; "
               "probconserv_nonnegative only where u ≥ 0: on heat it is probconserv_mixture) applied to it; "
               f"{' and '.join(c for c in params.matrix.probconserv.constraints if c not in POST_HOC)} are "
               "networks of their own, trained with the project seed only. MSE mean ± sample standard deviation "
               "over the seeds, over all test functions and over those of each listed test value; none ÷ "
               "probconserv per seed (geometric mean and range); on how many seeds probconserv's MSE is at most the "
               "plain black box's; and the per-seed difference probconserv − none with its standard error ("
               f"{_noise_text(params.study_seeds('probconserv'))}). Stefan's MSE "
               "bars of the post hoc constraints are decided on each one's per-seed difference to none (the table "
               "shows probconserv's); the trained twin's bar compares the project seed's two trainings.",
               probconserv_seed_table(params, pc_studies)] if pc_studies else []),
            *(["### Stefan: shock-position posterior",
               "Each test function's posterior of the front at its last target time, from "
               f"{N_POSTERIOR_SAMPLES} draws of u there "
               "(`physml/experiments/probconserv.py`): bias = mean over functions of (posterior mean − exact x*), "
               "std = mean posterior standard deviation, x* in 90 % = fraction of functions whose exact front lies "
               "between the posterior's 5 % and 95 % quantiles (about 0.9 for a well-centred, honest posterior). "
               "The front of a sampled profile is read where u first drops to p*/2 (the middle of the exact "
               "jump) and, as the reference reads it, to 0; a smeared profile puts the two apart, and a posterior "
               "can be centred by one reading and not by the other.", shocks]
              if shocks else []),
            "## BOON (exact boundary conditions in the FNO kernels)",
            "Relative L2 over the whole test field; boundary error = max |prediction − prescribed boundary data| "
            "(Dirichlet values, Neumann stencil derivative). `overwrite` is the control: the plain FNO with only "
            "its output's boundary entries set to meet the condition, as exact on the boundary as BOON; what "
            "BOON gains over it is what correcting the kernels adds beyond the boundary entries themselves.",
            boon_table(params, metrics),
            *([boundary_line] if (boundary_line := truth_boundary_line(params, root)) else []),
            *([f"### Seed study ({len(params.study_seeds('boon'))} seeds: {', '.join(map(str, params.study_seeds('boon')))})",
               "The table above is one training per network, with the project seed. The seed alone (initial "
               "weights, data order) moves the relative L2 by several per cent, so each case was also trained "
               "with every seed of `matrix.boon.seeds` (same data, budget and settings); mean ± sample "
               "standard deviation over the seeds, on how many seeds BOON's L2 is at most the FNO's, and the "
               "per-seed differences BOON − FNO and BOON − overwrite (the control), each with its standard "
               f"error ({_noise_text(params.study_seeds('boon'))}). The L2 quality bar holds "
               "unless BOON's difference is above zero by that many standard errors or more.",
               seed_study_table(params, studies),
               *([summary] if (summary := posthoc_summary(studies)) else [])] if studies else []),
            f"## Quality bars ({passed}/{len(checks)} hold)",
            _table([[name, "yes" if ok else "**no**", detail] for name, ok, detail in checks], ["check", "holds", "value"]),
            "## Figures",
            *figure_lines,
            "## Versions",
            "What each case × model's metrics were computed from, as its evaluation recorded it (`made_from.json` "
            "beside the metrics): datasets by the fingerprint of their config, seed and sources; models by the "
            "sha256 of the checkpoint.",
            _table(versions(params, root, metrics), ["kind", "name", "version"]),
        ]
        (tmp / "index.md").write_text("\n\n".join(parts) + "\n")
        backup = final.with_name(f".{final.name}.old")
        shutil.rmtree(backup, ignore_errors=True)
        if final.exists():
            os.replace(final, backup)
        os.replace(tmp, final)
        shutil.rmtree(backup, ignore_errors=True)
    return final / "index.md"
