"""Progress bars of the long computations (``slq``, ``trace``, ``train_l1``, ``sweep``,
``predict_sparsity``, ``validate``, ``find_threshold``, ``pruning_curve``).

Every such function takes ``progress``: ``True`` shows a ``tqdm`` bar on standard error, ``False``
shows none, and ``None`` (the default) shows one only when standard error is a terminal, so
scripts, tests, CI logs and piped output stay quiet while an interactive run reports. The bars
write to standard error only; results on standard output are untouched.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["resolve_progress", "progress_bar"]


def resolve_progress(progress: Any, name: str = "progress") -> bool:
    """``progress`` as a bool: ``None`` → whether standard error is a terminal; ``True`` /
    ``False`` as given; anything else raises ``TypeError`` naming ``name``."""
    if progress is None:
        stream = sys.stderr
        try:
            return bool(stream is not None and stream.isatty())
        except (AttributeError, ValueError):  # replaced or closed stream
            return False
    if not isinstance(progress, bool):
        raise TypeError(f"{name} must be None, True or False, got {type(progress).__name__} ({progress!r})")
    return progress


def progress_bar(enabled: bool, total: int | None = None, desc: str = "", unit: str = "it") -> Any:
    """A ``tqdm`` bar on standard error (``disable=not enabled``, ``leave=False``, so finished
    bars vanish); use ``.update(n)``, ``.set_postfix(...)``, ``.close()`` or ``with``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False,
                file=sys.stderr, dynamic_ncols=True)
