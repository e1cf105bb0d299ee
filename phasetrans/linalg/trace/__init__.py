"""Randomised trace estimators, one a file, named after their papers, and :func:`trace`.

Each takes ``H`` (anything :func:`~phasetrans.linalg.operator.as_operator` accepts),
``num_matvecs`` products with Rademacher test vectors seeded by ``seed``, and ``block_size``
columns per product; each returns an :class:`~phasetrans.linalg.density.Estimate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ..._checks import check_choice
from ..._progress import progress_bar, resolve_progress
from ..density import Estimate
from ..operator import Operator, as_operator
from .hutchinson import hutchinson
from .hutchpp import hutchpp
from .xtrace import xtrace, xtrace_estimates

__all__ = ["trace", "TraceMethod", "ESTIMATORS", "hutchinson", "hutchpp", "xtrace", "xtrace_estimates"]

TraceMethod = Literal["hutchinson", "hutch++", "xtrace"]

ESTIMATORS: dict[str, Callable[..., Estimate]] = {
    "hutchinson": hutchinson,
    "hutch++": hutchpp,
    "xtrace": xtrace,
}


def trace(
    H: Any,
    method: TraceMethod = "hutchinson",
    num_matvecs: int = 100,
    seed: int = 0,
    block_size: int | None = None,
    progress: bool | None = None,
) -> Estimate:
    """Randomised trace estimate of ``H`` with ``num_matvecs`` products, Rademacher test vectors.

    - ``"hutchinson"`` (Hutchinson 1989): ``(1/m) Σ_i z_iᵀ H z_i``; stderr = sample std / sqrt(m).
    - ``"hutch++"`` (Meyer, Musco, Musco & Woodruff 2021): ``Q = orth(H S)`` from ``m/3`` vectors,
      ``tr(Qᵀ H Q) + (1/g) Σ_i g_iᵀ (I − QQᵀ) H (I − QQᵀ) g_i`` with the remaining ``g`` vectors;
      stderr = std of the ``g`` residual samples / sqrt(g) (the exact low-rank part has none).
    - ``"xtrace"`` (Epperly, Tropp & Webber 2024): the exchangeable estimator, mean over the
      ``m/2`` test vectors of the leave-one-out estimates ``tr(Q_iᵀHQ_i) + ω_iᵀ(I − Q_iQ_iᵀ)H(I −
      Q_iQ_iᵀ)ω_i``, ``Q_i = orth(H Ω_{−i})``; stderr = their std / sqrt(m/2) (its built-in error
      estimate).

    Products are taken ``block_size`` columns at a time (default: all at once, one data pass per
    stage: one for Hutchinson, two for Hutch++ and XTrace).

    ``progress``: a bar of the products (columns) on standard error (``None``: only when
    standard error is a terminal); the products and the estimate are the same either way.
    """
    op = as_operator(H)
    method = check_choice(method, "method", tuple(ESTIMATORS))
    show = resolve_progress(progress)
    if not show:
        return ESTIMATORS[method](op, num_matvecs=num_matvecs, seed=seed, block_size=block_size)
    with progress_bar(True, num_matvecs if isinstance(num_matvecs, int) else None,
                      f"trace ({method})", "product") as bar:
        return ESTIMATORS[method](_Counted(op, bar), num_matvecs=num_matvecs, seed=seed,
                                  block_size=block_size)


class _Counted(Operator):
    """``op`` whose products advance ``bar`` by their number of columns (same products)."""

    def __init__(self, op: Operator, bar: Any):
        self.op, self.bar = op, bar
        self.dim, self.dtype, self.device = op.dim, op.dtype, op.device
        self.model = getattr(op, "model", None)  # guard() preserves it, as for op itself

    def _product(self, v: Any) -> Any:
        out = self.op._product(v)
        self.bar.update(1 if v.dim() == 1 else int(v.shape[1]))
        return out
