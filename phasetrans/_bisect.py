"""Bisection on an integer range for a monotone predicate (the one loop behind the predictor's
exact root, the threshold search and the validation study's exact thresholds)."""

from __future__ import annotations

from collections.abc import Callable


def last_true(predicate: Callable[[int], bool], lo: int, hi: int) -> int:
    """Largest ``j`` in ``[lo, hi)`` with ``predicate(j)``, for a predicate that is true at ``lo``,
    false at ``hi`` (neither is evaluated) and monotone (true, then false) in between.

    Evaluates the midpoints ``(lo + hi) // 2`` of the shrinking bracket: ``⌈log2(hi − lo)⌉``
    calls at most."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predicate(mid):
            lo = mid
        else:
            hi = mid
    return lo
