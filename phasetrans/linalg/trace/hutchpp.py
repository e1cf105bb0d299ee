"""The Hutch++ trace estimator.

R. A. Meyer, C. Musco, C. Musco, D. P. Woodruff, "Hutch++: optimal stochastic trace
estimation", SOSA 2021.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..density import Estimate
from ..operator import apply, guard
from ..probes import rademacher
from .arguments import check_trace_arguments

__all__ = ["hutchpp"]


def hutchpp(H: Any, num_matvecs: int = 100, seed: int = 0, block_size: int | None = None) -> Estimate:
    """``Q = orth(H S)`` from ``s = m/3`` Rademacher vectors, then
    ``tr(Qᵀ H Q) + (1/g) Σ_i g_iᵀ (I − QQᵀ) H (I − QQᵀ) g_i`` with the remaining ``g = m − 2s``
    vectors (``m = num_matvecs`` products in all); stderr = std of the ``g`` residual samples /
    sqrt(g) (the exact low-rank part has none). Products ``block_size`` columns at a time
    (default: all at once, two data passes)."""
    op, num_matvecs, seed, block_size = check_trace_arguments(H, num_matvecs, seed, block_size,
                                                               4, "hutch++")
    with guard(op):
        s = num_matvecs // 3
        g = num_matvecs - 2 * s
        V = rademacher(op.dim, s + g, seed, op.device, "num_matvecs")
        S, G = V[:, :s], V[:, s:]
        Q, _ = torch.linalg.qr(apply(op, S, block_size, where="trace: hutch++ sketch products"))
        G = G - Q @ (Q.T @ G)
        HX = apply(op, torch.cat([Q, G], 1), block_size, where="trace: hutch++ products")
        low = float(torch.trace(Q.T @ HX[:, : Q.shape[1]]))
        samples = (G * HX[:, Q.shape[1] :]).sum(0)
        return Estimate(
            low + float(samples.mean()), float(samples.std(correction=1)) / math.sqrt(g)
        )
