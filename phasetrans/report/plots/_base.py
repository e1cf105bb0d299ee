"""What every figure of :mod:`phasetrans.report.plots` shares: the figure and its axes, atomic
PNG writes, the note saying where the theory applies, plain tick labels on log axes, the
sparsity axis that zooms the high-sparsity end, and the inputs (results, their dicts, or the
JSON files the tool wrote)."""

from __future__ import annotations

import io
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ..._io import atomic_write_bytes
from ...theory.applicability import MAX_RATIO, SPIKE_MARGIN

__all__ = ["new_axes", "new_figure", "save_figure_atomic", "save", "titled", "plain_log_ticks",
           "kept_fraction_axis", "as_prediction", "as_report", "spectrum_of", "PRED_COLOR",
           "MEAS_COLOR", "REGIME", "load_saved", "is_report_dict"]

PRED_COLOR = "tab:red"
MEAS_COLOR = "black"
#: Where the theory applies (Zhang et al., NeurIPS 2024; THEORY §1): the note on every figure.
REGIME = ("the theory holds for one-shot magnitude pruning of a trained minimum w* while the loss "
          "is ≈ quadratic out to the pruning distance R (strong l1: most weights ≈ 0)")


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, dpi: int = 110):
    """``(figure, axes)``: a new :class:`~phasetrans.report.plots._inline.InlineFigure` (Agg
    canvas, constrained layout, shown inline by Jupyter) with ``nrows × ncols`` axes."""
    from ._inline import InlineFigure

    fig = InlineFigure(figsize=figsize, dpi=dpi, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=True)


def new_axes(ax: Any, figsize: tuple[float, float]):
    """``(figure, axes)``: a new figure of ``figsize`` inches (dpi 110, constrained layout, shown
    inline in Jupyter) with one ``Axes`` when ``ax`` is ``None``, else ``ax`` and its figure
    (``ax`` must be an ``Axes``)."""
    from matplotlib.axes import Axes

    if ax is None:
        return new_figure(figsize)
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be None or a matplotlib Axes, got {type(ax).__name__}")
    return ax.figure, ax


def save_figure_atomic(fig: Any, path: Any, **savefig_kwargs: Any) -> Path:
    """Render ``fig`` in memory and write it atomically (temp file + rename): a reader never
    sees a half-written image, and an interrupted run leaves the old file intact."""
    buffer = io.BytesIO()
    fig.savefig(buffer, **savefig_kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


def save(fig: Any, path: Any, tight: bool = False) -> None:
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


def titled(ax: Any, title: str, note: str = REGIME, width: int | None = None) -> None:
    """The title and, between it and the axes in small grey type, ``note``: where the theory
    applies (wrapped at ``width`` characters, by default what fits the axes' width; the title is
    lifted above it). The note is an annotation with ``gid="applicability"``."""
    if width is None:
        width = max(40, int(17 * ax.get_position().width * ax.figure.get_figwidth()))
    lines = textwrap.wrap(note, width) if note else []
    if lines:  # out of the layout: the title's pad holds its place (a long line must not shrink the axes)
        ax.annotate("\n".join(lines), xy=(0.0, 1.0), xycoords="axes fraction", xytext=(0, 4),
                    textcoords="offset points", ha="left", va="bottom", fontsize="x-small",
                    color="0.35", gid="applicability", annotation_clip=False).set_in_layout(False)
    ax.set_title(title, pad=6 + 9.5 * len(lines))


def plain_log_ticks(axis: Any) -> None:
    """Plain numbers (``1.45``, ``0.3``, ``20``) as the labels of a log ``axis``, never
    ``1.45 × 10⁰``: matplotlib's log formatter with the number printed by ``:g``."""
    from matplotlib.ticker import LogFormatter

    class _Plain(LogFormatter):
        def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
            return f"{x:g}"

    axis.set_major_formatter(_Plain(labelOnlyBase=False))
    axis.set_minor_formatter(_Plain(labelOnlyBase=False, minor_thresholds=(1.0, 0.5)))


_TICKS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999,
          0.9995, 0.9998, 0.9999, 0.99995, 0.99998, 0.99999)


def kept_fraction_axis(ax: Any, s_max: float) -> None:
    """Sparsity on the x axis, spaced as ``−log10(1 − s)`` (a log scale of the kept fraction): every
    "nine" of sparsity gets the same room (0 → 0.9 as much as 0.9 → 0.99), so the region where
    one-shot pruning breaks (s ≳ 0.85) is not squeezed into the right edge, and ``s = 0`` (the
    dense model) stays on the axis (a logit axis would push it to −∞). Shown up to ``s_max < 1``;
    ticks read as sparsities."""
    from matplotlib.ticker import NullLocator

    kmin = 1.0 - s_max

    def forward(s: Any) -> Any:
        return -np.log10(np.clip(1.0 - np.asarray(s, dtype=float), kmin * 1e-3, None))

    def inverse(x: Any) -> Any:
        return 1.0 - 10.0 ** (-np.asarray(x, dtype=float))

    ax.set_xscale("function", functions=(forward, inverse))
    span, ticks = float(forward(s_max)), []
    for t in _TICKS:
        if t <= s_max and (not ticks or forward(t) - forward(ticks[-1]) >= span / 11):
            ticks.append(t)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(0.0, s_max)


# ------------------------------------------------------------------------------------------
# inputs: results, their dicts, or the JSON files the tool wrote
# ------------------------------------------------------------------------------------------
def load_saved(obj: Any) -> Any:
    """A str/path ending in ``.json``: its parsed content; anything else unchanged."""
    if isinstance(obj, (str, os.PathLike)) and str(obj).lower().endswith(".json"):
        path = Path(obj)
        if not path.is_file():
            raise ValueError(f"no such JSON file: {path}")
        return json.loads(path.read_text())
    return obj


def is_report_dict(d: Any) -> bool:
    return isinstance(d, dict) and "prediction" in d and "threshold" in d


def as_report(report: Any) -> Any:
    """A ``Report``, from itself, its ``to_dict()`` or its JSON file (``report.json``)."""
    report = load_saved(report)
    if is_report_dict(report):
        from ..report import Report

        report = Report.from_dict(report)
    for attr in ("prediction", "threshold", "curve", "layers"):
        if not hasattr(report, attr):
            raise TypeError(f"report must be a phasetrans Report (or its dict / JSON file), "
                            f"got {type(report).__name__}")
    return report


def as_prediction(prediction: Any, name: str = "prediction") -> Any:
    """A ``Prediction``, from itself, a ``Report`` holding one, their dicts or JSON files."""
    prediction = load_saved(prediction)
    if is_report_dict(prediction) or (hasattr(prediction, "prediction") and hasattr(prediction, "threshold")):
        prediction = as_report(prediction).prediction
    elif isinstance(prediction, dict) and "curve" in prediction and "sparsity" in prediction:
        from ...theory.critical import Prediction

        prediction = Prediction.from_dict(prediction)
    for attr in ("sparsity", "lower", "upper", "radius", "curve"):
        if not hasattr(prediction, attr):
            raise TypeError(f"{name} must be a phasetrans Prediction (or its dict / JSON file), "
                            f"got {type(prediction).__name__}")
    return prediction


def spectrum_of(spectrum: Any) -> Any:
    """The ``SpectralDensity`` of ``spectrum`` (itself, its dict, a ``Prediction``/``Report`` made
    with SLQ, their dicts, or the JSON file of ``phasetrans spectrum`` / ``predict`` / ``validate``)."""
    spectrum = load_saved(spectrum)
    if isinstance(spectrum, dict):
        if isinstance(spectrum.get("spectrum"), dict) and "curve" not in spectrum:
            spectrum = spectrum["spectrum"]  # the JSON of `phasetrans spectrum`
        if "nodes" in spectrum and "weights" in spectrum and "dim" in spectrum:
            from ...linalg.density import SpectralDensity

            spectrum = SpectralDensity.from_dict(spectrum)
        else:
            spectrum = as_prediction(spectrum, "spectrum")
    if hasattr(spectrum, "prediction"):  # a Report
        spectrum = spectrum.prediction
    if hasattr(spectrum, "curve") and hasattr(spectrum, "spectrum"):  # a Prediction
        spectrum = spectrum.spectrum
    if not (hasattr(spectrum, "nodes") and hasattr(spectrum, "weights") and hasattr(spectrum, "density")):
        raise TypeError(
            "spectrum must be a SpectralDensity (from slq), or a Prediction / Report made with SLQ "
            f"(or their dicts / JSON files), got {type(spectrum).__name__}"
        )
    return spectrum


def applicability_note(prediction: Any) -> str | None:
    """The figures' one-line verdict: "theory applies / does not apply: ..." from
    ``Prediction.applies`` (THEORY §7); ``None`` where it was not assessed."""
    applies = getattr(prediction, "applies", None)
    if applies is None:
        return None
    a = prediction.details.get("applicability", {})
    if str(prediction.method).startswith("oneshot"):
        return f"{prediction.method} estimate ({'model checked' if applies else 'model off: use forward'})"
    ratio, cut = a.get("ratio", float("nan")), a.get("max_ratio", MAX_RATIO)
    spike, margin = a.get("spike_mass", float("nan")), a.get("spike_margin", SPIKE_MARGIN)
    signals = (f"ΔL₂(s*)/ε = {ratio:.2f} (cut {cut:g}), spike {spike:.2f} "
               f"(needs ≥ s* − {margin:g} = {prediction.sparsity - margin:.2f})")
    if applies:
        return f"theory applies: {signals}"
    return f"theory does not apply: {signals}; s* is an existence limit, use pt.predict_oneshot"


def draw_applicability(ax: Any, prediction: Any, corner: str = "lower left") -> None:
    """:func:`applicability_note` at ``corner`` of ``ax`` ("lower left", "center left", "upper
    right", ...), green where the theory applies."""
    note = applicability_note(prediction)
    if note:
        x, ha = (0.99, "right") if "right" in corner else (0.01, "left")
        y, va = {"upper": (0.99, "top"), "center": (0.5, "center")}.get(corner.split()[0],
                                                                        (0.01, "bottom"))
        ax.text(x, y, note, transform=ax.transAxes, fontsize="small", ha=ha, va=va,
                color="tab:green" if prediction.applies else "tab:red",
                bbox={"boxstyle": "round", "fc": "white", "ec": "none", "alpha": 0.85})
