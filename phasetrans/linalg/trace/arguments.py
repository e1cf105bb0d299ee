"""The arguments the three trace estimators share, checked once for all of them."""

from __future__ import annotations

from typing import Any

from ..._checks import check_int, check_seed
from ..operator import Operator, as_operator, check_ranks_agree_on

__all__ = ["check_trace_arguments"]


def check_trace_arguments(H: Any, num_matvecs: Any, seed: Any, block_size: Any, minimum: int,
                          name: str) -> tuple[Operator, int, int, int | None]:
    """``(operator, num_matvecs, seed, block_size)`` checked (``num_matvecs ≥ minimum``, the
    estimator's least number of products); data-parallel ranks must agree on them (``name``
    names the estimator in the error)."""
    op = as_operator(H)
    num_matvecs = check_int(num_matvecs, "num_matvecs", minimum=minimum)
    seed = check_seed(seed)
    if block_size is not None:
        block_size = check_int(block_size, "block_size", minimum=1)
    check_ranks_agree_on(op, name, num_matvecs=num_matvecs, seed=seed, block_size=block_size)
    return op, num_matvecs, seed, block_size
