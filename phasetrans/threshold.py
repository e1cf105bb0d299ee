"""Transition shim: thresholds moved to :mod:`phasetrans.prune.threshold`, re-fit strategies to
:mod:`phasetrans.prune.refit` and ``sweep`` to :mod:`phasetrans.prune.sweep` (issue 14); the
coordinator removes this file."""

from .prune.refit import as_metric as _metric  # noqa: F401
from .prune.refit import pruned_metric as _evaluate_pruned  # noqa: F401
from .prune.refit import refit_steps  # noqa: F401
from .prune.sweep import _HEADER_KIND, sweep  # noqa: F401
from .prune.sweep import read_sweep_log as _read_sweep  # noqa: F401
from .prune.threshold import Threshold, find_loss_threshold, find_threshold  # noqa: F401

__all__ = ["Threshold", "find_threshold", "find_loss_threshold", "sweep"]
