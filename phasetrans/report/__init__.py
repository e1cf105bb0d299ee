"""Layer 7, the report: :func:`validate` (train, predict, prune, compare as a list of stages),
its result :class:`Report` with the measurements it is made of (:func:`pruning_curve`,
:func:`layer_kept_fractions`), and :mod:`~phasetrans.report.plots`, every figure of the library."""

from . import plots
from .report import Report, layer_kept_fractions, pruning_curve
from .validate import validate

__all__ = ["Report", "validate", "pruning_curve", "layer_kept_fractions", "plots"]
