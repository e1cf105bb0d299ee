"""Transition shim: the operators moved to :mod:`phasetrans.linalg` (``operator.py``,
``hessian.py``); this module re-exports the names imported from it before the split."""

# ruff: noqa: F401  (transition shim: names re-exported for their old importers)
from .linalg._empirical_risk import BATCHNORM_TYPES as _BATCHNORM_TYPES
from .linalg._graph_cache import GraphCache as _GraphCache
from .linalg.hessian import HessianOperator
from .linalg.operator import (
    DenseOperator,
    Operator,
    ScipyOperator,
    all_finite,
    as_operator,
)
from .linalg.operator import ScipyOperator as _ScipyOperator

__all__ = ["Operator", "DenseOperator", "HessianOperator", "as_operator"]
