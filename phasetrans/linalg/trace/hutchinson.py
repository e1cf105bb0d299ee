"""Hutchinson's trace estimator.

M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
smoothing splines", 1989.
"""

from __future__ import annotations

import math
from typing import Any

from ..density import Estimate
from ..operator import apply, guard
from ..probes import rademacher
from .arguments import check_trace_arguments

__all__ = ["hutchinson"]


def hutchinson(H: Any, num_matvecs: int = 100, seed: int = 0, block_size: int | None = None) -> Estimate:
    """``(1/m) Σ_i z_iᵀ H z_i`` over ``m = num_matvecs`` Rademacher vectors ``z_i`` (seeded by
    ``seed``); stderr = sample std / sqrt(m). Products ``block_size`` columns at a time (default:
    all at once, one data pass)."""
    op, num_matvecs, seed, block_size = check_trace_arguments(H, num_matvecs, seed, block_size,
                                                               2, "hutchinson")
    with guard(op):
        Z = rademacher(op.dim, num_matvecs, seed, op.device, "num_matvecs")
        samples = (Z * apply(op, Z, block_size, where="trace: hutchinson products")).sum(0)
        return Estimate(
            float(samples.mean()), float(samples.std(correction=1)) / math.sqrt(num_matvecs)
        )
