"""Transition shim: the figures live in :mod:`phasetrans.report.plots`."""

from .report.plots import *  # noqa: F401,F403  (transition shim)
from .report.plots import (  # noqa: F401  (transition shim)
    FIGURE_NAMES,
    __all__,
    new_axes,
    save_figure_atomic,
)
from .report.plots import new_axes as _new_axes  # noqa: F401  (transition shim)
