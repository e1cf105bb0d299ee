"""Layer 1, linear algebra: operators (dense, SciPy, the dataset-level Hessian) and the spectral
estimators on them (stochastic Lanczos quadrature, traces, extreme eigenpairs).

Every estimator accepts anything :func:`as_operator` accepts. Products are taken with blocks of
columns, so that ``K`` vectors cost one pass over the data; recurrences, dot products and small
eigenproblems run in float64 whatever the operator's dtype (THEORY §6).

``phasetrans.linalg.trace`` is the function :func:`trace`; the estimators behind it are
:func:`hutchinson`, :func:`hutchpp` and :func:`xtrace` (``from phasetrans.linalg.trace import
hutchpp`` works too).
"""

from .density import Estimate, SpectralDensity
from .eigs import Eigen, top_eigenvalues
from .hessian import HessianOperator
from .lanczos import Lanczos
from .operator import (
    DenseOperator,
    FunctionOperator,
    Operator,
    ScipyOperator,
    all_finite,
    as_operator,
)
from .probes import rademacher
from .slq import slq
from .trace import hutchinson, hutchpp, trace, xtrace

__all__ = [
    "Operator", "DenseOperator", "ScipyOperator", "FunctionOperator", "HessianOperator", "as_operator", "all_finite",
    "Estimate", "SpectralDensity", "Eigen", "slq", "trace", "hutchinson", "hutchpp", "xtrace",
    "top_eigenvalues", "Lanczos", "rademacher",
]
