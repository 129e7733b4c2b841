"""Shared plotting helpers: flat functions that draw one figure each and save it as a PNG.

Matplotlib runs on the non-interactive Agg backend with LaTeX off (no TeX installation needed); every
figure is written atomically (``physml.atomic.atomic_path``), so a failed plot
leaves no half-written PNG. Figures are ``matplotlib.figure.Figure`` objects made here, never pyplot's: pyplot
keeps one global registry of open figures, which is not safe when a flow draws several stages' figures
from threads at once. Uncertainty bands are mean ± 2σ (≈ 95 % of a Gaussian).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from physml.atomic import atomic_path  # noqa: E402

matplotlib.rcParams.update({"text.usetex": False, "figure.dpi": 110, "savefig.dpi": 110, "font.size": 9})

METHOD_LABELS: dict[str, str] = {
    "none": "black box",
    "softc": "SoftC",
    "hardc": "HardC",
    "probconserv": "ProbConserv",
    "probconserv_mixture": "ProbConserv (per draw)",
    "probconserv_nonnegative": "ProbConserv (per draw, u ≥ 0)",
    "probconserv_trained": "ProbConserv (trained)",
}
METHOD_COLORS: dict[str, str] = {
    "none": "tab:blue",
    "softc": "tab:orange",
    "hardc": "tab:purple",
    "probconserv": "tab:green",
    "probconserv_mixture": "tab:cyan",
    "probconserv_nonnegative": "tab:brown",
    "probconserv_trained": "tab:olive",
}

OPERATOR_LABELS: dict[str, str] = {"none": "FNO", "overwrite": "FNO + overwrite", "boon": "BOON",
                                   "boon_posthoc": "BOON (post hoc)"}
OPERATOR_COLORS: dict[str, str] = {"none": "tab:blue", "overwrite": "tab:gray", "boon": "tab:green",
                                   "boon_posthoc": "tab:orange"}


def _model_tag(model: str) -> str:
    """A model's name in labels: "ANP", "ensemble"."""
    return model.upper() if model == "anp" else model


def method_label(name: str, model: str | None = None) -> str:
    """Legend label of a constraint (``none`` → the model's name, e.g. "ANP"; else "ProbConserv-ANP")."""
    base = METHOD_LABELS.get(name, name)
    if model is None:
        return base
    return _model_tag(model) if name == "none" else f"{base}-{_model_tag(model)}"


def _panel_title(name: str, model: str | None = None) -> str:
    """A panel's title in a row of methods: :func:`method_label` with the model on a second line, so that the
    longest labels ("ProbConserv (per draw, u ≥ 0)") fit a 3-inch panel without running into the next one."""
    if model is None or name == "none":
        return method_label(name, model)
    return f"{METHOD_LABELS.get(name, name)}\n{_model_tag(model)}"


def _subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """``Figure`` and its axes, as ``pyplot.subplots`` returns them, without pyplot's figure registry;
    ``kwargs``: ``figsize`` for the figure, the rest for ``Figure.subplots``."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as PNG to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def _finish(ax: Axes, path: str | Path, xlabel: str, ylabel: str, title: str, grid: str = "major") -> Path:
    """Axis labels, title, grid (``grid``: which ticks get lines) and legend of a one-panel figure, then
    :func:`save_figure`."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which=grid)
    ax.legend(fontsize=8)
    return save_figure(ax.figure, path)


def _panel_row(n: int, height: float, sharey: bool = True) -> tuple[Figure, np.ndarray]:
    """A row of ``n`` panels, 3 inches wide each, sharing the y-axis unless ``sharey`` is false; returns the
    figure and its axes (n,)."""
    fig, axes = _subplots(1, n, figsize=(3.0 * n, height), sharey=sharey, squeeze=False)
    return fig, axes[0]


def _style_panel(ax: Axes, title: str, xlabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def _finish_row(fig: Figure, first: Axes, path: str | Path, ylabel: str, title: str) -> Path:
    """y label and legend on the ``first`` panel of a row, ``title`` above the row, then :func:`save_figure`."""
    first.set_ylabel(ylabel)
    first.legend(fontsize=7)
    lines = max(ax.get_title().count("\n") + 1 for ax in fig.axes)  # a two-line panel title needs more room
    fig.suptitle(title, y=1.04 + 0.07 * (lines - 1))
    return save_figure(fig, path)


def mass_over_time(
    times: np.ndarray,
    true_mass: np.ndarray,
    predicted: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    title: str = "",
    model: str | None = None,
) -> Path:
    """Total mass ∫u dx over time: the exact M(t) and, per method, the quadrature G μ(t) ± 2 sd(G u)(t).

    ``times``, ``true_mass`` (nt,); ``predicted[method] = (mass (nt,), std (nt,))`` with std = √(Gᵀ Σ G)
    (ProbConserv, Hansen et al. 2023, Fig. 1: the black box's mass drifts, ProbConserv's does not).
    """
    order = np.argsort(times)
    _, ax = _subplots(figsize=(5.0, 3.4))
    ax.plot(times[order], true_mass[order], "k-", lw=2.2, label="true mass")
    for name, (mass, std) in predicted.items():
        color = METHOD_COLORS.get(name)
        ax.plot(times[order], mass[order], "o--", color=color, ms=3.5, lw=1.3, label=method_label(name, model))
        ax.fill_between(times[order], (mass - 2 * std)[order], (mass + 2 * std)[order], color=color, alpha=0.15, lw=0)
    return _finish(ax, path, "t", "total mass  ∫ u dx", title)


def profiles_with_bands(
    x_fine: np.ndarray,
    u_fine: np.ndarray,
    x: np.ndarray,
    u_true: np.ndarray,
    predicted: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    title: str = "",
    model: str | None = None,
) -> Path:
    """One panel per method: the exact profile u(t, ·) (line on ``x_fine``, dots at the targets ``x``) and the
    predicted mean ± 2σ band; ``predicted[method] = (mean (m,), std (m,))`` at ``x`` (m,)."""
    names = list(predicted)
    fig, axes = _panel_row(len(names), 3.0)
    for ax, name in zip(axes, names, strict=True):
        mean, std = predicted[name]
        color = METHOD_COLORS.get(name)
        ax.plot(x_fine, u_fine, "k-", lw=1.6, label="exact")
        ax.plot(x, u_true, "k.", ms=5)
        ax.plot(x, mean, "-o", color=color, ms=3, lw=1.3, label="mean")
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color=color, alpha=0.25, lw=0, label="±2σ")
        _style_panel(ax, _panel_title(name, model), "x")
    return _finish_row(fig, axes[0], path, "u", title)


def shock_histograms(
    positions: Mapping[str, np.ndarray],
    true_front: float,
    path: str | Path,
    edges: np.ndarray | None = None,
    title: str = "",
    model: str | None = None,
) -> Path:
    """Histogram (density) of sampled shock positions per method, with the exact front as a vertical line.

    ``edges`` given: every panel uses them; otherwise each panel gets 30 bins over the range of its own
    samples and the exact front, so that a narrow posterior (a few thousandths wide) shows its shape and
    its distance from the front instead of filling one bin of a common axis. The panels' y-axes are
    independent (densities of posteriors of different widths differ by orders of magnitude)."""
    names = list(positions)
    fig, axes = _panel_row(len(names), 2.8, sharey=edges is not None)
    for ax, name in zip(axes, names, strict=True):
        pos = np.asarray(positions[name], dtype=np.float64)
        bins = edges if edges is not None else _bins_around(pos, true_front, 30)
        ax.hist(pos, bins=bins, density=True, color=METHOD_COLORS.get(name), alpha=0.7)
        ax.axvline(true_front, color="k", lw=1.8, label="exact front")
        ax.axvline(float(np.mean(pos)), color="r", lw=1.2, ls="--", label="posterior mean")
        _style_panel(ax, _panel_title(name, model), "shock position x")
    return _finish_row(fig, axes[0], path, "density", title)


def _bins_around(values: np.ndarray, point: float, n: int) -> np.ndarray:
    """``n`` equal bins (n + 1 edges) over the range of ``values`` and ``point``, widened by 5 % each side
    (and to a width of at least 1e-6, for samples that all coincide)."""
    lo, hi = min(float(np.min(values)), point), max(float(np.max(values)), point)
    pad = max(0.05 * (hi - lo), 5e-7)
    return np.linspace(lo - pad, hi + pad, n + 1)


# ---- BOON (operator learning) figures ---------------------------------------------------------
def error_over_time(
    t: np.ndarray,
    errors: Mapping[str, np.ndarray],
    path: str | Path,
    title: str = "",
    colors: Mapping[str, str] | None = None,
) -> Path:
    """Mean relative L2 error per output time, one line per method (BOON, Fig. 4/6: the FNO's grows)."""
    _, ax = _subplots(figsize=(5.0, 3.2))
    for name, err in errors.items():
        ax.plot(t, err, "o-", ms=3, lw=1.3, color=(colors or {}).get(name), label=name)
    ax.set_yscale("log")
    return _finish(ax, path, "t", "relative L2 error", title, grid="both")


def errors_per_seed(
    groups: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    ylabel: str = "relative L2 error",
) -> Path:
    """A seed study at a glance: for each group (a case) and method, one dot per seed and a bar at the
    mean; ``groups[case][method]`` is the error (``ylabel``) of each seed. Log scale, so cases of very
    different error share one axis."""
    methods = list(dict.fromkeys(m for per_case in groups.values() for m in per_case))
    width = 0.8 / max(len(methods), 1)
    _, ax = _subplots(figsize=(max(5.0, 1.2 * len(groups) + 1.5), 3.4))
    for j, method in enumerate(methods):
        color, label = (colors or {}).get(method), method
        for i, per_case in enumerate(groups.values()):
            if method not in per_case:
                continue
            values = np.asarray(per_case[method], dtype=float)
            x = i - 0.4 + width * (j + 0.5)
            spread = np.linspace(-0.25, 0.25, len(values)) * width if len(values) > 1 else np.zeros(1)
            ax.plot(x + spread, values, "o", ms=3.5, alpha=0.75, color=color, label=label)
            label = None
            ax.hlines(values.mean(), x - 0.4 * width, x + 0.4 * width, color=color, lw=2.0)
    ax.set_xticks(range(len(groups)), list(groups), rotation=15)
    ax.set_yscale("log")
    return _finish(ax, path, "", ylabel, title, grid="both")


def boundary_gradient_over_time(
    t: np.ndarray,
    prescribed: np.ndarray,
    grads: Mapping[str, np.ndarray],
    path: str | Path,
    title: str = "",
    colors: Mapping[str, str] | None = None,
) -> Path:
    """u_x at the insulated (x = 0) and heated (x = 1) ends over time: prescribed data and each method's
    stencil derivative; ``prescribed`` and every ``grads`` value have shape (nt, 2) (BOON, Fig. 3)."""
    fig, axes = _subplots(1, 2, figsize=(8.0, 3.0))
    for j, (ax, end) in enumerate(zip(axes, ("insulated end x = 0", "heated end x = 1"), strict=True)):
        ax.plot(t, prescribed[:, j], "k-", lw=2.2, label="prescribed (truth)")
        for name, g in grads.items():
            ax.plot(t, g[:, j], "o--", ms=3, lw=1.2, color=(colors or {}).get(name), label=name)
        _style_panel(ax, end, "t")
    return _finish_row(fig, axes[0], path, "u_x", title)


def _cell_edges(centres: np.ndarray) -> tuple[float, float]:
    """The outer edges of cells centred on equally spaced ``centres`` (half a step beyond each end)."""
    c = np.asarray(centres, dtype=float)
    half = (c[-1] - c[0]) / (2 * (c.size - 1)) if c.size > 1 else 0.5
    return float(c[0] - half), float(c[-1] + half)


def field_error_panel(
    x: np.ndarray,
    t: np.ndarray,
    truth: np.ndarray,
    fields: Mapping[str, np.ndarray],
    path: str | Path,
    title: str = "",
) -> Path:
    """The true field u(t, x) (nt, nx) and |pred − true| of each method on one colour scale.

    Each sample is a cell centred on its (x, t) (the image extends half a step past the first and last
    sample); the truth's diverging colour scale is symmetric, so white is u = 0.
    """
    errs = {name: np.abs(f - truth) for name, f in fields.items()}
    vmax = max(float(np.max(e)) for e in errs.values()) or 1.0
    fig, axes = _subplots(1, 1 + len(errs), figsize=(3.2 * (1 + len(errs)), 2.9), squeeze=False)
    extent = (*_cell_edges(x), *_cell_edges(t))
    amplitude = float(np.max(np.abs(truth))) or 1.0
    im = axes[0][0].imshow(truth, origin="lower", aspect="auto", extent=extent, cmap="RdBu_r",
                           vmin=-amplitude, vmax=amplitude)
    axes[0][0].set_title("truth u(t, x)")
    fig.colorbar(im, ax=axes[0][0])
    for ax, (name, e) in zip(axes[0][1:], errs.items(), strict=True):
        im = ax.imshow(e, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=0.0, vmax=vmax)
        ax.set_title(f"|error| {name}")
        fig.colorbar(im, ax=ax)
    for ax in axes[0]:
        ax.set_xlabel("x")
    axes[0][0].set_ylabel("t")
    fig.suptitle(title, y=1.04)
    return save_figure(fig, path)


def operator_profiles(
    x: np.ndarray,
    truth: np.ndarray,
    profiles: Mapping[str, np.ndarray],
    path: str | Path,
    title: str = "",
    colors: Mapping[str, str] | None = None,
) -> Path:
    """u(T, x): truth and each method's prediction (single-step operators)."""
    _, ax = _subplots(figsize=(5.0, 3.2))
    ax.plot(x, truth, "k-", lw=2.2, label="truth")
    for name, u in profiles.items():
        ax.plot(x, u, "--", lw=1.3, color=(colors or {}).get(name), label=name)
    return _finish(ax, path, "x", "u(T, x)", title)


__all__ = [
    "METHOD_COLORS",
    "METHOD_LABELS",
    "boundary_gradient_over_time",
    "error_over_time",
    "field_error_panel",
    "mass_over_time",
    "method_label",
    "operator_profiles",
    "profiles_with_bands",
    "save_figure",
    "shock_histograms",
]
