"""Figures of one run: the spectrum, the crossing (the paper's figure), the prediction (crossing
and quadrature), the pruning curve, the per-layer kept fractions; :func:`plot_report` writes the
files of a ``Report`` and :func:`plot_overview` draws all panels in one figure. Each takes the
result, its ``to_dict()`` or the JSON file the tool wrote."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._base import (
    MEAS_COLOR,
    PRED_COLOR,
    REGIME,
    as_prediction,
    as_report,
    draw_applicability,
    is_report_dict,
    kept_fraction_axis,
    load_saved,
    new_axes,
    new_figure,
    plain_log_ticks,
    save,
    spectrum_of,
    titled,
)

_CROSSING_NOTE = REGIME + "; the window is the transition's sharpness, not an error bar"

__all__ = ["FIGURE_NAMES", "plot_spectrum", "plot_crossing", "plot_prediction", "plot_pruning_curve",
           "plot_layers", "plot_report", "plot_overview", "plot_saved", "plot_threshold_spread"]

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
    ``λ = 0`` marked. ``spectrum``: a ``SpectralDensity`` or a ``Prediction``/``Report`` holding one
    (or their ``to_dict()``, or the JSON file of ``phasetrans spectrum``/``predict``/``validate``).

    ``marks=False``: the density line alone, as :meth:`SpectralDensity.plot` draws it (``log``
    chooses the axis; floored at 1e-12 of the peak), no title, legend or rug. ``pyplot=True``
    (without ``ax``): a new figure through pyplot instead of a bare Agg ``Figure``.
    ``line_kwargs`` go to the density line's ``ax.plot``. Returns the figure."""
    import torch

    spec = spectrum_of(spectrum)
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
        save(fig, path)
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
    titled(ax, title or f"Hessian spectrum, D = {spec.dim}  (mass at λ < 0: {neg:.1%})",
           "Hessian at the trained w* (prunable weights); Φ uses the SLQ nodes, not this "
           "smoothing; " + REGIME)
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(True, alpha=0.3)
    save(fig, path)
    return fig


def plot_crossing(prediction: Any, ax: Any = None, path: Any = None):
    """Φ(R) (theory) against s(R) (the magnitude curve of the trained weights) and the
    predicted critical sparsity at their crossing, with the kinematic window shaded; the R axis
    runs to three times the crossing radius (beyond it Φ and s(R) only flatten out).
    ``prediction``: a ``Prediction`` or a ``Report`` (or their dicts / JSON files)."""
    pred = as_prediction(prediction)
    fig, ax = new_axes(ax, (6.4, 4.0))
    if str(pred.method).startswith("oneshot"):
        return _oneshot_panel(pred, fig, ax, path)
    c = pred.curve
    R, phi, s = np.asarray(c.radius), np.asarray(c.phi), np.asarray(c.sparsity)
    ax.plot(R, phi, color="tab:green", lw=1.6, label="Φ(R): normalised width of the sublevel set")
    ax.step(R, s, where="post", color="tab:blue", lw=1.6, label="s(R): magnitude pruning of w*")
    ax.axhspan(pred.lower, pred.upper, color=PRED_COLOR, alpha=0.12,
               label=f"kinematic window [{pred.lower:.3f}, {pred.upper:.3f}]")
    ax.plot([pred.radius], [pred.sparsity], "o", color=PRED_COLOR, ms=7,
            label=f"crossing s* = {pred.sparsity:.4f}")
    ax.axvline(pred.radius, color=PRED_COLOR, lw=0.8, ls="--")
    ax.set_xlabel("R = ‖w* − w^(s)‖₂  (distance to the pruned weights)")
    ax.set_ylabel("sparsity")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, _crossing_xmax(pred, R))
    titled(ax, f"Predicted critical sparsity  (ε = {pred.eps:.3g}, D = {pred.dim})", _CROSSING_NOTE)
    ax.legend(loc="best", fontsize="small")
    ax.grid(True, alpha=0.3)
    draw_applicability(ax, pred)
    save(fig, path)
    return fig


def _oneshot_panel(pred: Any, fig: Any, ax: Any, path: Any):
    """A one-shot estimate (``pt.predict_oneshot``): the training-loss change ΔL(s) evaluated
    along the pruning path against the tolerance τ, and the estimate."""
    s_, dl = np.array(pred.details["points"], dtype=float).reshape(-1, 2).T
    ax.plot(s_, dl, ".", color="tab:blue", label="ΔL(s) = L(w^(s)) − L(w*) evaluated")
    ax.axhline(pred.details["tau"], color="k", ls=":", label=f"τ = {pred.details['tau']:.3g}")
    ax.axvline(pred.sparsity, color=PRED_COLOR, label=f"estimate ŝ = {pred.sparsity:.4f}")
    ax.set_yscale("symlog", linthresh=pred.details["tau"])
    ax.set(xlabel="sparsity s", ylabel="training-loss change")
    titled(ax, f"One-shot estimate ({pred.method})",
           "a training-loss threshold: where pruning w* one-shot raises the loss by τ")
    ax.legend(fontsize="small", loc="upper left")
    draw_applicability(ax, pred)
    save(fig, path)
    return fig


def plot_prediction(prediction: Any, ax: Any = None, path: Any = None):
    """A prediction in two panels: the crossing (:func:`plot_crossing`) and the spectrum it was
    made from: the quadrature (pooled SLQ nodes against their masses, log) or, for an array of
    exact eigenvalues, a histogram with log counts; the method (``exact`` root or the published
    pipeline emulated) in the title. ``prediction``: a ``Prediction`` or ``Report`` (or their
    dicts / JSON files). ``ax``: ``None`` (a new figure), one ``Axes`` (the crossing only) or a
    pair of ``Axes``. Returns the figure; :meth:`Prediction.plot` draws this."""
    from matplotlib.axes import Axes

    pred = as_prediction(prediction)
    if ax is None:
        fig, (ax0, ax1) = new_figure((11.5, 4.4), 1, 2)
    elif isinstance(ax, Axes):
        fig, ax0, ax1 = ax.figure, ax, None
    elif isinstance(ax, (list, tuple, np.ndarray)) and len(np.ravel(ax)) == 2 and \
            all(isinstance(a, Axes) for a in np.ravel(ax)):
        ax0, ax1 = np.ravel(ax)
        fig = ax0.figure
    else:
        raise TypeError(f"ax must be None, a matplotlib Axes or a pair of Axes, got {type(ax).__name__}")
    plot_crossing(pred, ax=ax0)
    oneshot = str(pred.method).startswith("oneshot")
    if not oneshot:
        titled(ax0, f"Critical sparsity ({pred.method}): ε = {pred.eps:.3g}, D = {pred.dim}",
               _CROSSING_NOTE)
    if ax1 is not None and not oneshot:
        _quadrature_panel(pred, ax1)
    elif ax1 is not None:
        ax1.set_axis_off()
    save(fig, path)
    return fig


def _quadrature_panel(pred: Any, ax: Any) -> None:
    """The spectrum behind ``pred``: log-count histogram of exact eigenvalues, else the pooled
    quadrature (node, mass) pairs of positive mass on a log mass axis."""
    from ...theory.spectrum import parse_spectrum

    if pred.spectrum is None:
        ax.text(0.5, 0.5, "no spectrum stored with this prediction", ha="center", va="center",
                transform=ax.transAxes, color="0.35")
        ax.set_axis_off()
        return
    spec = parse_spectrum(pred.spectrum, None)
    nodes, masses = spec.pooled()
    if spec.kind == "eigenvalues":
        ax.hist(nodes, bins=min(100, max(10, nodes.size // 10)), log=True, color="tab:gray")
        ax.set_ylabel("count (log scale)")
    else:
        keep = masses > 0
        ax.semilogy(nodes[keep], masses[keep], ".", color="tab:gray",
                    label=f"{spec.num_probes} probe(s) × {nodes.size // spec.num_probes} nodes")
        ax.set_ylabel("quadrature mass τ/K (log scale)")
        ax.legend(loc="upper right", fontsize="small")
    ax.axvline(0.0, color="black", lw=0.8, ls=":")
    ax.set_xlabel("Hessian eigenvalue λ (signed)")
    ax.grid(True, alpha=0.3)
    titled(ax, f"Hessian spectrum ({spec.kind}), D = {pred.dim}",
           f"Φ weighs each node by 1/(1 + |λ|R²/2ε) (negative eigenvalues: {pred.negative!r}); "
           "valid while the loss is ≈ quadratic out to R")


def _crossing_xmax(pred: Any, R: np.ndarray) -> float:
    """Three times the crossing radius (the larger of ``R(s*)`` and the jump it happens at),
    within the computed curve; the whole curve when the crossing is at ``R = 0``."""
    r_max = float(np.nanmax(R)) if R.size else 1.0
    crossing = max(float(pred.radius), float((pred.details or {}).get("crossing_radius") or 0.0))
    return min(r_max, 3.0 * crossing) if crossing > 0 else r_max


def plot_pruning_curve(report: Any, ax: Any = None, path: Any = None):
    """Test accuracy (left axis) and test loss (right axis, log, plain tick labels) of one-shot
    magnitude pruning against sparsity; the predicted sparsity (line) with its kinematic window
    (shaded), the measured threshold (dashed) and the dense accuracy (dotted).

    The sparsity axis is spaced as ``−log10(1 − s)`` (:func:`kept_fraction_axis`): the region
    where pruning breaks (s ≳ 0.85) gets most of the width, ``s = 0`` stays on the axis; it
    ends halfway (in kept fraction) past the last point or marker below ``s = 1`` (``s = 1``, nothing
    kept, is off the axis). The legend sits below the axes, clear of both curves.
    ``report``: a ``Report`` (or its dict / JSON file)."""
    rep = as_report(report)
    own = ax is None
    fig, ax = new_axes(ax, (6.8, 4.8))
    curve = rep.curve
    s = np.asarray(curve["sparsity"], dtype=float)
    acc = np.asarray(curve["accuracy"], dtype=float)
    pred, thr = rep.prediction, rep.threshold
    refit = getattr(rep, "refit_threshold", None)
    marks = [pred.upper, thr.sparsity] + ([refit.sparsity] if refit is not None else [])
    kept = [1.0 - x for x in list(s) + marks if x < 1.0]
    s_max = 1.0 - 0.5 * min(kept) if kept else 0.999
    kept_fraction_axis(ax, s_max)
    shown = s < 1.0
    ax.axvspan(pred.lower, min(pred.upper, s_max), color=PRED_COLOR, alpha=0.12, label="predicted window")
    ax.axvline(pred.sparsity, color=PRED_COLOR, lw=1.6,
               label=f"predicted s* = {pred.sparsity:.3f}")
    ax.axvline(thr.sparsity, color=MEAS_COLOR, lw=1.6, ls="--",
               label=f"measured threshold = {thr.sparsity:.3f}")
    ax.axhline(thr.baseline, color="tab:gray", lw=0.8, ls=":", label=f"dense accuracy {thr.baseline:.3f}")
    ax.plot(s[shown], acc[shown], ".-", color="tab:blue", lw=1.3, ms=4, label="test accuracy")
    if refit is not None and refit.points:
        rs, ra = zip(*[p for p in refit.points if p[0] < 1.0] or [(np.nan, np.nan)])
        ax.plot(rs, ra, "x", color="tab:purple", ms=5, label=f"after re-fit (threshold {refit.sparsity:.3f})")
    ax.set_xlabel("sparsity s (spaced as −log(1 − s): each “nine” of sparsity gets equal width)")
    ax.set_ylabel("test accuracy", color="tab:blue")
    ax.set_xlim(0.0, s_max)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if "loss" in curve:
        ax2 = ax.twinx()
        loss = np.asarray(curve["loss"], dtype=float)
        (line,) = ax2.plot(s[shown], loss[shown], ".-", color="tab:orange", lw=1.0, ms=3, alpha=0.9,
                           label="test loss")
        if np.all(loss[shown] > 0):
            ax2.set_yscale("log")
            plain_log_ticks(ax2.yaxis)
            ax2.set_ylabel("test loss (log scale)", color="tab:orange")
        else:
            ax2.set_ylabel("test loss", color="tab:orange")
        handles.append(line)
        labels.append("test loss")
    if own:
        fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize="small")
    else:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3,
                  fontsize="small")
    titled(ax, "One-shot global magnitude pruning: theory vs measurement",
           REGIME + "; no re-fit (the re-fit marks are outside the theory)")
    draw_applicability(ax, pred, "center left")  # clear of both curves
    save(fig, path)
    return fig


def plot_layers(report: Any, ax: Any = None, path: Any = None):
    """Per-layer kept fraction (log scale) at the measured threshold and at the predicted
    sparsity; the global kept fraction as a dashed line. A bar near zero is a collapsing layer:
    then the threshold is set by that layer, not by the whole network. ``report``: a ``Report``
    (or its dict / JSON file)."""
    rep = as_report(report)
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
    ax.bar(x + width / 2, kp, width, color=PRED_COLOR, alpha=0.7,
           label=f"at predicted s* = {layers['predicted_sparsity']:.3f}")
    ax.axhline(1 - layers["threshold_sparsity"], color="0.35", ls="--", lw=1)
    ax.axhline(1 - layers["predicted_sparsity"], color=PRED_COLOR, ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1.5)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{n}\n({at_t[n]['total']} weights)" for n in names], fontsize="small")
    ax.set_ylabel("kept fraction of the layer (log scale)")
    ax.set_xlabel("prunable layer; dashed lines: global kept fraction")
    titled(ax, "Per-layer kept fraction after global magnitude pruning",
           "the theory sees all prunable weights as one vector (global pruning); a layer cut off "
           "(bar ≈ 0) breaks the network in a way it does not model")
    ax.legend(loc="lower left", fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    save(fig, path)
    return fig


FIGURE_NAMES = {
    "spectrum": "spectrum.png",
    "crossing": "crossing.png",
    "pruning_curve": "pruning_curve.png",
    "layers": "layers.png",
    "threshold_spread": "threshold_spread.png",
}


def plot_report(report: Any, directory: str | os.PathLike) -> list[Path]:
    """Write the figures of a ``Report`` into ``directory`` (created if needed):
    ``spectrum.png`` (only when the prediction used SLQ), ``crossing.png``,
    ``pruning_curve.png``, ``layers.png``, and ``threshold_spread.png`` when the report has a
    spread (``validate(spread=True)``). Returns the paths written. ``report``: a ``Report``,
    its dict or its JSON file (``report.json``): the figures redrawn from a saved run."""
    rep = as_report(report)
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or os.PathLike, got {type(directory).__name__}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        spec = spectrum_of(rep)
    except TypeError:
        spec = None
    if spec is not None:
        plot_spectrum(spec, path=d / FIGURE_NAMES["spectrum"])
        written.append(d / FIGURE_NAMES["spectrum"])
    for key, fn in (("crossing", plot_crossing), ("pruning_curve", plot_pruning_curve),
                    ("layers", plot_layers)):
        fn(rep, path=d / FIGURE_NAMES[key])
        written.append(d / FIGURE_NAMES[key])
    if getattr(rep, "spread", None) is not None:
        plot_threshold_spread(rep.spread, path=d / FIGURE_NAMES["threshold_spread"])
        written.append(d / FIGURE_NAMES["threshold_spread"])
    return written


def plot_overview(report: Any, path: Any = None):
    """One 2×2 figure: spectrum, crossing, pruning curve, layers. Returns the figure."""
    rep = as_report(report)
    fig, axes = new_figure((14, 10), 2, 2, dpi=100)
    try:
        plot_spectrum(spectrum_of(rep), ax=axes[0, 0])
    except TypeError:
        axes[0, 0].set_axis_off()
    plot_crossing(rep, ax=axes[0, 1])
    plot_pruning_curve(rep, ax=axes[1, 0])
    plot_layers(rep, ax=axes[1, 1])
    save(fig, path)
    return fig




def plot_saved(result: Any, directory: str | os.PathLike) -> list[Path]:
    """Redraw, into ``directory``, the figures the tool drew for a saved result: ``result`` is a
    JSON file (or its parsed dict) of a report (``report.json`` of :func:`validate`, the
    ``--json`` output of ``phasetrans validate``/``demo``: :func:`plot_report`), a prediction
    (``prediction.json`` of ``phasetrans predict``: ``crossing.png``, and ``spectrum.png`` for SLQ)
    or a spectrum (``spectrum.json`` of ``phasetrans spectrum``: ``spectrum.png``). Returns the
    paths written (the same file names the run wrote)."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or os.PathLike, got {type(directory).__name__}")
    d = load_saved(result)
    if not isinstance(d, dict):
        raise TypeError(f"result must be a saved result (a .json file or its dict), got {type(result).__name__}")
    if isinstance(d.get("report"), dict) and "prediction" not in d:
        d = d["report"]  # `phasetrans demo --json`
    if is_report_dict(d):
        return plot_report(d, directory)
    out = Path(directory)
    if "curve" in d and "sparsity" in d:
        pred = as_prediction(d)
        out.mkdir(parents=True, exist_ok=True)
        plot_crossing(pred, path=out / FIGURE_NAMES["crossing"])
        written = [out / FIGURE_NAMES["crossing"]]
        if hasattr(pred.spectrum, "density"):
            plot_spectrum(pred.spectrum, path=out / FIGURE_NAMES["spectrum"])
            written.append(out / FIGURE_NAMES["spectrum"])
        return written
    if isinstance(d.get("spectrum"), dict) or {"nodes", "weights", "dim"} <= d.keys():
        out.mkdir(parents=True, exist_ok=True)
        plot_spectrum(spectrum_of(d), path=out / FIGURE_NAMES["spectrum"])
        return [out / FIGURE_NAMES["spectrum"]]
    raise ValueError("result is not a saved report, prediction or spectrum (expected the JSON written "
                     "by validate / phasetrans validate, phasetrans predict or phasetrans spectrum)")


_SPREAD_NOTE = ("the measured threshold's own uncertainty (bootstrap over the evaluation set): no "
                "estimate that does not see that set, the theory included, can beat the error floor on average")


def plot_threshold_spread(spread: Any, path: Any = None):
    """How precisely an evaluation set measures the one-shot threshold
    (:func:`~phasetrans.threshold_spread`, THEORY §9). Left: the set's accuracy along the pruning
    grid, the dense accuracy minus the tolerance dotted, the measurement window (first failure to
    last holding) shaded and ``find_threshold``'s value dashed. Right: for each rule, the bootstrap
    draws as a histogram (when the result has them: a ``ThresholdSpread`` or
    ``to_dict(draws=True)``) with its ``level`` interval and the error floor in the legend.
    ``spread``: a ``ThresholdSpread`` or its ``to_dict()``."""
    sp = spread.to_dict(draws=True) if hasattr(spread, "to_dict") else spread
    if not isinstance(sp, dict) or not {"sparsity", "accuracy", "window", "intervals", "error_floor"} <= set(sp):
        raise TypeError("spread must be a ThresholdSpread or its to_dict()")
    fig, (ax, bx) = new_figure((11, 4.2), 1, 2, dpi=100)
    s, acc = np.asarray(sp["sparsity"]), np.asarray(sp["accuracy"])
    lo, hi = sp["window"]
    ax.axvspan(lo, hi, color="tab:orange", alpha=0.2, label=f"window [{lo:.3f}, {hi:.3f}]")
    ax.plot(s, acc, "-", color=MEAS_COLOR, lw=1)
    ax.axhline(sp["baseline"] - sp["tolerance"], color="k", ls=":", lw=0.8, label="dense − tolerance")
    ax.axvline(sp["measured"], color="tab:blue", ls="--", lw=1, label=f"find_threshold {sp['measured']:.3f}")
    ax.set(xlabel="sparsity", ylabel="accuracy on the evaluation set", ylim=(max(0.0, acc.min() - 0.02), 1.0))
    titled(ax, "One-shot pruning curve", _SPREAD_NOTE)
    ax.legend(fontsize="small", loc="lower left")
    ax.grid(True, alpha=0.3)
    colors = {"find_threshold": "tab:blue", "first_failure": "tab:green", "last_holding": "tab:purple"}
    draws = sp.get("draws") or {}
    for i, (rule, (a, b)) in enumerate(sp["intervals"].items()):
        col = colors.get(rule, f"C{i}")
        label = f"{rule}: {100 * sp['level']:.0f}% [{a:.3f}, {b:.3f}], floor {100 * sp['error_floor'][rule]:.1f} pts"
        if rule in draws:
            bx.hist(draws[rule], bins=np.linspace(0, 1, 101), color=col, alpha=0.45, label=label)
        else:
            bx.plot([a, b], [i + 1, i + 1], "-", color=col, lw=4, label=label)
    bx.set(xlabel="threshold on a resampled evaluation set", ylabel="resamples" if draws else "")
    titled(bx, "Bootstrap spread of the measurement", _SPREAD_NOTE)
    bx.legend(fontsize="small")
    bx.grid(True, alpha=0.3)
    save(fig, path)
    return fig
