"""Transition shim: :func:`validate` lives in :mod:`phasetrans.report.validate`, :class:`Report`,
:func:`pruning_curve` and :func:`layer_kept_fractions` in :mod:`phasetrans.report.report`."""

from ._io import atomic_write_text  # noqa: F401  (transition shim)
from .report.report import Report, layer_kept_fractions, pruning_curve  # noqa: F401  (transition shim)
from .report.validate import validate  # noqa: F401  (transition shim)

__all__ = ["Report", "validate", "layer_kept_fractions", "pruning_curve"]
