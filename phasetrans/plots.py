"""Figures of a validation run (matplotlib, Agg, PNG): thin views of computed results.

- :func:`plot_spectrum`: the Hessian spectral density over the signed spectrum, log-scale
  density (a smoothed view of the SLQ quadrature; the nodes themselves as a rug).
- :func:`plot_crossing`: Φ(R) against the magnitude curve s(R) and their crossing s*
  (Zhang et al., NeurIPS 2024, the paper's figure).
- :func:`plot_pruning_curve`: test accuracy and test loss against sparsity, the predicted
  sparsity with its kinematic window shaded, the measured threshold marked.
- :func:`plot_layers`: per-layer kept fraction at the measured threshold and at the prediction
  (is the threshold driven by a layer collapsing?).
- :func:`plot_report` writes all four for a :class:`~phasetrans.Report`; :func:`plot_overview`
  one figure with all panels.

Every function takes ``ax=None`` (a new figure) or a matplotlib ``Axes``, and ``path`` to save a
PNG; it returns the ``Figure``. Figures are built with ``matplotlib.figure.Figure`` (Agg
canvas), so no GUI backend is touched and nothing accumulates in pyplot.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes

__all__ = [
    "plot_spectrum",
    "plot_crossing",
    "plot_pruning_curve",
    "plot_layers",
    "plot_report",
    "plot_overview",
]

_PRED_COLOR = "tab:red"
_MEAS_COLOR = "black"


def _new_axes(ax: Any, figsize: tuple[float, float]):
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=figsize, dpi=110, layout="constrained")
        return fig, fig.add_subplot(1, 1, 1)
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be None or a matplotlib Axes, got {type(ax).__name__}")
    return ax.figure, ax


def save_figure_atomic(fig: Any, path: Any, **savefig_kwargs: Any) -> Path:
    """Render ``fig`` in memory and write it atomically (temp file + rename): a reader never
    sees a half-written image, and an interrupted run leaves the old file intact."""
    buffer = io.BytesIO()
    fig.savefig(buffer, **savefig_kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


def _save(fig: Any, path: Any) -> None:
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be None, a str or os.PathLike, got {type(path).__name__}")
    save_figure_atomic(fig, path, format="png")


def _check_prediction(prediction: Any, name: str = "prediction") -> Any:
    for attr in ("sparsity", "lower", "upper", "radius", "curve"):
        if not hasattr(prediction, attr):
            raise TypeError(f"{name} must be a phasetrans Prediction, got {type(prediction).__name__}")
    return prediction


def _check_report(report: Any) -> Any:
    for attr in ("prediction", "threshold", "curve", "layers"):
        if not hasattr(report, attr):
            raise TypeError(f"report must be a phasetrans Report, got {type(report).__name__}")
    return report


def _spectrum_of(spectrum: Any) -> Any:
    if hasattr(spectrum, "prediction"):  # a Report
        spectrum = spectrum.prediction
    if hasattr(spectrum, "curve") and hasattr(spectrum, "spectrum"):  # a Prediction
        spectrum = spectrum.spectrum
    if not (hasattr(spectrum, "nodes") and hasattr(spectrum, "weights") and hasattr(spectrum, "density")):
        raise TypeError(
            "spectrum must be a SpectralDensity (from slq), or a Prediction / Report made with SLQ, "
            f"got {type(spectrum).__name__}"
        )
    return spectrum


# ------------------------------------------------------------------------------------------
def plot_spectrum(spectrum: Any, ax: Any = None, path: Any = None, title: str | None = None):
    """Hessian spectral density: the SLQ quadrature smoothed by a Gaussian kernel (a view, via
    ``SpectralDensity.density``), over the signed eigenvalue axis, log-scale density, with the
    nodes of weight > 1e-6 as a rug and ``λ = 0`` marked. ``spectrum``: a ``SpectralDensity`` or a
    ``Prediction``/``Report`` holding one."""
    import torch

    spec = _spectrum_of(spectrum)
    fig, ax = _new_axes(ax, (6.4, 4.0))
    nodes, weights = spec.nodes, spec.weights
    live = nodes[weights > 0]
    lo, hi = float(live.min()), float(live.max())
    sigma = spec.default_bandwidth()
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, 2000, dtype=torch.float64)
    dens = spec.density(grid, sigma)
    floor = 1e-8 * float(dens.max())
    ax.plot(grid.numpy(), np.maximum(dens.numpy(), floor), color="tab:blue", lw=1.3,
            label=f"smoothed density (σ = {sigma:.3g})")
    ax.set_yscale("log")
    ax.set_ylim(floor, float(dens.max()) * 3)
    rug = nodes[weights > 1e-6].numpy()
    ax.plot(rug, np.full(rug.shape, floor * 3), "|", color="tab:gray", ms=8, alpha=0.6,
            label=f"SLQ nodes ({spec.num_probes} probes × {spec.num_steps} steps)")
    ax.axvline(0.0, color="black", lw=0.8, ls=":")
    neg = float(torch.where(nodes < 0, weights, torch.zeros_like(weights)).sum() / spec.num_probes)
    ax.set_xlabel("Hessian eigenvalue λ (signed)")
    ax.set_ylabel("spectral density φ(λ) (log scale)")
    ax.set_title(title or f"Hessian spectrum, D = {spec.dim}  (mass at λ < 0: {neg:.1%})")
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(True, alpha=0.3)
    _save(fig, path)
    return fig


def plot_crossing(prediction: Any, ax: Any = None, path: Any = None):
    """Φ(R) (theory) against s(R) (the magnitude curve of the trained weights) and the
    predicted critical sparsity at their crossing, with the kinematic window shaded.
    ``prediction``: a ``Prediction`` (or a ``Report``)."""
    if hasattr(prediction, "prediction"):
        prediction = prediction.prediction
    pred = _check_prediction(prediction)
    fig, ax = _new_axes(ax, (6.4, 4.0))
    c = pred.curve
    R, phi, s = np.asarray(c.radius), np.asarray(c.phi), np.asarray(c.sparsity)
    ax.plot(R, phi, color="tab:green", lw=1.6, label="Φ(R): normalised width of the sublevel set")
    ax.step(R, s, where="post", color="tab:blue", lw=1.6, label="s(R): magnitude pruning of w*")
    ax.axhspan(pred.lower, pred.upper, color=_PRED_COLOR, alpha=0.12,
               label=f"kinematic window [{pred.lower:.3f}, {pred.upper:.3f}]")
    ax.plot([pred.radius], [pred.sparsity], "o", color=_PRED_COLOR, ms=7,
            label=f"crossing s* = {pred.sparsity:.4f}")
    ax.axvline(pred.radius, color=_PRED_COLOR, lw=0.8, ls="--")
    ax.set_xlabel("R = ‖w* − w^(s)‖₂  (distance to the pruned weights)")
    ax.set_ylabel("sparsity")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, float(R.max()) if R.size else 1.0)
    ax.set_title(f"Predicted critical sparsity  (ε = {pred.eps:.3g}, D = {pred.dim})")
    ax.legend(loc="center right", fontsize="small")
    ax.grid(True, alpha=0.3)
    _save(fig, path)
    return fig


def plot_pruning_curve(report: Any, ax: Any = None, path: Any = None):
    """Test accuracy (left axis) and test loss (right axis, log) of one-shot magnitude pruning
    against sparsity; the predicted sparsity (line) with its kinematic window (shaded), the
    measured threshold (dashed) and the dense accuracy (dotted). ``report``: a ``Report``."""
    rep = _check_report(report)
    fig, ax = _new_axes(ax, (6.8, 4.2))
    curve = rep.curve
    s = np.asarray(curve["sparsity"])
    acc = np.asarray(curve["accuracy"])
    pred, thr = rep.prediction, rep.threshold
    ax.axvspan(pred.lower, pred.upper, color=_PRED_COLOR, alpha=0.12, label="predicted window")
    ax.axvline(pred.sparsity, color=_PRED_COLOR, lw=1.6,
               label=f"predicted s* = {pred.sparsity:.3f}")
    ax.axvline(thr.sparsity, color=_MEAS_COLOR, lw=1.6, ls="--",
               label=f"measured threshold = {thr.sparsity:.3f}")
    ax.axhline(thr.baseline, color="tab:gray", lw=0.8, ls=":", label=f"dense accuracy {thr.baseline:.3f}")
    ax.plot(s, acc, ".-", color="tab:blue", lw=1.3, ms=4, label="test accuracy")
    refit = getattr(rep, "refit_threshold", None)
    if refit is not None and refit.points:
        rs, ra = zip(*refit.points)
        ax.plot(rs, ra, "x", color="tab:purple", ms=5, label=f"after re-fit (threshold {refit.sparsity:.3f})")
    ax.set_xlabel("sparsity s (fraction of prunable weights set to zero)")
    ax.set_ylabel("test accuracy", color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if "loss" in curve:
        ax2 = ax.twinx()
        loss = np.asarray(curve["loss"], dtype=float)
        (line,) = ax2.plot(s, loss, ".-", color="tab:orange", lw=1.0, ms=3, alpha=0.9, label="test loss")
        if np.all(loss > 0):
            ax2.set_yscale("log")
        ax2.set_ylabel("test loss (log scale)", color="tab:orange")
        handles.append(line)
        labels.append("test loss")
    ax.legend(handles, labels, loc="lower left", fontsize="small", framealpha=0.9)
    ax.set_title("One-shot global magnitude pruning: theory vs measurement")
    _save(fig, path)
    return fig


def plot_layers(report: Any, ax: Any = None, path: Any = None):
    """Per-layer kept fraction (log scale) at the measured threshold and at the predicted
    sparsity; the global kept fraction as a dashed line. A bar near zero is a collapsing layer:
    then the threshold is set by that layer, not by the whole network. ``report``: a ``Report``."""
    rep = _check_report(report)
    layers = rep.layers
    at_t, at_p = layers["at_threshold"], layers["at_prediction"]
    names = list(at_t)
    fig, ax = _new_axes(ax, (max(5.0, 1.1 * len(names) + 2.5), 4.0))
    x = np.arange(len(names))
    width = 0.38
    floor = 1e-4
    kt = np.array([max(at_t[n]["kept_fraction"], floor) for n in names])
    kp = np.array([max(at_p[n]["kept_fraction"], floor) for n in names])
    ax.bar(x - width / 2, kt, width, color="0.35",
           label=f"at measured threshold s = {layers['threshold_sparsity']:.3f}")
    ax.bar(x + width / 2, kp, width, color=_PRED_COLOR, alpha=0.7,
           label=f"at predicted s* = {layers['predicted_sparsity']:.3f}")
    ax.axhline(1 - layers["threshold_sparsity"], color="0.35", ls="--", lw=1)
    ax.axhline(1 - layers["predicted_sparsity"], color=_PRED_COLOR, ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1.5)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{n}\n({at_t[n]['total']} weights)" for n in names], fontsize="small")
    ax.set_ylabel("kept fraction of the layer (log scale)")
    ax.set_xlabel("prunable layer; dashed lines: global kept fraction")
    ax.set_title("Per-layer kept fraction after global magnitude pruning")
    ax.legend(loc="lower left", fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    _save(fig, path)
    return fig


FIGURE_NAMES = {
    "spectrum": "spectrum.png",
    "crossing": "crossing.png",
    "pruning_curve": "pruning_curve.png",
    "layers": "layers.png",
}


def plot_report(report: Any, directory: str | os.PathLike) -> list[Path]:
    """Write the four figures of a ``Report`` into ``directory`` (created if needed):
    ``spectrum.png`` (only when the prediction used SLQ), ``crossing.png``,
    ``pruning_curve.png``, ``layers.png``. Returns the paths written."""
    rep = _check_report(report)
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or os.PathLike, got {type(directory).__name__}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        spec = _spectrum_of(rep)
    except TypeError:
        spec = None
    if spec is not None:
        plot_spectrum(spec, path=d / FIGURE_NAMES["spectrum"])
        written.append(d / FIGURE_NAMES["spectrum"])
    for key, fn in (("crossing", plot_crossing), ("pruning_curve", plot_pruning_curve),
                    ("layers", plot_layers)):
        fn(rep, path=d / FIGURE_NAMES[key])
        written.append(d / FIGURE_NAMES[key])
    return written


def plot_overview(report: Any, path: Any = None):
    """One 2×2 figure: spectrum, crossing, pruning curve, layers. Returns the figure."""
    from matplotlib.figure import Figure

    rep = _check_report(report)
    fig = Figure(figsize=(14, 9), dpi=100, layout="constrained")
    axes = fig.subplots(2, 2)
    try:
        plot_spectrum(_spectrum_of(rep), ax=axes[0, 0])
    except TypeError:
        axes[0, 0].set_axis_off()
    plot_crossing(rep, ax=axes[0, 1])
    plot_pruning_curve(rep, ax=axes[1, 0])
    plot_layers(rep, ax=axes[1, 1])
    _save(fig, path)
    return fig
