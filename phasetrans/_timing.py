"""One stopwatch for the orchestrators' per-stage timings.

``validate``, ``predict_sparsity`` and the command line time their stages with the same context
manager instead of pairs of ``time.perf_counter()`` calls written out per stage::

    clock = Stopwatch()
    with clock("predict"):
        ...
    clock.timings            # {"predict": 1.23}, a plain dict of seconds, in stage order
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

__all__ = ["Stopwatch"]


class Stopwatch:
    """Accumulates wall-clock seconds per named stage (a stage timed twice adds up)."""

    def __init__(self) -> None:
        self._timings: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if not isinstance(stage, str) or not stage:
            raise TypeError(f"stage must be a non-empty string, got {stage!r}")
        t = time.perf_counter()
        try:
            yield
        finally:
            self._timings[stage] = self._timings.get(stage, 0.0) + time.perf_counter() - t

    @property
    def timings(self) -> dict[str, float]:
        """A copy of the seconds per stage, in the order the stages first ran."""
        return dict(self._timings)

    @property
    def elapsed(self) -> float:
        """Seconds since the stopwatch was made."""
        return time.perf_counter() - self._start
