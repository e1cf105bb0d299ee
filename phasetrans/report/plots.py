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

Figures of many runs (the validation study, ``python -m studies.validation``, draws these from
the dicts it records per case; the keys each one reads are in its docstring):

- :func:`plot_prediction_scatter`: predicted against measured critical sparsity, one point per
  case, with the ±3-point band;
- :func:`plot_case_curve`: accuracy and training loss along the one-shot pruning path of one
  case, with the prediction, its window and the measured thresholds;
- :func:`plot_l1_ablation`: predicted and measured thresholds against the l1 strength.

All figures of the library are drawn here; ``.plot()`` methods of results delegate to this module.

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

from .._io import atomic_write_bytes

__all__ = [
    "plot_spectrum",
    "plot_crossing",
    "plot_pruning_curve",
    "plot_layers",
    "plot_report",
    "plot_overview",
    "plot_prediction_scatter",
    "plot_case_curve",
    "plot_l1_ablation",
    "plot_oneshot_study",
    "applicability_note",
    "new_axes",
    "save_figure_atomic",
]

_PRED_COLOR = "tab:red"
_MEAS_COLOR = "black"


def new_axes(ax: Any, figsize: tuple[float, float]):
    """``(figure, axes)``: a new Agg ``Figure`` of ``figsize`` inches (dpi 110, constrained layout)
    with one ``Axes`` when ``ax`` is ``None``, else ``ax`` and its figure (``ax`` must be an
    ``Axes``)."""
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


def _save(fig: Any, path: Any, tight: bool = False) -> None:
    """Write ``fig`` to ``path`` (nothing when ``None``): a PNG of the whole canvas, or with
    ``tight`` cropped to the drawn content (``bbox_inches="tight"``)."""
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be None, a str or os.PathLike, got {type(path).__name__}")
    if tight:
        save_figure_atomic(fig, path, bbox_inches="tight")
    else:
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
def _pyplot_or_new_axes(ax: Any, figsize: tuple[float, float], pyplot: bool):
    """:func:`new_axes`, or with ``pyplot`` and no ``ax`` a figure made by ``plt.subplots()``
    (matplotlib's default size; shown inline in notebooks)."""
    if pyplot and ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        return fig, ax
    return new_axes(ax, figsize)


def _density_line(spec: Any, ax: Any, grid: Any, sigma: float, log: bool, line_kwargs: dict) -> None:
    """The smoothed density alone (``SpectralDensity.plot``): with ``log`` on a log axis floored
    at 1e-12 of the peak."""
    import torch

    dens = spec.density(grid, sigma)
    if log:
        dens = torch.clamp(dens, min=1e-12 * float(dens.max()) if dens.max() > 0 else 1e-300)
        ax.set_yscale("log")
    ax.plot(grid.numpy(), dens.numpy(), **line_kwargs)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density φ(λ)")


def plot_spectrum(spectrum: Any, ax: Any = None, path: Any = None, title: str | None = None, *,
                  grid: Any = None, bandwidth: float | None = None, log: bool = True,
                  marks: bool = True, pyplot: bool = False, **line_kwargs: Any):
    """Hessian spectral density: the SLQ quadrature smoothed by a Gaussian kernel of width
    ``bandwidth`` (default ``SpectralDensity.default_bandwidth()``; a view, via
    ``SpectralDensity.density``) on ``grid`` (default 2000 points over the live nodes ± 5σ), over
    the signed eigenvalue axis, log-scale density, with the nodes of weight > 1e-6 as a rug and
    ``λ = 0`` marked. ``spectrum``: a ``SpectralDensity`` or a ``Prediction``/``Report`` holding one.

    ``marks=False``: the density line alone, as :meth:`SpectralDensity.plot` draws it (``log``
    chooses the axis; floored at 1e-12 of the peak), no title, legend or rug. ``pyplot=True``
    (without ``ax``): a new figure through pyplot instead of a bare Agg ``Figure``.
    ``line_kwargs`` go to the density line's ``ax.plot``. Returns the figure."""
    import torch

    spec = _spectrum_of(spectrum)
    for name, flag in (("log", log), ("marks", marks), ("pyplot", pyplot)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if marks and not log:
        raise ValueError("log=False needs marks=False: the full figure has a log density axis")
    fig, ax = _pyplot_or_new_axes(ax, (6.4, 4.0), pyplot)
    nodes, weights = spec.nodes, spec.weights
    sigma = spec.default_bandwidth() if bandwidth is None else bandwidth
    if grid is None:
        live = nodes[weights > 0]
        lo, hi = float(live.min()), float(live.max())
        grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, 2000, dtype=torch.float64)
    if not marks:
        _density_line(spec, ax, grid, sigma, log, line_kwargs)
        _save(fig, path)
        return fig
    dens = spec.density(grid, sigma)
    floor = 1e-8 * float(dens.max())
    line = {"color": "tab:blue", "lw": 1.3, "label": f"smoothed density (σ = {sigma:.3g})", **line_kwargs}
    ax.plot(grid.numpy(), np.maximum(dens.numpy(), floor), **line)
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


def applicability_note(prediction: Any) -> str | None:
    """The figures' one-line note: "theory applies / does not apply: ..." (``None`` if not assessed)."""
    applies = getattr(prediction, "applies", None)
    if applies is None:
        return None
    a = prediction.details.get("applicability", {})
    if str(prediction.method).startswith("oneshot"):
        return f"{prediction.method} estimate ({'model checked' if applies else 'model off: use forward'})"
    if applies:
        return f"theory applies: ΔL₂(s*)/ε = {a.get('ratio', float('nan')):.2f} ≤ {a.get('max_ratio', 1.5):g}"
    return (f"theory does not apply: ΔL₂(s*)/ε = {a.get('ratio', float('nan')):.2f} > {a.get('max_ratio', 1.5):g};"
            " s* is an existence limit, use pt.predict_oneshot")


def _draw_note(ax: Any, prediction: Any) -> None:
    note = applicability_note(prediction)
    if note:
        ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize="small", va="bottom",
                color="tab:green" if prediction.applies else "tab:red")


def plot_crossing(prediction: Any, ax: Any = None, path: Any = None):
    """Φ(R) (theory) against s(R) (the magnitude curve of the trained weights) and the
    predicted critical sparsity at their crossing, with the kinematic window shaded and the
    applicability note. ``prediction``: a ``Prediction`` (or a ``Report``). A one-shot estimate
    (``pt.predict_oneshot``) is drawn as its loss change ΔL(s) against τ instead."""
    if hasattr(prediction, "prediction"):
        prediction = prediction.prediction
    pred = _check_prediction(prediction)
    fig, ax = new_axes(ax, (6.4, 4.0))
    if str(pred.method).startswith("oneshot"):
        s_, dl = np.array(pred.details["points"], dtype=float).reshape(-1, 2).T
        ax.plot(s_, dl, ".", color="tab:blue", label="ΔL(s) = L(w^(s)) − L(w*) evaluated")
        ax.axhline(pred.details["tau"], color="k", ls=":", label=f"τ = {pred.details['tau']:.3g}")
        ax.axvline(pred.sparsity, color=_PRED_COLOR, label=f"estimate ŝ = {pred.sparsity:.4f}")
        ax.set_yscale("symlog", linthresh=pred.details["tau"])
        ax.set(xlabel="sparsity s", ylabel="training-loss change", title=f"One-shot estimate ({pred.method})")
        ax.legend(fontsize="small", loc="upper left")
        _draw_note(ax, pred)
        _save(fig, path)
        return fig
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
    _draw_note(ax, pred)
    _save(fig, path)
    return fig


def plot_pruning_curve(report: Any, ax: Any = None, path: Any = None):
    """Test accuracy (left axis) and test loss (right axis, log) of one-shot magnitude pruning
    against sparsity; the predicted sparsity (line) with its kinematic window (shaded), the
    measured threshold (dashed) and the dense accuracy (dotted). ``report``: a ``Report``."""
    rep = _check_report(report)
    fig, ax = new_axes(ax, (6.8, 4.2))
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
    note = applicability_note(pred)
    if note:
        ax.text(0.99, 0.99, note, transform=ax.transAxes, fontsize="small", ha="right", va="top",
                color="tab:green" if pred.applies else "tab:red")
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
    fig, ax = new_axes(ax, (max(5.0, 1.1 * len(names) + 2.5), 4.0))
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


# ------------------------------------------------------------------------------------------
# figures of many runs (the validation study)
# ------------------------------------------------------------------------------------------
def plot_prediction_scatter(cases: Any, ax: Any = None, path: Any = None):
    """Predicted (x) against measured (y) critical sparsity, one marker per case (square:
    ``kind == "quadratic"``, circle: a network), the re-fit threshold as an open red marker where
    known, the diagonal and a ±3-point band. ``cases``: dicts with ``name``, ``kind``,
    ``predicted``, ``measured_oneshot`` and optionally ``measured_refit_loss``. ``path`` is
    written cropped to the drawn content."""
    cases = list(cases)
    if not cases or not all(isinstance(c, dict) for c in cases):
        raise TypeError("cases must be a non-empty sequence of case dicts")
    fig, ax = new_axes(ax, (5.6, 5.2))
    lo = min(min(c["predicted"], c["measured_oneshot"]) for c in cases) - 0.05
    lo = max(0.0, lo)
    xs = np.linspace(lo, 1, 50)
    ax.fill_between(xs, xs - 0.03, xs + 0.03, color="tab:gray", alpha=0.2, label="±3 points")
    ax.plot(xs, xs, "k-", lw=0.8, label="y = x")
    for c in cases:
        mk = "s" if c["kind"] == "quadratic" else "o"
        ax.plot(c["predicted"], c["measured_oneshot"], mk, color="tab:blue", ms=6)
        if c.get("measured_refit_loss") is not None:
            ax.plot(c["predicted"], c["measured_refit_loss"], mk, mfc="none", color="tab:red", ms=6)
        ax.annotate(c["name"], (c["predicted"], c["measured_oneshot"]), fontsize=6,
                    xytext=(3, -8), textcoords="offset points")
    ax.plot([], [], "o", color="tab:blue", label="one-shot (networks: test acc. ≥ dense)")
    ax.plot([], [], "s", color="tab:blue", label="one-shot (quadratics: exact)")
    ax.plot([], [], "o", mfc="none", color="tab:red", label="re-fit on the magnitude support (L ≤ L*+ε)")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_xlabel("predicted critical sparsity (SLQ)")
    ax.set_ylabel("measured critical sparsity")
    ax.set_title("Theory vs experiment (CPU cases)")
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, alpha=0.3)
    _save(fig, path, tight=True)
    return fig


def plot_case_curve(case: dict, ax: Any = None, path: Any = None):
    """One case along the one-shot pruning path: test accuracy (left axis; the grid of
    ``case["curve"]`` merged with the threshold search's ``threshold_points``) and training loss
    (right axis, log, with ``L* + ε`` dotted), the prediction (SLQ, and exact eigenvalues where
    known) with its window, the measured one-shot and re-fit thresholds; zoomed to
    ``s ≥ min(lower, measured) − 0.05``. ``case``: a network case dict (``name``, ``dim``,
    ``curve`` with ``sparsity``/``accuracy``/``train_loss``, ``lower``, ``upper``, ``predicted``,
    ``measured_oneshot``, ``dense_metric``, ``train_loss``, ``eps``; optionally
    ``predicted_exact``, ``measured_refit_loss``, ``threshold_points``)."""
    if not isinstance(case, dict):
        raise TypeError(f"case must be a case dict, got {type(case).__name__}")
    fig, ax = new_axes(ax, (6.8, 4.2))
    cv = case["curve"]
    s = np.asarray(cv["sparsity"])
    ax.axvspan(case["lower"], case["upper"], color=_PRED_COLOR, alpha=0.12, label="predicted window")
    ax.axvline(case["predicted"], color=_PRED_COLOR, lw=1.5, label=f"predicted (SLQ) {case['predicted']:.3f}")
    if case.get("predicted_exact") is not None:
        ax.axvline(case["predicted_exact"], color=_PRED_COLOR, lw=1, ls=":",
                   label=f"predicted (exact eig.) {case['predicted_exact']:.3f}")
    ax.axvline(case["measured_oneshot"], color="k", ls="--", lw=1.3,
               label=f"measured one-shot {case['measured_oneshot']:.3f}")
    if case.get("measured_refit_loss") is not None:
        ax.axvline(case["measured_refit_loss"], color="tab:purple", ls="-.", lw=1.2,
                   label=f"measured re-fit (L ≤ L*+ε) {case['measured_refit_loss']:.3f}")
    pts = sorted(list(zip(s.tolist(), cv["accuracy"])) + [tuple(p) for p in case.get("threshold_points", [])])
    ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", ms=3, color="tab:blue",
            label="test accuracy (one-shot)")
    ax.axhline(case["dense_metric"], color="gray", ls=":", lw=0.8)
    ax.set_xlabel("sparsity s")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.semilogy(s, cv["train_loss"], color="tab:orange", lw=1, label="train loss")
    ax2.axhline(case["train_loss"] + case["eps"], color="tab:orange", ls=":", lw=0.8)
    ax2.set_ylabel("train loss (log); dotted: L* + ε", color="tab:orange")
    ax.legend(fontsize="small", loc="lower left")
    x0 = max(0.0, min(case["lower"], case["measured_oneshot"]) - 0.05)
    ax.set_xlim(x0, 1.0)
    ax.set_title(f"{case['name']}: accuracy vs sparsity, D = {case['dim']} (zoomed to s ≥ {x0:.2f})")
    ax.grid(True, alpha=0.3)
    _save(fig, path, tight=True)
    return fig


def plot_l1_ablation(rows: Any, ax: Any = None, path: Any = None):
    """Critical sparsity against the l1 strength of training: the prediction (SLQ) with its
    window and the measured one-shot thresholds (accuracy ≥ dense, one-sample tolerance, loss
    criterion), and the re-fit threshold (loss criterion) when every row has it. ``rows``: dicts
    with ``l1``, ``lower``, ``upper``, ``predicted``, ``measured_oneshot``,
    ``measured_oneshot_tol1``, ``measured_loss`` and optionally ``measured_refit_loss``."""
    rows = list(rows)
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise TypeError("rows must be a non-empty sequence of ablation row dicts")
    fig, ax = new_axes(ax, (6.4, 4.2))
    x = np.arange(len(rows))
    ax.fill_between(x, [r["lower"] for r in rows], [r["upper"] for r in rows], color=_PRED_COLOR, alpha=0.12,
                    label="predicted window")
    ax.plot(x, [r["predicted"] for r in rows], "o-", color=_PRED_COLOR, label="predicted (SLQ)")
    ax.plot(x, [r["measured_oneshot"] for r in rows], "s--", color="k", label="one-shot (acc ≥ dense)")
    ax.plot(x, [r["measured_oneshot_tol1"] for r in rows], "^:", color="gray", label="one-shot (1 sample tol.)")
    ax.plot(x, [r["measured_loss"] for r in rows], "v:", color="tab:orange", label="one-shot (L ≤ L*+ε)")
    if all(r.get("measured_refit_loss") is not None for r in rows):
        ax.plot(x, [r["measured_refit_loss"] for r in rows], "d-.", color="tab:purple",
                label="re-fit 100 steps (L ≤ L*+ε)")
    ax.set_xticks(x, [f"{r['l1']:g}" for r in rows])
    ax.set_xlabel("l1 strength λ₁ (digits MLP 64-64-32-10)")
    ax.set_ylabel("critical sparsity")
    ax.set_title("l1 strength: theory tracks one-shot only in the strong-l1 regime")
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, alpha=0.3)
    _save(fig, path, tight=True)
    return fig


def plot_oneshot_study(cases: Any, path: Any = None):
    """The one-shot study (studies/oneshot): left, paper s* (open) and one-shot estimate (filled)
    against the measured one-shot threshold, the measurement window as a horizontal error bar
    (``applies`` True in green); right, |error| in points against l1. ``cases``: dicts with
    ``paper``, ``estimate``, ``measured``, ``window``, ``applies``, ``l1``, ``heldout``."""
    from matplotlib.figure import Figure

    cases = [c for c in cases if isinstance(c, dict) and c.get("dense_acc", 1) >= 0.5]
    if not cases:
        raise TypeError("cases must be a non-empty sequence of case dicts")
    fig = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    ax, bx = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1], "k-", lw=0.8)
    for c in cases:
        m, (lo, hi) = c["measured"], c["window"]
        err = [[max(m - lo, 0)], [max(hi - m, 0)]]
        col = "tab:green" if c["applies"] else "tab:red"
        ax.errorbar([m], [c["paper"]], xerr=err, fmt="o", mfc="none", color=col, ms=5, lw=0.6)
        ax.errorbar([m], [c["estimate"]], xerr=err, fmt="^" if c["heldout"] else "o", color="tab:blue", ms=4, lw=0.6)
    for lab, kw in (("paper s*, applies", dict(marker="o", mfc="none", color="tab:green")),
                    ("paper s*, does not apply", dict(marker="o", mfc="none", color="tab:red")),
                    ("predict_oneshot (▲ held-out)", dict(marker="o", color="tab:blue"))):
        ax.plot([], [], ls="", label=lab, **kw)
    ax.set(xlabel="measured one-shot threshold (bar: measurement window)", ylabel="predicted / estimated",
           title="Prediction and estimate vs measurement")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    l1s = sorted({c["l1"] for c in cases})
    pos = {v: i for i, v in enumerate(l1s)}
    rng = np.random.default_rng(0)
    for key, col, dx in (("paper", _PRED_COLOR, -0.12), ("estimate", "tab:blue", 0.12)):
        xs = [pos[c["l1"]] + dx + rng.uniform(-0.05, 0.05) for c in cases]
        bx.plot(xs, [abs(c[key] - c["measured"]) * 100 for c in cases], "o", color=col, ms=4, alpha=0.7,
                label="paper s*" if key == "paper" else "predict_oneshot")
    bx.set_xticks(range(len(l1s)), [f"{v:g}" for v in l1s])
    bx.set_yscale("symlog", linthresh=1)
    bx.set_ylim(bottom=0)
    bx.axhline(3, color="k", ls=":", lw=0.8)
    bx.set(xlabel="l1 strength of training", ylabel="|error| (points)", title="Error vs l1")
    bx.legend(fontsize="small")
    bx.grid(True, alpha=0.3)
    _save(fig, path)
    return fig
