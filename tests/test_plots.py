"""Figures (phasetrans.report.plots, every figure of the library): PNGs written, every panel
labelled, inputs checked."""

from __future__ import annotations

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


def _labels(fig):
    ax = fig.axes[0]
    return ax.get_xlabel(), ax.get_ylabel(), ax.get_title(), ax.get_legend()


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
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
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
    assert [t.get_text() for t in ax.texts] == ["net", "quad"]
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
