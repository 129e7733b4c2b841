"""The report's BOON L2 bar: one training per network, or the means of the seed study when there is one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from physml.config import load_params
from physml.experiments.seeds import seed_summary
from physml.report import (NOT_RECORDED, collect_seed_studies, l2_factor, noise_threshold, paired_difference,
                           paired_verdict, posthoc_summary, quality_checks, seed_study_table, versions, write_report)
from physml.stages import Layout

ROOT = Path(__file__).resolve().parents[1]


def _study(seeds: list[int], none: list[float], boon: list[float]) -> dict:
    return seed_summary("heat_neumann", "fno", seeds, "rel_l2", {"none": none, "boon": boon}, ahead="boon")


def _l2_bar(checks: list[tuple[str, bool, str]], case: str) -> tuple[str, bool, str]:
    (bar,) = [c for c in checks if c[0].startswith(f"{case}/fno: BOON relative L2")]
    return bar


def test_the_l2_bar_uses_the_paired_seed_differences_when_a_study_exists() -> None:
    params = load_params(ROOT / "params.yaml")
    seeds = params.study_seeds("boon")
    n = len(seeds)
    assert n > 2
    metrics = {("heat_neumann", "fno", "none"): {"rel_l2": 0.0168, "boundary_max_abs": 6.0},
               ("heat_neumann", "fno", "boon"): {"rel_l2": 0.0176, "boundary_max_abs": 5e-14}}
    name, ok, _ = _l2_bar(quality_checks(params, metrics), "heat_neumann")
    assert not ok and "seeds" not in name  # the project seed's pair alone: BOON trails
    none = [0.0168] + [0.02 + 0.001 * i for i in range(n - 1)]
    boon = [0.0176] + [0.017 + 0.001 * i for i in range(n - 1)]
    study = _study(seeds, none, boon)
    name, ok, detail = _l2_bar(quality_checks(params, metrics, {("heat_neumann", "fno"): study}), "heat_neumann")
    assert ok and name.endswith(f"beyond seed noise ({n} seeds)")
    assert "(BOON lower)" in detail
    assert f"BOON ahead on {n - 1}/{n} seeds" in detail and "project seed: 0.0176 vs 0.0168" in detail
    # a tie: BOON's mean is a little higher, but by fewer standard errors of the paired differences than t
    tie = _study([1, 2, 3, 4, 5], [0.020, 0.022, 0.018, 0.021, 0.019], [0.021, 0.020, 0.019, 0.023, 0.018])
    mean, se, n_tie = paired_difference(tie)
    assert 0 < mean < noise_threshold(n_tie) * se and tie["rel_l2_mean"]["boon"] > tie["rel_l2_mean"]["none"]
    name, ok, detail = _l2_bar(quality_checks(params, metrics, {("heat_neumann", "fno"): tie}), "heat_neumann")
    assert ok and "(within seed noise)" in detail and name.endswith("(5 seeds)")
    worse = _study(seeds, [0.01 + 0.001 * i for i in range(n)], [0.02 + 0.0011 * i for i in range(n)])
    name, ok, detail = _l2_bar(quality_checks(params, metrics, {("heat_neumann", "fno"): worse}), "heat_neumann")
    assert not ok and "(BOON higher)" in detail
    table = seed_study_table(params, {("heat_neumann", "fno"): study})
    assert f"| heat_neumann | fno | {n} |" in table and f"| {n - 1}/{n} |" in table


def test_paired_difference_is_the_mean_and_standard_error_of_the_per_seed_differences() -> None:
    """d = boon - none per seed; mean ± sd/√n; the report calls |mean| < t_{0.975, n−1} s.e. seed noise."""
    params = load_params(ROOT / "params.yaml")
    study = _study([1, 2, 3, 4], none=[0.020, 0.030, 0.025, 0.021], boon=[0.019, 0.032, 0.022, 0.021])
    mean, se, n = paired_difference(study)
    assert n == 4
    # d = (-0.001, 0.002, -0.003, 0): mean -0.0005, squared deviations sum to 13e-6, s.e. = sqrt(13e-6 / 3) / 2
    assert abs(mean + 0.0005) < 1e-15 and abs(se - (13e-6 / 3) ** 0.5 / 2) < 1e-15
    assert "within seed noise" in seed_study_table(params, {("heat_neumann", "fno"): study})
    clear = _study([1, 2, 3], none=[0.02, 0.03, 0.025], boon=[0.01, 0.012, 0.011])
    assert "BOON lower" in seed_study_table(params, {("heat_neumann", "fno"): clear})
    assert paired_difference(_study([1], [0.02], [0.01])) is None
    same = _study([1, 2, 3], none=[0.02, 0.03, 0.025], boon=[0.02, 0.03, 0.025])  # identical networks
    assert paired_difference(same) == (0.0, 0.0, 3)
    assert "(within seed noise)" in seed_study_table(params, {("heat_neumann", "fno"): same})


def test_seed_noise_is_a_two_sided_five_percent_t_test_of_the_paired_differences() -> None:
    """Per-seed differences of true mean 0 (normal, any spread) are called lower on 2.5 % of studies and higher on
    2.5 %, for 5 seeds as for 8: the threshold is Student's t_{0.975, n−1} (2.776 and 2.365), not a fixed 2 s.e.,
    which with 5 seeds calls a true 0 lower on P(T₄ > 2) = 5.8 % of studies."""
    assert abs(noise_threshold(5) - 2.7764451) < 1e-6 and abs(noise_threshold(8) - 2.3646243) < 1e-6
    with pytest.raises(ValueError, match="at least 2 seeds"):
        noise_threshold(1)
    rng = np.random.default_rng(0)
    for n in (5, 8):
        d = rng.normal(0.0, 0.003, size=(40_000, n))
        verdicts = [paired_verdict((float(row.mean()), float(row.std(ddof=1) / n**0.5), n)) for row in d]
        lower, higher = verdicts.count("BOON lower") / len(d), verdicts.count("BOON higher") / len(d)
        # binomial s.e. of a 2.5 % rate over 40 000 studies: 0.078 %; 4 of them either way
        assert abs(lower - 0.025) < 0.0032 and abs(higher - 0.025) < 0.0032, (n, lower, higher)
    # a true difference of two spreads is found as often as the t-test's power says: the noncentral t's tail,
    # P(T₄(δ = 2√5) > t) = 0.909 (scipy.stats.nct.sf(2.776, 4, 4.472)); binomial s.e. over 4000 studies 0.45 %
    shifted = rng.normal(-0.006, 0.003, size=(4000, 5))
    found = [paired_verdict((float(r.mean()), float(r.std(ddof=1) / 5**0.5), 5)) == "BOON lower" for r in shifted]
    assert abs(np.mean(found) - 0.909) < 0.02


def test_the_seed_table_compares_boon_with_the_overwrite_control_per_seed() -> None:
    """d = boon - overwrite per seed, its own column beside BOON − FNO; absent when no seed has it."""
    params = load_params(ROOT / "params.yaml")
    assert "overwrite" in params.matrix.boon.constraints
    study = _study([1, 2, 3], none=[0.03, 0.04, 0.035], boon=[0.010, 0.012, 0.011])
    study["rel_l2"]["overwrite"] = [0.009, 0.010, 0.0095]  # the control ahead of BOON on every seed
    mean, se, n = paired_difference(study, "overwrite")
    assert abs(mean - 0.0015) < 1e-15 and mean > noise_threshold(n) * se
    table = seed_study_table(params, {("heat_neumann", "fno"): study})
    header, _, row = table.splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(columns, (c.strip() for c in row.strip("|").split("|")), strict=True))
    assert "(BOON lower)" in cells["BOON − FNO per seed (mean ± s.e.)"]
    assert "(BOON higher)" in cells["BOON − overwrite per seed (mean ± s.e.)"]
    del study["rel_l2"]["overwrite"]
    assert paired_difference(study, "overwrite") is None


def test_the_posthoc_summary_compares_posthoc_boon_with_the_overwrite_control_per_seed() -> None:
    """d = boon_posthoc - overwrite per seed on each case; the advice to prefer the control appears only when the
    seeds put it lower on every case, and a case without both is left out."""
    worse = _study([1, 2, 3], none=[0.03, 0.04, 0.035], boon=[0.01, 0.012, 0.011])
    worse["rel_l2"] |= {"overwrite": [0.028, 0.037, 0.033], "boon_posthoc": [0.05, 0.06, 0.056]}
    tie = _study([1, 2, 3], none=[0.03, 0.04, 0.035], boon=[0.01, 0.012, 0.011])
    tie["rel_l2"] |= {"overwrite": [0.028, 0.037, 0.033], "boon_posthoc": [0.029, 0.036, 0.034]}
    bare = _study([1, 2, 3], none=[0.03, 0.04, 0.035], boon=[0.01, 0.012, 0.011])
    text = posthoc_summary({("stokes2", "fno"): worse, ("wave", "fno"): bare})
    assert "stokes2/fno 0.0227 ± 3.33e-04 (post hoc higher)" in text  # d = (0.022, 0.023, 0.023)
    assert "wave" not in text and "The control is lower on every case" in text
    text = posthoc_summary({("stokes2", "fno"): worse, ("wave", "fno"): tie})
    assert "wave/fno" in text and "(within seed noise)" in text and "The control is lower" not in text
    assert posthoc_summary({("wave", "fno"): bare}) is None
    better = _study([1, 2, 3], none=[0.03, 0.04, 0.035], boon=[0.01, 0.012, 0.011])
    better["rel_l2"] |= {"overwrite": [0.028, 0.037, 0.033], "boon_posthoc": [0.018, 0.026, 0.022]}
    text = posthoc_summary({("stokes2", "fno"): better})
    assert "(post hoc lower)" in text and "Post hoc BOON is lower than the control on every case." in text
    assert "The control is lower" not in text


def test_a_study_of_other_seeds_is_stale_and_left_out_of_the_report(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml")
    lay = Layout(tmp_path, params.profile)
    current = _study(params.study_seeds("boon"), [0.02] * len(params.study_seeds("boon")), [0.01] * len(params.study_seeds("boon")))
    stale = _study([params.seed, params.seed + 7], [0.02, 0.03], [0.01, 0.01])
    for case, study in (("heat_neumann", current), ("wave", stale)):
        path = lay.seed_study_file(case, "fno")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(study))
    assert list(collect_seed_studies(params, tmp_path, "boon")) == [("heat_neumann", "fno")]
    index = write_report(params, tmp_path)
    text = index.read_text()
    assert "![seed study](figures/seed_study.png)" in text
    assert (index.parent / "figures" / "seed_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "### Seed study" in text and "| heat_neumann | fno |" in text.split("### Seed study")[1]
    assert "| wave | fno |" not in text.split("### Seed study")[1].split("## Quality bars")[0]


def test_the_paper_profile_holds_boon_to_the_articles_factor() -> None:
    """Paper profile: FNO ÷ BOON relative L2 ≥ PAPER_L2_FACTOR (the article's 2–20×), on the seed means when a
    study exists; the quick profile has no such bar."""
    quick = load_params(ROOT / "params.yaml").with_profile("quick")
    paper = quick.with_profile("paper")

    def factor_bar(params, boon: float, studies=None) -> list[tuple[str, bool, str]]:
        metrics = {("burgers_dirichlet", "fno", "none"): {"rel_l2": 0.01, "boundary_max_abs": 0.2},
                   ("burgers_dirichlet", "fno", "boon"): {"rel_l2": boon, "boundary_max_abs": 0.0}}
        return [c for c in quality_checks(params, metrics, studies) if "the article's 2–20×" in c[0]]

    assert factor_bar(quick, 0.001) == []
    (name, ok, detail), = factor_bar(paper, 0.004)
    assert name.startswith("burgers_dirichlet/fno: BOON relative L2 ≥ 2× lower") and ok
    assert "FNO ÷ BOON = 2.50" in detail and "project seed" in detail
    (_, ok, detail), = factor_bar(paper, 0.006)
    assert not ok and "FNO ÷ BOON = 1.67" in detail
    seeds = paper.study_seeds("boon")
    study = _study(seeds, [0.01, 0.012, 0.014][:len(seeds)], [0.002, 0.003, 0.004][:len(seeds)])
    (_, ok, detail), = factor_bar(paper, 0.006, {("burgers_dirichlet", "fno"): study})
    assert ok and f"means over {len(seeds)} seeds" in detail  # the seed means decide, not the project seed
    assert l2_factor(0.01, 0.0) == math.inf


def test_a_profile_run_in_part_names_the_cases_it_has_not_run(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml").with_profile("paper")
    lay = Layout(tmp_path, params.profile)
    folder = lay.metrics("burgers_dirichlet", "fno")
    folder.mkdir(parents=True)
    for constraint, l2 in (("none", 0.012), ("overwrite", 0.011), ("boon", 0.003), ("boon_posthoc", 0.05)):
        (folder / f"{constraint}.json").write_text(json.dumps({"rel_l2": l2, "boundary_max_abs": 0.0}))
    # what evaluate records beside the metrics (stages.made_from), not the folders on disk, makes the version table
    (folder / "made_from.json").write_text(json.dumps({"data": "recorded-fingerprint",
                                                       "networks": {"boon.pt": "b" * 64, "plain.pt": "a" * 64}}))
    for case in ("burgers_dirichlet", "stokes2"):  # stokes2: generated and trained, never evaluated
        lay.data(case).mkdir(parents=True)
        (lay.data(case) / "dataset.json").write_text(json.dumps({"fingerprint": f"{case}-fingerprint"}))
        lay.models(case, "fno").mkdir(parents=True)
        (lay.models(case, "fno") / "plain.pt").write_bytes(case.encode())
    text = write_report(params, tmp_path).read_text()
    versions = text.split("## Versions")[1]
    assert "| data | burgers_dirichlet | recorded-fin |" in versions  # not the fingerprint on disk
    assert "| model | burgers_dirichlet/fno/boon | bbbbbbbbbbbb |\n| model | burgers_dirichlet/fno/plain | aaaaaaaaaaaa |" in versions
    assert "stokes2" not in versions  # the version table names what made the numbers shown, nothing else
    (line,) = [ln for ln in text.splitlines() if ln.startswith("**Not run in this profile**")]
    assert "burgers_dirichlet" not in line
    assert all(case in line for case in ("stefan", "heat_neumann", "cavity"))
    (row,) = [ln for ln in text.splitlines() if ln.startswith("| burgers_dirichlet | fno |")]
    assert row.endswith("| 4.00 |")  # FNO ÷ BOON = 0.012 / 0.003
    assert not any(ln.startswith("| heat_neumann | fno | –") for ln in text.splitlines())
    probconserv = text.split("## ProbConserv")[1].split("## BOON")[0]
    assert "_No metrics in this profile._" in probconserv and "| case |" not in probconserv
    # no clock time in it: the same metrics give the same bytes (the report stage's output in dvc.lock)
    assert write_report(params, tmp_path).read_text() == text and " UTC" not in text


def test_a_lost_metrics_file_or_key_fails_a_bar_instead_of_dropping_its_bars() -> None:
    """Bars are built from the files that exist; without the completeness bar a deleted probconserv.json (or a
    boon.json without its boundary error) took its bars away and the header still read N/N hold."""
    params = load_params(ROOT / "params.yaml").with_profile("quick")
    metrics = {}
    for case, model, constraint in params.experiments():
        family = "operator" if case in params.matrix.boon.cases else "probconserv"
        metrics[(case, model, constraint)] = ({"rel_l2": 0.01, "boundary_max_abs": 0.0} if family == "operator"
                                              else {"mse": 1e-3, "conservation_error": 0.0})
    (bar,) = [c for c in quality_checks(params, metrics) if c[0].startswith("every constraint's metrics file")]
    assert bar[1] and bar[2] == f"{len(metrics)} of {len(metrics)}"
    del metrics[("stefan", "anp", "probconserv")]
    del metrics[("cavity", "fno", "boon")]["boundary_max_abs"]
    (bar,) = [c for c in quality_checks(params, metrics) if c[0].startswith("every constraint's metrics file")]
    assert not bar[1]
    assert bar[2] == "missing: stefan/anp/probconserv.json; cavity/fno/boon.json (boundary_max_abs)"
    assert quality_checks(params, {}) == []  # nothing run: no bars (the report names the cases not run)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the helper's spread of an inf
def test_a_diverged_seed_fails_the_l2_bar_instead_of_crashing_the_report() -> None:
    params = load_params(ROOT / "params.yaml").with_profile("quick")
    seeds = params.study_seeds("boon")
    study = _study(seeds, [0.02] * len(seeds), [0.01] * (len(seeds) - 1) + [math.inf])
    mean, se, n = paired_difference(study)
    assert math.isnan(mean) and math.isnan(se) and n == len(seeds)  # no mean, no spread
    metrics = {("heat_neumann", "fno", "none"): {"rel_l2": 0.02, "boundary_max_abs": 0.1},
               ("heat_neumann", "fno", "boon"): {"rel_l2": 0.01, "boundary_max_abs": 0.0}}
    (bar,) = [c for c in quality_checks(params, metrics, {("heat_neumann", "fno"): study})
              if "beyond seed noise" in c[0]]
    assert not bar[1] and "non-finite" in bar[2]


def test_stefan_bars_hold_both_probconserv_variants_to_the_black_box() -> None:
    """The Stefan bars (MSE and shock position below the black box's) and the exact-conservation bar are each
    decided for the post hoc update and for the twin trained through the constrained likelihood, apart."""
    params = load_params(ROOT / "params.yaml").with_profile("quick")
    metrics = {("stefan", "anp", "none"): {"mse": 0.01, "shock_abs_error": 0.05, "conservation_error": 0.02},
               ("stefan", "anp", "probconserv"): {"mse": 0.005, "shock_abs_error": 0.02, "conservation_error": 0.0},
               ("stefan", "anp", "probconserv_trained"): {"mse": 0.02, "shock_abs_error": 0.01,
                                                          "conservation_error": 1e-9}}
    bars = {name: ok for name, ok, _ in quality_checks(params, metrics)}
    assert bars["stefan/anp: probconserv MSE < unconstrained MSE"]
    assert not bars["stefan/anp: probconserv_trained MSE < unconstrained MSE"]
    assert bars["stefan/anp: probconserv shock position (u = p*/2) closer to the true front"]
    assert bars["stefan/anp: probconserv_trained shock position (u = p*/2) closer to the true front"]
    assert bars["stefan/anp: probconserv conservation error ≤ 1e-10"]
    assert not bars["stefan/anp: probconserv_trained conservation error ≤ 1e-10"]
    # the trained twin has no seed study: its bar says it compares one training of each, and gives the plain
    # black box's spread over the seeds when the post hoc constraints' study exists
    twin = "stefan/anp: probconserv_trained MSE < unconstrained MSE"
    (detail,) = [d for name, _, d in quality_checks(params, metrics) if name == twin]
    assert detail == "0.02 vs 0.01 (one training each, project seed)"
    study = _pc_study([1, 2, 3], none=[0.01, 0.012, 0.014], probconserv=[0.005, 0.006, 0.007])
    (detail,) = [d for name, _, d in quality_checks(params, metrics, probconserv_studies={("stefan", "anp"): study})
                 if name == twin]
    assert detail.endswith("(one training each, project seed; the plain black box's MSE is 0.012 ± 0.002 over "
                           "the 3 seeds of its study)")


def test_boon_boundary_bar_asks_for_float64_round_off() -> None:
    """BOON's predictions are float64, so its boundary error must be at float64's round-off: an error a float32
    prediction would pass with (1e-6) fails the bar."""
    params = load_params(ROOT / "params.yaml").with_profile("quick")

    def bar(error: float) -> bool:
        metrics = {("stokes2", "fno", "boon"): {"rel_l2": 0.1, "boundary_max_abs": error}}
        (ok,) = [ok for name, ok, _ in quality_checks(params, metrics) if name.startswith("stokes2/fno: BOON boundary")]
        return ok

    assert bar(0.0) and bar(6.5e-14) and not bar(1e-6) and not bar(float("nan"))


def test_the_nonnegative_bars_stand_only_where_the_physics_bounds_u() -> None:
    """probconserv_nonnegative gets a conservation bar and a mean ≥ 0 bar where its file holds a
    bound_violation (pme, stefan, advection, burgers), and a draws ≥ 0 bar where it holds draw_bound_violation
    (stefan, whose posterior draws are kept); on heat, whose u changes sign, its file is
    probconserv_mixture's under another name and adds no bar (one bar per number, not two)."""
    params = load_params(ROOT / "params.yaml").with_profile("quick")
    exact = {"mse": 1e-3, "conservation_error": 1e-16}
    metrics = {("heat", "anp", "probconserv_mixture"): exact, ("heat", "anp", "probconserv_nonnegative"): exact,
               ("pme", "anp", "probconserv_nonnegative"): {**exact, "bound_violation": 0.0},
               ("burgers", "anp", "probconserv_nonnegative"): {**exact, "bound_violation": 0.3},
               ("stefan", "anp", "probconserv_nonnegative"): {**exact, "bound_violation": 0.0,
                                                              "draw_bound_violation": 0.0},
               ("stefan", "ensemble", "probconserv_nonnegative"): {**exact, "bound_violation": 0.0,
                                                                   "draw_bound_violation": 0.2}}
    bars = {name: ok for name, ok, _ in quality_checks(params, metrics)}
    assert "heat/anp: probconserv_mixture conservation error ≤ 1e-10" in bars
    assert not [name for name in bars if name.startswith("heat/anp: probconserv_nonnegative")]
    assert bars["pme/anp: probconserv_nonnegative conservation error ≤ 1e-10"]
    assert bars["pme/anp: probconserv_nonnegative mean ≥ 0 (to 1e-12)"]
    assert not bars["burgers/anp: probconserv_nonnegative mean ≥ 0 (to 1e-12)"]
    assert bars["stefan/anp: probconserv_nonnegative posterior draws ≥ 0 (to 1e-12)"]
    assert not bars["stefan/ensemble: probconserv_nonnegative posterior draws ≥ 0 (to 1e-12)"]
    assert not [name for name in bars if name.startswith("pme/anp: probconserv_nonnegative posterior draws")]


def test_the_shock_table_reads_both_levels_and_the_truth_line_names_each_case_once() -> None:
    """The Stefan shock table has one row per model × constraint with metrics, its columns the bias, std and
    coverage of the front read at p*/2 and at 0, in that order; the truth line quotes each case's exact
    conservation error once (it is the same in every constraint's file) and is empty without it."""
    from physml.report import shock_table, truth_conservation_line

    params = load_params(ROOT / "params.yaml")
    shock = {"shock_bias": -0.049, "shock_std": 0.005, "shock_coverage_90": 0.5,
             "shock_bias_level0": -0.006, "shock_std_level0": 0.028, "shock_coverage_90_level0": 0.875}
    metrics = {("stefan", "anp", "probconserv"): {**shock, "conservation_error_truth": 1.2e-3},
               ("stefan", "anp", "none"): {**shock, "conservation_error_truth": 1.2e-3},
               ("heat", "anp", "none"): {"conservation_error_truth": 7e-17}}
    lines = shock_table(params, metrics).splitlines()
    assert lines[0] == ("| model | constraint | bias (u = p*/2) | std (u = p*/2) | x* in 90 % (u = p*/2) | "
                        "bias (u = 0) | std (u = 0) | x* in 90 % (u = 0) |")
    assert lines[2:] == ["| anp | none | -0.049 | 0.005 | 0.5 | -0.006 | 0.028 | 0.875 |",
                         "| anp | probconserv | -0.049 | 0.005 | 0.5 | -0.006 | 0.028 | 0.875 |"]
    line = truth_conservation_line(params, metrics)
    assert "heat 7.00e-17, stefan 0.0012." in line and line.count("stefan") == 1
    assert shock_table(params, {}) == "" and truth_conservation_line(params, {}) == ""


def test_the_truth_boundary_line_quotes_each_boon_cases_own_stencil_error(tmp_path: Path) -> None:
    """BOON's boundary error reads against the exact field's own on the same measure (``per_time.json``): a
    Neumann case's stencil misses the true field's derivative by its truncation error, which the report names
    so that round-off there is not read as the true condition met; empty without any record."""
    from physml.report import truth_boundary_line

    params = load_params(ROOT / "params.yaml")
    lay = Layout(tmp_path, params.profile)
    assert truth_boundary_line(params, tmp_path) == ""
    for case, value in (("heat_neumann", 0.0308), ("stokes2", 0.0)):
        lay.metrics(case, "fno").mkdir(parents=True)
        (lay.metrics(case, "fno") / "per_time.json").write_text(json.dumps({"truth_boundary_max_abs": value}))
    line = truth_boundary_line(params, tmp_path)
    assert "(the same measure applied to the true field): heat_neumann 0.0308, stokes2 0." in line


def test_the_per_value_table_splits_the_mse_by_the_listed_test_values() -> None:
    """Cases whose test set is drawn at listed values (pme's m, stefan's p*) get one row per model × value,
    every constraint's MSE over that value's functions and none ÷ probconserv; a value outside the training
    range is marked; cases tested on a range (heat) and a profile without such metrics give no table. Another
    metric per value (the coverage where u > 0) gives the same rows with that metric's columns and no ratio."""
    from physml.report import per_value_table

    params = load_params(ROOT / "params.yaml")
    constraints = params.matrix.probconserv.constraints
    metrics = {("stefan", "anp", c): {"mse_p_star_0.5": 0.014, "mse_p_star_0.6": 0.004} for c in constraints}
    metrics[("stefan", "anp", "probconserv")] = {"mse_p_star_0.5": 0.0126, "mse_p_star_0.6": 0.0013}
    metrics[("heat", "anp", "none")] = {"mse": 0.1}
    lines = per_value_table(params, metrics).splitlines()
    assert lines[0] == ("| case | model | test value | " + " | ".join(f"{c} mse" for c in constraints)
                        + " | none ÷ probconserv |")
    cells = [line.split(" | ") for line in lines[2:]]
    assert [c[2] for c in cells] == ["p_star = 0.5 (outside train [0.55, 0.7])", "p_star = 0.6"]
    assert [c[-1] for c in cells] == ["1.11 |", "3.08 |"]
    assert per_value_table(params, {("heat", "anp", "none"): {"mse": 0.1}}) == ""
    for c in constraints:
        metrics[("stefan", "anp", c)]["coverage_90_above_bound_p_star_0.5"] = 0.66
    lines = per_value_table(params, metrics, "coverage_90_above_bound").splitlines()
    assert lines[0] == ("| case | model | test value | "
                        + " | ".join(f"{c} coverage_90_above_bound" for c in constraints) + " |")
    assert lines[2] == ("| stefan | anp | p_star = 0.5 (outside train [0.55, 0.7]) | "
                        + " | ".join("0.66" for _ in constraints) + " |") and len(lines) == 3


def _pc_study(seeds: list[int], none: list[float], probconserv: list[float],
              per_value: dict[str, dict[str, list[float]]] | None = None) -> dict:
    study = seed_summary("stefan", "anp", seeds, "mse", {"none": none, "probconserv": probconserv},
                         ahead="probconserv")
    if per_value:
        study["mse_per_value"] = per_value
    return study


def test_the_probconserv_seed_study_decides_stefans_mse_bar_and_tabulates_the_ratio_per_seed(tmp_path: Path) -> None:
    """ProbConserv's seed study: the Stefan bar asks for probconserv − none below zero by t_{0.975, n−1} standard errors
    of the per-seed differences; the table gives none ÷ probconserv per seed (mean [min–max]), the ahead count,
    and a row per listed test value, marked when the value lies outside the training range; the report draws
    the MSE per seed."""
    from physml.report import probconserv_seed_table

    params = load_params(ROOT / "params.yaml")
    seeds = params.study_seeds("probconserv")
    assert len(seeds) > 2
    metrics = {("stefan", "anp", "none"): {"mse": 0.009, "conservation_error": 0.02},
               ("stefan", "anp", "probconserv"): {"mse": 0.007, "conservation_error": 1e-17}}

    def bar(studies: dict) -> tuple[str, bool, str]:
        (found,) = [c for c in quality_checks(params, metrics, probconserv_studies=studies)
                    if c[0].startswith("stefan/anp: probconserv MSE lower than unconstrained beyond seed noise")]
        return found

    single = "stefan/anp: probconserv MSE < unconstrained MSE"
    alone = quality_checks(params, metrics)
    assert not [c for c in alone if "beyond seed noise" in c[0]] and [c for c in alone if c[0] == single]
    clear = _pc_study([1, 2, 3], none=[0.009, 0.006, 0.012], probconserv=[0.003, 0.002, 0.004])
    name, ok, detail = bar({("stefan", "anp"): clear})
    assert ok and name.endswith("(3 seeds)") and "(ProbConserv lower)" in detail and "ahead on 3/3 seeds" in detail
    assert "(project seed: 0.003 vs 0.009)" in detail
    # the study's bar replaces the project seed's pair, which a single unlucky training could fail
    assert not [c for c in quality_checks(params, metrics, probconserv_studies={("stefan", "anp"): clear})
                if c[0] == single]
    noisy = _pc_study([1, 2, 3], none=[0.009, 0.006, 0.012], probconserv=[0.008, 0.007, 0.010])
    name, ok, detail = bar({("stefan", "anp"): noisy})
    assert not ok and "(within seed noise)" in detail and "ahead on 2/3 seeds" in detail

    inside, outside = "mse_p_star_0.6", "mse_p_star_0.5"
    study = _pc_study([1, 2, 3], none=[0.009, 0.006, 0.012], probconserv=[0.003, 0.002, 0.004],
                      per_value={inside: {"none": [0.012, 0.008, 0.016], "probconserv": [0.004, 0.002, 0.004]},
                                 outside: {"none": [0.006, 0.004, 0.008], "probconserv": [0.002, 0.002, 0.004]}})
    rows = {row.split("|")[3].strip(): row for row in probconserv_seed_table(params, {("stefan", "anp"): study}).splitlines()[2:]}
    assert set(rows) == {"all", "p_star = 0.6", "p_star = 0.5 (outside train [0.55, 0.7])"}
    assert "| 3.00 [3.00–3.00] | 3/3 |" in rows["all"]
    assert "| 3.63 [3.00–4.00] | 3/3 |" in rows["p_star = 0.6"]  # ratios 3, 4, 4: geometric mean 48^(1/3)
    assert "| 2.29 [2.00–3.00] | 3/3 |" in rows["p_star = 0.5 (outside train [0.55, 0.7])"]  # 3, 2, 2: 12^(1/3)

    lay = Layout(tmp_path, params.profile)
    current = _pc_study(seeds, none=[0.009] * len(seeds), probconserv=[0.003] * len(seeds))
    for model, found in (("anp", current), ("ensemble", _pc_study([params.seed, params.seed + 9], [0.01] * 2, [0.01] * 2))):
        path = lay.seed_study_file("stefan", model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found))
    assert list(collect_seed_studies(params, tmp_path, "probconserv")) == [("stefan", "anp")]  # ensemble's: stale
    assert collect_seed_studies(params, tmp_path, "boon") == {}  # BOON's studies are other files
    index = write_report(params, tmp_path)
    text = index.read_text()
    section = text.split("### Seed study of the black boxes")[1].split("## BOON")[0]
    assert f"({len(seeds)} seeds: {', '.join(map(str, seeds))})" in section and "| stefan | anp | all |" in section
    assert "| stefan | ensemble |" not in section
    t = noise_threshold(len(seeds))
    assert (f"its standard error (a difference under {t:.2f} standard errors, the 97.5 % quantile of Student's t "
            f"with {len(seeds) - 1} degrees of freedom (a two-sided 5 % test), is one the seed alone could make)."
            in " ".join(section.split()))
    assert (index.parent / "figures" / "seed_study_probconserv.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_case_with_one_model_recorded_and_one_not_says_so_in_its_data_row(tmp_path: Path) -> None:
    """The data row of a case lists each fingerprint its models' evaluations recorded, and names a model
    that recorded none: one recorded fingerprint alone would read as the data of every number shown."""
    params = load_params(ROOT / "params.yaml")
    lay = Layout(tmp_path, params.profile)
    lay.metrics("stefan", "anp").mkdir(parents=True)
    (lay.metrics("stefan", "anp") / "made_from.json").write_text(json.dumps({"data": "f" * 64,
                                                                             "networks": {"plain.pt": "a" * 64}}))
    metrics = {("stefan", "anp", "none"): {}, ("stefan", "ensemble", "none"): {}}
    assert versions(params, tmp_path, metrics) == [
        ["data", "stefan", f"ffffffffffff, {NOT_RECORDED} for ensemble"],
        ["model", "stefan/anp/plain", "aaaaaaaaaaaa"],
        ["model", "stefan/ensemble", NOT_RECORDED],
    ]
    (lay.metrics("stefan", "ensemble")).mkdir(parents=True)
    (lay.metrics("stefan", "ensemble") / "made_from.json").write_text(json.dumps({"data": "f" * 64, "networks": {}}))
    assert versions(params, tmp_path, metrics)[0] == ["data", "stefan", "ffffffffffff"]
