"""Figures: PNGs written, every panel labelled, inputs checked."""

from __future__ import annotations

import pytest
import torch
from conftest import digits_tensors, trained_mlp
from matplotlib.figure import Figure
from torch import nn

import phasetrans as pt
from phasetrans import plots

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
