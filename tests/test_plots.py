"""Figures (phasetrans.report.plots, every figure of the library): PNGs written, every panel
labelled and noting where the theory applies, shown inline by Jupyter, drawn from saved results,
inputs checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import digits_tensors, trained_mlp
from matplotlib.figure import Figure
from torch import nn

import phasetrans as pt
from phasetrans.report import plots

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report():
    Xtr, ytr, Xte, yte = digits_tensors(torch.float64)
    return pt.validate(trained_mlp(l1=1e-3), nn.CrossEntropyLoss(), [(Xtr[:650], ytr[:650]), (Xtr[650:], ytr[650:])],
                       (Xte, yte), num_steps=10, num_probes=2, curve_points=5, resolution=0.01,
                       refit=2, loss_criterion=False, predict_kwargs={"bootstrap": 0})


def _legend(fig):
    """The legend of the first axes, or the figure's (the pruning curve puts it below the axes)."""
    return fig.axes[0].get_legend() or (fig.legends[0] if fig.legends else None)


def _labels(fig):
    ax = fig.axes[0]
    return ax.get_xlabel(), ax.get_ylabel(), ax.get_title(), _legend(fig)


@pytest.mark.parametrize("fn", [plots.plot_spectrum, plots.plot_crossing, plots.plot_pruning_curve,
                                plots.plot_layers])
def test_each_figure_is_a_labelled_png(fn, report, tmp_path):
    path = tmp_path / "f.png"
    fig = fn(report, path=path)
    assert isinstance(fig, Figure)
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
    xlabel, ylabel, title, legend = _labels(fig)
    assert xlabel and ylabel and title and legend is not None
    assert all(t.get_text() for t in legend.get_texts())


def test_pruning_curve_marks_prediction_and_threshold(report):
    fig = plots.plot_pruning_curve(report)
    texts = [t.get_text() for t in _legend(fig).get_texts()]
    assert any(f"{report.prediction.sparsity:.3f}" in t for t in texts)
    assert any(f"{report.threshold.sparsity:.3f}" in t for t in texts)
    assert any("re-fit" in t for t in texts)
    assert "test loss" in texts and len(fig.axes) == 2  # twin axis for the loss


def test_spectrum_from_density_and_on_given_axes(report):
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.plot_spectrum(report.prediction.spectrum, ax=ax) is fig
    assert ax.get_yscale() == "log" and ax.get_xlim()[0] < 0 < ax.get_xlim()[1] + 1
    with pytest.raises(TypeError, match="spectrum"):
        plots.plot_spectrum(torch.zeros(3))
    with pytest.raises(TypeError, match="ax"):
        plots.plot_crossing(report, ax="not axes")


def test_layers_has_one_bar_pair_per_layer(report):
    fig = plots.plot_layers(report)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * len(pt.prunable_parameters(trained_mlp()))
    assert ax.get_yscale() == "log"


def test_report_and_overview(report, tmp_path):
    written = plots.plot_report(report, tmp_path / "d")
    assert [p.name for p in written] == ["spectrum.png", "crossing.png", "pruning_curve.png", "layers.png"]
    fig = plots.plot_overview(report, tmp_path / "all.png")
    assert len(fig.axes) >= 4 and (tmp_path / "all.png").read_bytes()[:8] == PNG


def test_bad_inputs(report):
    for fn in (plots.plot_pruning_curve, plots.plot_layers, plots.plot_overview):
        with pytest.raises(TypeError, match="report"):
            fn(object())
    with pytest.raises(TypeError, match="prediction"):
        plots.plot_crossing(object())
    with pytest.raises(TypeError, match="path"):
        plots.plot_crossing(report, path=3)
    with pytest.raises(TypeError, match="directory"):
        plots.plot_report(report, 3)


def test_public_module_and_axes_helper():
    assert pt.plots.plot_spectrum is plots.plot_spectrum and pt.plots.new_axes is plots.new_axes
    fig, ax = plots.new_axes(None, (3.0, 2.0))
    assert isinstance(fig, Figure) and tuple(fig.get_size_inches()) == (3.0, 2.0) and fig.dpi == 110
    assert plots.new_axes(ax, (9.0, 9.0)) == (fig, ax)
    with pytest.raises(TypeError, match="ax"):
        plots.new_axes("axes", (3.0, 2.0))


def _case(name, kind="network", predicted=0.9, measured=0.88, refit=0.93):
    grid = [i / 100 for i in range(101)]
    return {"name": name, "kind": kind, "dim": 100, "predicted": predicted, "predicted_exact": predicted + 0.001,
            "lower": predicted - 0.05, "upper": predicted + 0.05, "measured_oneshot": measured,
            "measured_refit_loss": refit, "dense_metric": 0.95, "train_loss": 0.1, "eps": 0.02,
            "threshold_points": [(0.885, 0.95)],
            "curve": {"sparsity": grid, "accuracy": [0.95 if s < measured else 0.1 for s in grid],
                      "train_loss": [0.1 + s for s in grid]}}


def test_study_figures(tmp_path):
    """The validation study's three figures: labelled, the markers and lines it promises, PNGs."""
    cases = [_case("net"), _case("quad", kind="quadratic", predicted=0.8, measured=0.82, refit=None)]
    fig = plots.plot_prediction_scatter(cases, path=tmp_path / "s.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert [t.get_text() for t in ax.texts if t.get_gid() != "applicability"] == ["net", "quad"]
    assert ax.get_xlim() == pytest.approx((0.75, 1.0))  # min(predicted, measured) − 0.05
    fig = plots.plot_case_curve(cases[0], path=tmp_path / "c.png")
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "predicted (SLQ) 0.900" in texts and "measured one-shot 0.880" in texts
    assert "measured re-fit (L ≤ L*+ε) 0.930" in texts and len(fig.axes) == 2
    assert fig.axes[1].get_yscale() == "log"
    rows = [{"l1": l1, "lower": 0.8, "upper": 0.9, "predicted": 0.85, "measured_oneshot": 0.84,
             "measured_oneshot_tol1": 0.85, "measured_loss": 0.86, "measured_refit_loss": None}
            for l1 in (0.0, 1e-3)]
    fig = plots.plot_l1_ablation(rows, path=tmp_path / "l.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "re-fit 100 steps (L ≤ L*+ε)" not in labels and len(labels) == 5  # no re-fit column
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "0.001"]
    for name in ("s.png", "c.png", "l.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    with pytest.raises(TypeError, match="cases"):
        plots.plot_prediction_scatter([])
    with pytest.raises(TypeError, match="case"):
        plots.plot_case_curve([1, 2])
    with pytest.raises(TypeError, match="rows"):
        plots.plot_l1_ablation([3])
    with pytest.raises(TypeError, match="path"):
        plots.plot_l1_ablation(rows, path=3)


def test_density_line_alone(report):
    """marks=False: the density line of SpectralDensity.plot (log floor 1e-12 of the peak), no
    rug, title or legend; line keywords reach the line; flags are checked."""
    spec = report.prediction.spectrum
    sigma = spec.default_bandwidth()
    grid = torch.linspace(-1.0, 2.0, 300, dtype=torch.float64)
    fig = plots.plot_spectrum(spec, grid=grid, bandwidth=sigma, marks=False, color="k")
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    dens = spec.density(grid, sigma)
    expected = torch.clamp(dens, min=1e-12 * float(dens.max()))
    assert line.get_ydata().tolist() == expected.tolist() and line.get_color() == "k"
    assert ax.get_yscale() == "log" and ax.get_legend() is None and ax.get_title() == ""
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("eigenvalue λ", "density φ(λ)")
    flat = plots.plot_spectrum(spec, grid=grid, marks=False, log=False).axes[0]
    assert flat.get_yscale() == "linear" and flat.get_lines()[0].get_ydata().tolist() == \
        spec.density(grid, sigma).tolist()
    with pytest.raises(ValueError, match="log"):
        plots.plot_spectrum(spec, log=False)
    with pytest.raises(TypeError, match="marks"):
        plots.plot_spectrum(spec, marks="no")


# ------------------------------------------------------------------------------------------
# issue 17: inline display, the notes, the axes, the prediction's two panels, saved results
# ------------------------------------------------------------------------------------------
RUN_FIGURES = [plots.plot_spectrum, plots.plot_crossing, plots.plot_prediction, plots.plot_pruning_curve,
               plots.plot_layers, plots.plot_overview]


@pytest.mark.parametrize("fn", RUN_FIGURES, ids=lambda f: f.__name__)
def test_figures_show_inline_in_jupyter(fn, report):
    """IPython's display formatter (what a notebook cell runs on its value) finds a PNG: no
    pyplot, no inline backend needed. A bare matplotlib Figure gets none (the bug of issue 17)."""
    from IPython.core.formatters import DisplayFormatter

    fig = fn(report)
    assert isinstance(fig, plots.InlineFigure)
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"][:8] == PNG and len(data["image/png"]) > 5000
    assert "image/png" not in DisplayFormatter().format(Figure())[0]


def _notes(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "applicability"]


@pytest.mark.parametrize("fn", RUN_FIGURES, ids=lambda f: f.__name__)
def test_every_figure_says_where_the_theory_applies(fn, report):
    notes = _notes(fn(report))
    assert notes and all("quadratic" in n or "one vector" in n for n in notes)


def test_study_figures_say_where_the_theory_applies():
    cases = [_case("net")]
    rows = [{"l1": 0.0, "lower": 0.8, "upper": 0.9, "predicted": 0.85, "measured_oneshot": 0.84,
             "measured_oneshot_tol1": 0.85, "measured_loss": 0.86}]
    for fig in (plots.plot_prediction_scatter(cases), plots.plot_case_curve(cases[0]), plots.plot_l1_ablation(rows)):
        assert any("quadratic" in n for n in _notes(fig))


def _x(ax, s):
    """Display x coordinate of sparsity ``s``."""
    return ax.transData.transform((s, 0.5))[0]


def test_pruning_curve_zooms_high_sparsity_and_keeps_the_legend_off_the_data(report):
    fig = plots.plot_pruning_curve(report)
    ax, ax2 = fig.axes[0], fig.axes[1]
    fig.draw_without_rendering()  # the layout, the ticks and their labels
    assert ax.get_xscale() == "function"
    # every "nine" gets the same width: 0 → 0.9 as wide as 0.9 → 0.99 (a linear axis: 10 times as wide)
    assert _x(ax, 0.9) - _x(ax, 0.0) == pytest.approx(_x(ax, 0.99) - _x(ax, 0.9), rel=1e-9)
    assert ax.get_xlim()[0] == 0.0 and ax.get_xlim()[1] < 1.0
    kept = [1 - s for s in report.curve["sparsity"] if s < 1] + [1 - report.prediction.upper, 1 - report.measured]
    assert ax.get_xlim()[1] == pytest.approx(1 - 0.5 * min(kept + [1 - report.refit_threshold.sparsity]))
    # the legend lies outside the axes: it covers neither curve
    legend = fig.legends[0].get_window_extent()
    assert not legend.overlaps(ax.get_window_extent()) and not legend.overlaps(ax2.get_window_extent())
    # plain tick labels on the log loss axis ("0.2", never "2 × 10⁻¹" or mathtext)
    labels = [t.get_text() for t in ax2.get_yticklabels(which="both") if t.get_text()]
    assert ax2.get_yscale() == "log" and labels
    for text in labels:
        assert "×" not in text and "$" not in text and float(text) > 0


def test_pruning_curve_on_given_axes_puts_the_legend_below(report):
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    assert plots.plot_pruning_curve(report, ax=ax) is fig
    fig.draw_without_rendering()
    assert not ax.get_legend().get_window_extent().overlaps(ax.get_window_extent())


def test_crossing_axis_is_bounded_by_the_crossing(report):
    pred = report.prediction
    fig = plots.plot_crossing(pred)
    crossing = max(pred.radius, pred.details.get("crossing_radius") or 0.0)
    assert fig.axes[0].get_xlim() == pytest.approx((0.0, min(float(max(pred.curve.radius)), 3 * crossing)))
    assert fig.axes[0].get_xlim()[1] < float(max(pred.curve.radius))  # the curve runs further


def test_prediction_two_panels_and_plot_delegates(report, tmp_path):
    pred = report.prediction
    fig = plots.plot_prediction(pred, path=tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG
    left, right = fig.axes
    assert "exact" in left.get_title() and "slq" in right.get_title()
    assert right.get_yscale() == "log"
    (dots,) = right.get_lines()[:1]
    masses = pred.spectrum.weights.flatten() / pred.spectrum.num_probes
    assert len(dots.get_xdata()) == int((masses > 0).sum())
    assert sorted(dots.get_ydata().tolist()) == pytest.approx(sorted(masses[masses > 0].tolist()), rel=1e-12)
    fig2 = pred.plot()  # Prediction.plot draws the same figure
    assert [a.get_title() for a in fig2.axes] == [a.get_title() for a in fig.axes]
    assert len(pred.plot(tmp_path / "q.png").axes) == 2 and (tmp_path / "q.png").exists()
    pair = Figure().subplots(1, 2)
    assert plots.plot_prediction(pred, ax=pair) is pair[0].figure and pair[1].get_title()
    one = Figure().add_subplot()
    assert len(plots.plot_prediction(pred, ax=one).axes) == 1
    with pytest.raises(TypeError, match="ax"):
        plots.plot_prediction(pred, ax="nope")


def test_prediction_from_eigenvalues_draws_a_log_count_histogram():
    rng = torch.Generator().manual_seed(0)
    w = torch.randn(400, generator=rng, dtype=torch.float64) * torch.rand(400, generator=rng, dtype=torch.float64)
    eig = torch.rand(400, generator=rng, dtype=torch.float64) * 3
    pred = pt.critical_sparsity(w, eig, eps=0.05)
    fig = plots.plot_prediction(pred)
    right = fig.axes[1]
    assert "eigenvalues" in right.get_title() and right.get_yscale() == "log"
    assert sum(p.get_height() for p in right.patches) == 400  # every eigenvalue counted once


def test_figures_from_saved_results(report, tmp_path):
    """Every figure function takes the result's dict or the JSON file the tool wrote, and draws
    the same figure (same lines) as from the object."""
    path = tmp_path / "report.json"
    report.to_json(path)
    d = report.to_dict()
    for fn in (plots.plot_crossing, plots.plot_pruning_curve, plots.plot_layers, plots.plot_spectrum):
        want = [np.asarray(line.get_ydata(), dtype=float).tolist() for line in fn(report).axes[0].get_lines()]
        for saved in (d, path, str(path)):
            got = [np.asarray(line.get_ydata(), dtype=float).tolist() for line in fn(saved).axes[0].get_lines()]
            assert got == want, fn.__name__
    assert len(plots.plot_prediction(d["prediction"]).axes) == 2
    assert plots.plot_spectrum(d["prediction"]["spectrum"]).axes[0].get_lines()
    with pytest.raises(ValueError, match="JSON"):
        plots.plot_crossing(tmp_path / "missing.json")
    with pytest.raises(TypeError, match="report"):
        plots.plot_pruning_curve({"nope": 1})


def test_plot_saved_redraws_what_the_run_wrote(report, tmp_path):
    written = plots.plot_report(report, tmp_path / "run")
    (tmp_path / "r.json").write_text(report.to_json())
    again = plots.plot_saved(tmp_path / "r.json", tmp_path / "again")
    assert sorted(p.name for p in again) == sorted(p.name for p in written)
    pred_json = tmp_path / "prediction.json"
    pred_json.write_text(report.prediction.to_json())
    assert [p.name for p in plots.plot_saved(pred_json, tmp_path / "p")] == ["crossing.png", "spectrum.png"]
    spec = {"command": "spectrum", "spectrum": report.prediction.spectrum.to_dict()}
    assert [p.name for p in plots.plot_saved(spec, tmp_path / "s")] == ["spectrum.png"]
    with pytest.raises(ValueError, match="not a saved"):
        plots.plot_saved({"a": 1}, tmp_path / "x")
    with pytest.raises(TypeError, match="directory"):
        plots.plot_saved(spec, 3)
    with pytest.raises(TypeError, match="result"):
        plots.plot_saved(3, tmp_path)
