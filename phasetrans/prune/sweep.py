"""A whole pruning curve ``[(s, evaluate(w^(s)))]`` and its crash-safe, resumable log.

The log is a JSON-lines file: a header line ``{"kind": "phasetrans.sweep/1", "header": {...}}``
recording the call's arguments, then one record ``{"index", "sparsity", "metric"}`` per grid point,
each flushed and fsynced as soon as it is computed. A rerun with the same path and arguments
skips the points already recorded; a write cut short by a crash leaves at most a torn last line,
which is dropped and recomputed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import IO, Any

import torch
from torch import nn

from .._checks import check_callable, check_fraction, check_model, preserve_model
from .._io import check_path, fsync_dir
from .._progress import progress_bar, resolve_progress
from ..distributed import run_on_main_process
from ..params import ParamSelection
from .refit import Refit, pruned_metric, resolve_refit

__all__ = ["sweep", "read_sweep_log"]

_HEADER_KIND = "phasetrans.sweep/1"


def read_sweep_log(path: str, header: dict) -> dict[int, float]:
    """Results already in ``path`` (index -> metric); checks the header; drops a torn last line."""
    done: dict[int, float] = {}
    with open(path, "rb") as f:
        raw = f.read()
    if not raw:
        return done
    good_end = raw.rfind(b"\n") + 1
    if good_end < len(raw):  # a partial last line from an interrupted write: drop it
        with open(path, "r+b") as f:
            f.truncate(good_end)
        raw = raw[:good_end]
    lines = raw.decode().splitlines()
    if not lines:
        return done
    try:
        first = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise ValueError(f"path: {path!r} is not a phasetrans sweep file (bad header)") from exc
    if not isinstance(first, dict) or first.get("kind") != _HEADER_KIND:
        raise ValueError(f"path: {path!r} is not a phasetrans sweep file")
    if first.get("header") != header:
        raise ValueError(
            f"path: {path!r} was written by a different sweep (header {first.get('header')!r}, "
            f"this call {header!r}); use another path"
        )
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            try:
                rec = json.loads(line)
                index, metric = int(rec["index"]), float(rec["metric"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"path: {path!r} line {number} is not a sweep record ({exc}); the file is "
                    f"corrupt: use another path"
                ) from None
            if not 0 <= index < len(header["sparsities"]):
                raise ValueError(f"path: {path!r} line {number} has index {index} out of range")
            done[index] = metric
    return done


def _append(f: IO[str], record: dict) -> None:
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _open_log(path: str, header: dict) -> tuple[dict[int, float], IO[str] | None]:
    """The records already in the log and, on rank 0, the log open for appending (the header
    written first when the file is new). Data-parallel: rank 0 reads and writes the file, every
    rank evaluates (the evaluation is collective), so every rank resumes from rank 0's records."""
    opened: list[IO[str]] = []

    def open_records() -> dict[int, float]:
        records = read_sweep_log(path, header) if os.path.exists(path) else {}
        f = open(path, "a", encoding="utf-8")
        try:
            if f.tell() == 0:
                _append(f, {"kind": _HEADER_KIND, "header": header})
                fsync_dir(os.path.dirname(os.path.abspath(path)))
        except BaseException:
            f.close()
            raise
        opened.append(f)
        return records

    done = run_on_main_process(open_records, errors=(OSError, ValueError))
    return done, (opened[0] if opened else None)


def _check_grid(sparsities: Any) -> list[float]:
    """The sparsities as a non-empty list of numbers in ``[0, 1]``."""
    if isinstance(sparsities, (str, bytes)) or not isinstance(sparsities, (Sequence, torch.Tensor)):
        try:
            sparsities = list(sparsities)  # numpy arrays, ranges
        except TypeError:
            raise TypeError(
                f"sparsities must be a sequence of numbers, got {type(sparsities).__name__}"
            ) from None
    grid = [check_fraction(s, f"sparsities[{i}]") for i, s in enumerate(list(sparsities))]
    if not grid:
        raise ValueError("sparsities must contain at least one value")
    return grid


def _header(grid: list[float], min_per_layer: float, params: ParamSelection, refit: Refit,
            refit_lr: float, metadata: dict | None) -> dict:
    """The log's header: the call's arguments, as the JSON round trip gives them back."""
    header = {
        "sparsities": grid,
        "min_per_layer": min_per_layer,
        "params": params if params is None or isinstance(params, str) else list(params),
        "refit": None if refit is None else (refit if isinstance(refit, int) else "callable"),
        "refit_lr": refit_lr if isinstance(refit, int) else None,
        "metadata": metadata,
    }
    try:
        return json.loads(json.dumps(header))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None


def sweep(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    sparsities: Sequence[float],
    path: str | os.PathLike | None = None,
    refit: Refit = None,
    min_per_layer: float = 0.0,
    params: ParamSelection = None,
    metadata: dict | None = None,
    refit_loss_fn: Callable | None = None,
    refit_data: Any = None,
    refit_lr: float = 1e-2,
    progress: bool | None = None,
) -> list[tuple[float, float]]:
    """``[(s, evaluate(w^(s))) for s in sparsities]``: a whole pruning curve.

    With ``path``, each result is appended as a JSON line as soon as it is computed (flushed and
    fsynced) after a header line recording ``sparsities``, ``min_per_layer``, ``params``, the
    ``refit`` setting and ``metadata`` (JSON-serialisable); calling again with the same ``path``
    resumes: values already in the file are not recomputed. A header that does not match the call
    raises ``ValueError``, and so does a corrupt record; a torn last line (a write cut short by a
    crash) is dropped and recomputed. ``refit`` as in
    :func:`~phasetrans.prune.threshold.find_threshold`. The model is unchanged. ``progress``: a
    bar of the sparsities on standard error (``None``: only when standard error is a terminal).
    """
    check_model(model)
    check_callable(evaluate, "evaluate")
    grid = _check_grid(sparsities)
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    refit_fn = resolve_refit(refit, refit_loss_fn, refit_data, refit_lr)
    header = _header(grid, min_per_layer, params, refit, refit_lr, metadata)
    show = resolve_progress(progress)

    done: dict[int, float] = {}
    f = None
    if path is not None:
        path = os.fspath(check_path(path, "path"))
        done, f = _open_log(path, header)
    try:
        with preserve_model(model):
            with progress_bar(show, len(grid), "sweep", "point") as bar:
                bar.update(len(done))
                for i in range(len(grid)):
                    if i in done:
                        continue
                    done[i] = pruned_metric(model, evaluate, grid[i], refit_fn, min_per_layer,
                                            params)
                    if f is not None:
                        _append(f, {"index": i, "sparsity": grid[i], "metric": done[i]})
                    bar.update(1)
    finally:
        if f is not None:
            f.close()
    return [(grid[i], done[i]) for i in range(len(grid))]
