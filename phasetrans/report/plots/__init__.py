"""Every figure of the library (matplotlib, PNG): thin views of computed results.

Figures of one run (:mod:`.run`):

- :func:`plot_spectrum`: the Hessian spectral density over the signed spectrum, log-scale
  density (a smoothed view of the SLQ quadrature; the nodes themselves as a rug).
- :func:`plot_crossing`: Φ(R) against the magnitude curve s(R) and their crossing s*
  (Zhang et al., NeurIPS 2024, the paper's figure).
- :func:`plot_prediction`: the crossing and the spectrum's quadrature (or, for exact
  eigenvalues, a log-count histogram) side by side; ``Prediction.plot`` draws it.
- :func:`plot_pruning_curve`: test accuracy and test loss against sparsity (the axis spaced as
  ``−log(1 − s)``), the predicted sparsity with its kinematic window shaded, the measured
  threshold marked.
- :func:`plot_layers`: per-layer kept fraction at the measured threshold and at the prediction
  (is the threshold driven by a layer collapsing?).
- :func:`plot_report` writes the figures of a ``Report`` (also redrawn from its saved JSON:
  ``phasetrans plot report.json``); :func:`plot_saved` redraws the figures of any saved result
  (report, prediction or spectrum JSON); :func:`plot_overview` one figure with all panels.

Figures of many runs (:mod:`.study`, drawn by ``python -m studies.validation`` from its case
dicts): :func:`plot_prediction_scatter`, :func:`plot_case_curve`, :func:`plot_l1_ablation`.

Every function takes ``ax=None`` (a new figure) or a matplotlib ``Axes``, and ``path`` to save a
PNG; it returns the ``Figure``. Results may be given as objects, their ``to_dict()`` or the JSON
files the tool wrote. Figures are built without pyplot (Agg canvas: no GUI backend, nothing
accumulates in pyplot) as :class:`InlineFigure`, which Jupyter shows inline by itself. Every
figure carries a small note on where the theory applies.
"""

from ._base import applicability_note, new_axes, new_figure, save_figure_atomic
from .run import (
    FIGURE_NAMES,
    plot_crossing,
    plot_layers,
    plot_overview,
    plot_prediction,
    plot_pruning_curve,
    plot_report,
    plot_saved,
    plot_spectrum,
    plot_threshold_spread,
)
from .study import (
    plot_case_curve,
    plot_criteria,
    plot_l1_ablation,
    plot_measurement_floor,
    plot_oneshot_study,
    plot_prediction_scatter,
)

__all__ = [
    "plot_spectrum",
    "plot_crossing",
    "plot_prediction",
    "plot_pruning_curve",
    "plot_layers",
    "plot_report",
    "plot_overview",
    "plot_saved",
    "plot_threshold_spread",
    "plot_prediction_scatter",
    "plot_case_curve",
    "plot_l1_ablation",
    "plot_criteria",
    "plot_oneshot_study",
    "plot_measurement_floor",
    "applicability_note",
    "new_axes",
    "new_figure",
    "save_figure_atomic",
    "InlineFigure",
    "FIGURE_NAMES",
]


def __getattr__(name: str):
    """``InlineFigure`` on first use (importing it imports matplotlib, which ``import phasetrans``
    does not)."""
    if name == "InlineFigure":
        from ._inline import InlineFigure

        return InlineFigure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
