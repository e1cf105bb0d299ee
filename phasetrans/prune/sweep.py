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

import numpy as np
import torch
from torch import nn

from .._checks import check_callable, check_fraction, check_model, preserve_model
from .._io import check_path, fsync_dir, open_regular
from .._progress import progress_bar, resolve_progress
from ..distributed import run_on_main_process
from ..params import ParamSelection
from .criteria import Criterion, CriterionLike, criterion_label, resolve_criterion
from .refit import Refit, pruned_metric, resolve_refit

__all__ = ["sweep", "read_sweep_log", "SweepLogMismatch"]

_HEADER_KIND = "phasetrans.sweep/1"


class SweepLogMismatch(ValueError):
    """The log at ``path`` was written by a sweep with other arguments (``ValueError``)."""


def _header_line(header: dict) -> bytes:
    return (json.dumps({"kind": _HEADER_KIND, "header": header}) + "\n").encode()


_MARK = json.dumps({"kind": _HEADER_KIND})[:-1].encode()  # b'{"kind": "phasetrans.sweep/1"'


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The keys where two headers differ, dotted into nested dicts (``metadata.seed``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if old == new:
        return []
    show = (lambda v: repr(v) if len(repr(v)) <= 40 else repr(v)[:24] + "...")  # noqa: E731
    return [f"{prefix[:-1]} (file {show(old)}, this call {show(new)})"]


def _check_header(path: str, first: bytes, header: dict) -> None:
    """``ValueError`` unless ``first`` (the file's first line) is this sweep's header."""
    try:
        obj = json.loads(first.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        obj = None
    if not isinstance(obj, dict) or obj.get("kind") != _HEADER_KIND:
        raise ValueError(f"path: {path!r} is not a phasetrans sweep file; it was left untouched: "
                         f"use another path")
    if obj.get("header") != header:
        diff = "; ".join(_differences(obj.get("header"), header)) or "the header"
        raise SweepLogMismatch(
            f"path: {path!r} was written by a different sweep, which differs in: {diff}. Its "
            f"results are not this call's; to start fresh, delete {path!r} or use another path"
        )


def _read_records(f: IO[bytes], path: str, header: dict) -> dict[int, float]:
    """The records of the open log ``f`` (index -> metric). The header is checked *before*
    anything is changed, so a file that is not this sweep's log is never touched; only then is
    a torn last line (a write cut short by a crash) cut off. An empty file, or one holding only
    a torn header line, is a new log (emptied)."""
    first = f.readline(max(2 * len(_header_line(header)), 1 << 20))
    if not first.endswith(b"\n"):  # no whole first line: a torn header of ours, else refused
        rest = f.read(1)
        if not rest and (_MARK.startswith(first) or first.startswith(_MARK)):
            f.truncate(0)
            return {}
        raise ValueError(f"path: {path!r} is not a phasetrans sweep file; it was left untouched: "
                         f"use another path")
    _check_header(path, first, header)
    body = f.read()
    good_end = body.rfind(b"\n") + 1
    if good_end < len(body):  # a partial last line from an interrupted write: drop it
        f.truncate(len(first) + good_end)
        body = body[:good_end]
    done: dict[int, float] = {}
    for number, line in enumerate(body.splitlines(), start=2):
        if line.strip():
            try:
                rec = json.loads(line.decode("utf-8"))
                index, metric = int(rec["index"]), float(rec["metric"])
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"path: {path!r} line {number} is not a sweep record ({exc}); the file is "
                    f"corrupt: use another path"
                ) from None
            if not 0 <= index < len(header["sparsities"]):
                raise ValueError(f"path: {path!r} line {number} has index {index} out of range")
            done[index] = metric
    return done


def read_sweep_log(path: str, header: dict) -> dict[int, float]:
    """Results already in ``path`` (index -> metric); checks the header first, then drops a torn
    last line. The file must be a regular file, not opened through a symbolic link."""
    fd = open_regular(path, os.O_RDWR, "path", follow_symlinks=False)
    with os.fdopen(fd, "r+b") as f:
        return _read_records(f, path, header)


def _append(f: IO[bytes], record: dict) -> None:
    f.write((json.dumps(record) + "\n").encode())
    f.flush()
    os.fsync(f.fileno())


def _lock(f: IO[bytes], path: str) -> None:
    """An exclusive lock on the open log for as long as it is open (POSIX ``flock``): a second
    sweep on the same log, which would interleave records, is refused."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ValueError(f"path: {path!r} is in use by another running sweep; wait for it to "
                         f"finish or use another path") from None


def _open_log(path: str, header: dict) -> tuple[dict[int, float], IO[bytes] | None]:
    """The records already in the log and, on rank 0, the log open for appending (the header
    written first when the file is new). The log is opened without following a symbolic link
    and only if it is a regular file (a FIFO would block), created with ``0o666 & ~umask``, and
    locked against a second sweep on the same file.
    Data-parallel: rank 0 reads and writes the file, every rank evaluates (the evaluation is
    collective), so every rank resumes from rank 0's records."""
    opened: list[IO[bytes]] = []

    def open_records() -> dict[int, float]:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = open_regular(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, "path", follow_symlinks=False)
        f = os.fdopen(fd, "r+b")
        try:
            _lock(f, path)
            records = _read_records(f, path, header)
            if f.seek(0, os.SEEK_END) == 0:
                f.write(_header_line(header))
                f.flush()
                os.fsync(f.fileno())
                fsync_dir(os.path.dirname(os.path.abspath(path)))
        except BaseException:
            f.close()
            raise
        opened.append(f)
        return records

    done = run_on_main_process(open_records, errors=(OSError, ValueError))
    return done, (opened[0] if opened else None)


def _check_grid(sparsities: Any) -> list[float]:
    """The sparsities as a non-empty list of numbers in ``[0, 1]`` (booleans refused)."""
    if isinstance(sparsities, (str, bytes)) or not isinstance(sparsities, (Sequence, torch.Tensor)):
        try:
            sparsities = list(sparsities)  # numpy arrays, ranges
        except TypeError:
            raise TypeError(
                f"sparsities must be a sequence of numbers, got {type(sparsities).__name__}"
            ) from None
    values = list(sparsities)
    for i, s in enumerate(values):
        if isinstance(s, (bool, np.bool_)) or (isinstance(s, torch.Tensor) and s.dtype == torch.bool):
            raise TypeError(f"sparsities[{i}] must be a real number, got a boolean ({s!r})")
    grid = [check_fraction(s, f"sparsities[{i}]") for i, s in enumerate(values)]
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


def _with_criterion(header: dict, crit: Criterion, options: dict | None) -> dict:
    """The header with the criterion's name and options (JSON round trip, as the file gives
    them back)."""
    try:
        return json.loads(json.dumps({**header, "criterion": criterion_label(crit),
                                      "criterion_options": options}))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"criterion_options must be JSON-serialisable for a sweep log: {exc}") from None


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
    criterion: CriterionLike = "magnitude",
    data: Any = None,
    loss_fn: Callable | None = None,
    criterion_options: dict | None = None,
) -> list[tuple[float, float]]:
    """``[(s, evaluate(w^(s))) for s in sparsities]``: a whole pruning curve.

    With ``path``, each result is appended as a JSON line as soon as it is computed (flushed and
    fsynced) after a header line recording ``sparsities``, ``min_per_layer``, ``params``, the
    ``refit`` setting and ``metadata`` (JSON-serialisable); calling again with the same ``path``
    resumes: values already in the file are not recomputed. A header that does not match the call
    raises ``ValueError``, and so does a corrupt record; a torn last line (a write cut short by a
    crash) is dropped and recomputed. ``refit`` as in
    :func:`~phasetrans.prune.threshold.find_threshold`. ``criterion`` (with ``data``,
    ``loss_fn``, ``criterion_options``): what to prune, as in
    :func:`~phasetrans.prune.masks.criterion_masks`, prepared once before the grid (the header
    then records its name and options). The model is unchanged. ``progress``: a bar of the
    sparsities on standard error (``None``: only when standard error is a terminal).
    """
    check_model(model)
    check_callable(evaluate, "evaluate")
    grid = _check_grid(sparsities)
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    refit_fn = resolve_refit(refit, refit_loss_fn, refit_data, refit_lr)
    header = _header(grid, min_per_layer, params, refit, refit_lr, metadata)
    show = resolve_progress(progress)
    crit = resolve_criterion(criterion, model, data, loss_fn, params, criterion_options)
    if crit is not None and path is not None:  # the default's header stays: old logs resume
        header = _with_criterion(header, crit, criterion_options)

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
                                            params, crit)
                    if f is not None:
                        _append(f, {"index": i, "sparsity": grid[i], "metric": done[i]})
                    bar.update(1)
    finally:
        if f is not None:
            f.close()
    return [(grid[i], done[i]) for i in range(len(grid))]
