"""Hutchinson's trace estimator.

M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
smoothing splines", 1989.
"""

from __future__ import annotations

import math
from typing import Any

from ..._checks import check_int, check_seed
from ..density import Estimate
from ..operator import apply, as_operator, check_ranks_agree_on, guard
from ..probes import rademacher

__all__ = ["hutchinson"]


def hutchinson(H: Any, num_matvecs: int = 100, seed: int = 0, block_size: int | None = None) -> Estimate:
    """``(1/m) Σ_i z_iᵀ H z_i`` over ``m = num_matvecs`` Rademacher vectors ``z_i`` (seeded by
    ``seed``); stderr = sample std / sqrt(m). Products ``block_size`` columns at a time (default:
    all at once, one data pass)."""
    op = as_operator(H)
    num_matvecs = check_int(num_matvecs, "num_matvecs", minimum=2)
    seed = check_seed(seed)
    if block_size is not None:
        block_size = check_int(block_size, "block_size", minimum=1)
    check_ranks_agree_on(op, "hutchinson", num_matvecs=num_matvecs, seed=seed,
                         block_size=block_size)
    with guard(op):
        Z = rademacher(op.dim, num_matvecs, seed, op.device, "num_matvecs")
        samples = (Z * apply(op, Z, block_size, where="trace: hutchinson products")).sum(0)
        return Estimate(
            float(samples.mean()), float(samples.std(correction=1)) / math.sqrt(num_matvecs)
        )
