"""Empirical critical sparsity of one-shot global magnitude pruning (THEORY §4).

The threshold is the largest sparsity ``s`` on the grid ``{j/M : j = 0..M}``, ``M = ⌈1/resolution⌉``,
at which the pruned model ``w^(s)`` still *holds*: ``metric(w^(s)) >= baseline − tolerance``
(``strict=True``: ``metric > baseline − tolerance``, the reference code's choice for accuracy,
Zhang et al. NeurIPS 2024). The reference code evaluates all 1000 grid points; here a bisection
on ``j`` finds a transition in ``⌈log₂ M⌉`` evaluations, then a local scan of the ``window`` grid
points above it moves up while one holds (accuracy on a few hundred test samples is not
monotone near the transition) — about 20–30 evaluations instead of 1000. Every point evaluated
is reported. With ``refit`` the pruned model is re-fitted on its kept support before evaluation,
the existence question the theory asks (prune, then re-fit).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ._bisect import last_true
from ._checks import (
    check_callable,
    check_float,
    check_fraction,
    check_int,
    check_model,
    preserve_model,
)
from ._io import _fsync_dir, check_path
from .distributed import run_on_main_process
from .pruning import pruned
from .training import evaluate_loss, finetune_masked

__all__ = ["Threshold", "find_threshold", "find_loss_threshold", "sweep"]


@dataclass
class Threshold:
    """Result of :func:`find_threshold`.

    ``sparsity``: largest grid sparsity found to hold (0.0 if none held, then ``found`` is False);
    ``evaluations``: calls of ``evaluate`` (baseline included); ``points``: ``(sparsity, metric)``
    evaluated, sorted by sparsity; ``baseline``: the dense metric compared against.
    """

    sparsity: float
    evaluations: int
    points: list[tuple[float, float]]
    baseline: float
    tolerance: float = 0.0
    strict: bool = False
    resolution: float = 1e-3
    found: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float:
        return 1.0 - self.sparsity

    def to_dict(self) -> dict:
        d = asdict(self)
        d["points"] = [list(p) for p in self.points]
        d["kept_fraction"] = self.kept_fraction
        return d


def _make_refit(refit: Any, loss_fn: Any, data: Any, lr: float) -> Callable | None:
    if refit is None:
        return None
    if callable(refit):
        return refit
    steps = check_int(refit, "refit", minimum=0)
    if loss_fn is None or data is None:
        raise ValueError("refit as a number of steps needs refit_loss_fn and refit_data")
    check_callable(loss_fn, "refit_loss_fn")
    lr = check_float(lr, "refit_lr", minimum=0.0, strict_minimum=True)

    def run(model: nn.Module, masks: dict) -> None:
        finetune_masked(model, masks, loss_fn, data, steps=steps, lr=lr)

    return run


def _metric(value: Any) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"evaluate must return a real number, got {type(value).__name__}")
    return float(value)


def _evaluate_pruned(model, evaluate, s, refit, min_per_layer, params) -> float:
    with pruned(model, s, min_per_layer=min_per_layer, params=params) as masks:
        if refit is not None:
            refit(model, masks)
        return _metric(evaluate(model))


def find_threshold(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    baseline: float | None = None,
    tolerance: float = 0.0,
    resolution: float = 1e-3,
    refit: Any = None,
    strict: bool = False,
    window: int = 8,
    max_evaluations: int = 30,
    min_per_layer: float = 0.0,
    params: Any = None,
    refit_loss_fn: Callable | None = None,
    refit_data: Any = None,
    refit_lr: float = 1e-2,
) -> Threshold:
    """Largest sparsity at which one-shot global magnitude pruning still holds.

    ``evaluate(model) -> float``, higher is better (e.g. test accuracy). Holds at ``s`` when
    ``evaluate(w^(s)) >= baseline − tolerance`` (``strict``: ``>``); ``baseline`` defaults to
    ``evaluate(dense model)`` (that evaluation is the point ``s = 0``). Grid ``j/M``,
    ``M = ⌈1/resolution⌉``; bisection assuming ``s = 0`` holds and ``s = 1`` fails, then a local
    scan of up to ``window`` grid points above the best holding point, repeated while one holds,
    stopping at ``max_evaluations`` (30 suffices for ``resolution = 1e-3``). NaN metrics fail.
    ``refit``: ``None``; a callable ``refit(model, masks)`` that fine-tunes in place with the masks
    held; or an int number of SGD steps (:func:`~phasetrans.training.finetune_masked`, needs
    ``refit_loss_fn`` and ``refit_data``, step size ``refit_lr``). The model is restored after
    every evaluation and comes back bit-for-bit. Zhang et al., NeurIPS 2024 (THEORY §4).
    """
    check_model(model)
    check_callable(evaluate, "evaluate")
    tolerance = check_float(tolerance, "tolerance", minimum=0.0)
    resolution = check_float(resolution, "resolution", minimum=0.0, maximum=0.5, strict_minimum=True)
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
    window = check_int(window, "window", minimum=0)
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    refit_fn = _make_refit(refit, refit_loss_fn, refit_data, refit_lr)
    M = math.ceil(1.0 / resolution - 1e-9)
    needed = math.ceil(math.log2(M)) + 2
    max_evaluations = check_int(max_evaluations, "max_evaluations", minimum=needed)
    if baseline is not None:
        baseline = check_float(baseline, "baseline", allow_inf=False)

    metrics: dict[int, float] = {}
    evaluations = 0
    with preserve_model(model):
        if baseline is None:
            with preserve_model(model):
                baseline = _metric(evaluate(model))
            evaluations += 1
            if not math.isfinite(baseline):
                raise ValueError(f"evaluate(dense model) must be finite, got {baseline}")
            if refit_fn is None:
                metrics[0] = baseline

        def holds(j: int) -> bool:
            nonlocal evaluations
            if j not in metrics:
                metrics[j] = _evaluate_pruned(model, evaluate, j / M, refit_fn, min_per_layer, params)
                evaluations += 1
            m = metrics[j]
            if math.isnan(m):
                return False
            return m > baseline - tolerance if strict else m >= baseline - tolerance

        lo = last_true(holds, 0, M)  # assumed at the ends: 0 holds, M fails
        best = lo if (lo > 0 or (0 in metrics and holds(0))) else None
        start = lo
        moved = True
        while moved and evaluations < max_evaluations:
            moved = False
            for j in range(start + 1, min(M, start + window) + 1):
                if evaluations >= max_evaluations and j not in metrics:
                    break
                if holds(j):
                    best = j if best is None else max(best, j)
            if best is not None and best > start:
                start, moved = best, True
    points = sorted((j / M, m) for j, m in metrics.items())
    return Threshold(
        sparsity=(best / M) if best is not None else 0.0,
        evaluations=evaluations,
        points=points,
        baseline=baseline,
        tolerance=tolerance,
        strict=strict,
        resolution=1.0 / M,
        found=best is not None,
    )


def find_loss_threshold(
    model: nn.Module,
    loss_fn: Callable,
    data: Any,
    eps: float,
    resolution: float = 1e-3,
    refit: Any = None,
    **kwargs: Any,
) -> Threshold:
    """Largest ``s`` with ``L(w^(s)) <= L(w*) + eps`` (THEORY §4 loss criterion), ``L`` the
    dataset-mean loss of ``loss_fn`` on ``data`` (:func:`~phasetrans.training.evaluate_loss`).
    Runs :func:`find_threshold` on the metric ``−L`` with tolerance ``eps``; ``.points`` and
    ``.baseline`` hold ``−L``. Other keyword arguments go to :func:`find_threshold`."""
    check_model(model)
    eps = check_float(eps, "eps", minimum=0.0)
    check_callable(loss_fn, "loss_fn")
    if "tolerance" in kwargs or "baseline" in kwargs:
        raise TypeError("find_loss_threshold sets tolerance (eps) and baseline (L(w*)) itself")

    def metric(m: nn.Module) -> float:
        return -evaluate_loss(m, loss_fn, data)

    baseline = metric(model)
    if "refit_loss_fn" not in kwargs and "refit_data" not in kwargs and isinstance(refit, int):
        kwargs.update(refit_loss_fn=loss_fn, refit_data=data)
    result = find_threshold(
        model, metric, baseline=baseline, tolerance=eps, resolution=resolution, refit=refit,
        **kwargs,
    )
    result.evaluations += 1
    if refit is None:
        result.extra["loss_dense"] = -baseline
    return result


_HEADER_KIND = "phasetrans.sweep/1"


def _read_sweep(path: str, header: dict) -> dict[int, float]:
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


def _append(f, record: dict) -> None:
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def sweep(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    sparsities: Sequence[float],
    path: str | os.PathLike | None = None,
    refit: Any = None,
    min_per_layer: float = 0.0,
    params: Any = None,
    metadata: dict | None = None,
    refit_loss_fn: Callable | None = None,
    refit_data: Any = None,
    refit_lr: float = 1e-2,
    progress: bool = False,
) -> list[tuple[float, float]]:
    """``[(s, evaluate(w^(s))) for s in sparsities]``: a whole pruning curve.

    With ``path``, each result is appended as a JSON line as soon as it is computed (flushed and
    fsynced) after a header line recording ``sparsities``, ``min_per_layer``, ``params``, the
    ``refit`` setting and ``metadata`` (JSON-serialisable); calling again with the same ``path``
    resumes: values already in the file are not recomputed. A header that does not match the call
    raises ``ValueError``, and so does a corrupt record; a torn last line (a write cut short by a
    crash) is dropped and recomputed. ``refit`` as in :func:`find_threshold`. The model is
    unchanged.
    """
    check_model(model)
    check_callable(evaluate, "evaluate")
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
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    refit_fn = _make_refit(refit, refit_loss_fn, refit_data, refit_lr)
    header = {
        "sparsities": grid,
        "min_per_layer": min_per_layer,
        "params": params if params is None or isinstance(params, str) else list(params),
        "refit": None if refit is None else (refit if isinstance(refit, int) else "callable"),
        "refit_lr": refit_lr if isinstance(refit, int) else None,
        "metadata": metadata,
    }
    try:
        header = json.loads(json.dumps(header))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None

    from tqdm.auto import tqdm

    done: dict[int, float] = {}
    f = None
    if path is not None:
        path = os.fspath(check_path(path, "path"))
        # data-parallel: rank 0 reads and writes the file, every rank evaluates (the evaluation
        # is collective), so every rank resumes from rank 0's records

        def open_records() -> dict[int, float]:
            nonlocal f
            records = _read_sweep(path, header) if os.path.exists(path) else {}
            f = open(path, "a", encoding="utf-8")
            try:
                if f.tell() == 0:
                    _append(f, {"kind": _HEADER_KIND, "header": header})
                    _fsync_dir(os.path.dirname(os.path.abspath(path)))
            except BaseException:
                f.close()
                f = None
                raise
            return records

        done = run_on_main_process(open_records, errors=(OSError, ValueError))
    try:
        with preserve_model(model):
            for i in tqdm(range(len(grid)), desc="sweep", disable=not progress, leave=False):
                if i in done:
                    continue
                done[i] = _evaluate_pruned(model, evaluate, grid[i], refit_fn, min_per_layer, params)
                if f is not None:
                    _append(f, {"index": i, "sparsity": grid[i], "metric": done[i]})
    finally:
        if f is not None:
            f.close()
    return [(grid[i], done[i]) for i in range(len(grid))]
