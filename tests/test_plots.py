"""Figures people read: a row of one panel per method keeps every panel's title apart from its neighbours'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from physml import plots


@pytest.mark.parametrize("model", ["anp", "ensemble"])
def test_the_method_panels_titles_do_not_run_into_each_other(model: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ProbConserv method side by side (the Stefan profiles and shock histograms): each panel has a title,
    each title's drawn box ends left of where the next one begins, and the row's title lies above them all."""
    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig) or path)
    names = list(plots.METHOD_LABELS)
    x = np.linspace(0.0, 1.0, 20)
    plots.profiles_with_bands(x, x, x, x, {n: (x, 0.1 + 0 * x) for n in names}, tmp_path / "p.png",
                              title="profiles", model=model)
    plots.shock_histograms({n: np.random.default_rng(0).normal(0.3, 0.01, 200) for n in names}, 0.4,
                           tmp_path / "s.png", title="shock-position posterior", model=model)
    for fig in drawn:
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        axes = fig.axes
        assert len(axes) == len(names)
        boxes = [ax.title.get_window_extent(renderer) for ax in axes]
        assert all(ax.get_title() for ax in axes)
        for left, right in zip(boxes, boxes[1:]):
            assert left.x1 < right.x0, (left, right)
        (row_title,) = [t for t in fig.texts if t.get_text() in ("profiles", "shock-position posterior")]
        above = row_title.get_window_extent(renderer)
        assert all(above.y0 > box.y1 for box in boxes)  # the row's title clears the panels' two-line titles
