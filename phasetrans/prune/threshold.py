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

import dataclasses
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from .._batches import as_batches
from .._bisect import last_true
from .._checks import (
    check_bool,
    check_callable,
    check_float,
    check_fraction,
    check_int,
    check_model,
    preserve_model,
)
from .._progress import progress_bar, resolve_progress
from ..evaluate import evaluate_loss
from ..params import ParamSelection
from .criteria import Criterion, CriterionLike, criterion_label, resolve_criterion
from .refit import Refit, RefitFn, as_metric, pruned_metric, refit_steps, resolve_refit

__all__ = ["Threshold", "find_threshold", "find_loss_threshold", "refit_steps", "Refit"]


@dataclass(frozen=True)
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


@dataclass
class _Grid:
    """The grid ``j/M``, each point evaluated at most once, and the rule for "holds"."""

    model: nn.Module
    evaluate: Callable[[nn.Module], float]
    M: int
    refit: RefitFn | None
    min_per_layer: float
    params: ParamSelection
    baseline: float
    tolerance: float
    strict: bool
    metrics: dict[int, float]
    evaluations: int
    criterion: Criterion | None = None

    def holds(self, j: int) -> bool:
        if j not in self.metrics:
            self.metrics[j] = pruned_metric(self.model, self.evaluate, j / self.M, self.refit,
                                            self.min_per_layer, self.params, self.criterion)
            self.evaluations += 1
        m = self.metrics[j]
        if math.isnan(m):
            return False
        bar = self.baseline - self.tolerance
        return m > bar if self.strict else m >= bar


def _dense_baseline(model: nn.Module, evaluate: Callable[[nn.Module], float]) -> float:
    """``evaluate(dense model)``, which must be finite (the model is restored after it)."""
    with preserve_model(model):
        baseline = as_metric(evaluate(model))
    if not math.isfinite(baseline):
        raise ValueError(f"evaluate(dense model) must be finite, got {baseline}")
    return baseline


def _bisect_then_scan(grid: Any, window: int, max_evaluations: int) -> int | None:
    """The largest grid index found to hold (``None`` if none) on ``grid`` (a :class:`_Grid`, or
    anything with its ``M``, ``metrics``, ``evaluations`` and ``holds(j)``, e.g. the resampled
    grids of :func:`~phasetrans.threshold_spread`): bisection assuming ``0`` holds
    and ``M`` fails, then scans of the ``window`` indices above the best, repeated while one
    holds and evaluations are left (accuracy on a few hundred samples is not monotone near the
    transition)."""
    lo = last_true(grid.holds, 0, grid.M)  # assumed at the ends: 0 holds, M fails
    best = lo if (lo > 0 or (0 in grid.metrics and grid.holds(0))) else None
    start = lo
    moved = True
    while moved and grid.evaluations < max_evaluations:
        moved = False
        for j in range(start + 1, min(grid.M, start + window) + 1):
            if grid.evaluations >= max_evaluations and j not in grid.metrics:
                break
            if grid.holds(j):
                best = j if best is None else max(best, j)
        if best is not None and best > start:
            start, moved = best, True
    return best


#: :func:`find_threshold`'s defaults: grid points scanned above the best holding one, and the
#: evaluation budget (30 suffices for ``resolution = 1e-3``)
SCAN_WINDOW = 8
MAX_EVALUATIONS = 30

#: The finest grid of :func:`find_threshold`: ``1/M`` with ``M <= 10**9`` (32 bisection steps;
#: finer steps than one weight in a billion have no meaning for a sparsity).
MIN_RESOLUTION = 1e-9


def find_threshold(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    baseline: float | None = None,
    tolerance: float = 0.0,
    resolution: float = 1e-3,
    refit: Refit = None,
    strict: bool = False,
    window: int = SCAN_WINDOW,
    max_evaluations: int = MAX_EVALUATIONS,
    min_per_layer: float = 0.0,
    params: ParamSelection = None,
    refit_loss_fn: Callable | None = None,
    refit_data: Any = None,
    refit_lr: float = 1e-2,
    criterion: CriterionLike = "magnitude",
    data: Any = None,
    loss_fn: Callable | None = None,
    criterion_options: dict | None = None,
    progress: bool | None = None,
) -> Threshold:
    """Largest sparsity at which one-shot global magnitude pruning (or ``criterion``) still holds.

    ``evaluate(model) -> float``, higher is better (e.g. test accuracy). Holds at ``s`` when
    ``evaluate(w^(s)) >= baseline − tolerance`` (``strict``: ``>``); ``baseline`` defaults to
    ``evaluate(dense model)`` (that evaluation is the point ``s = 0``). Grid ``j/M``,
    ``M = ⌈1/resolution⌉`` (``resolution`` in ``[1e-9, 0.5]``); bisection assuming ``s = 0`` holds and ``s = 1`` fails, then a local
    scan of up to ``window`` grid points above the best holding point, repeated while one holds,
    stopping at ``max_evaluations`` (30 suffices for ``resolution = 1e-3``). NaN metrics fail.
    ``refit``: ``None``; a callable ``refit(model, masks)`` that fine-tunes in place with the masks
    held (e.g. :func:`~phasetrans.prune.refit.refit_steps`); or an int number of SGD steps
    (:func:`~phasetrans.finetune.finetune_masked`, needs ``refit_loss_fn`` and ``refit_data``, step
    size ``refit_lr``). ``criterion`` (with ``data``, ``loss_fn``, ``criterion_options``): what
    to prune, as in :func:`~phasetrans.prune.masks.criterion_masks`; prepared once, before the
    search (its name goes to ``extra["criterion"]``); OBS's weight update is part of each pruned
    model. The model is restored after every evaluation and comes back bit-for-bit.
    Zhang et al., NeurIPS 2024 (THEORY §4). ``progress``: a bar of the evaluations (at most
    ``max_evaluations``) on standard error (``None``: only when standard error is a terminal).
    """
    check_model(model)
    check_callable(evaluate, "evaluate")
    tolerance = check_float(tolerance, "tolerance", minimum=0.0)
    resolution = check_float(resolution, "resolution", minimum=0.0, maximum=0.5, strict_minimum=True)
    if resolution < MIN_RESOLUTION:  # finer grids mean nothing past float64 sparsities
        raise ValueError(f"resolution must be >= {MIN_RESOLUTION:g}, got {resolution:g}")
    check_bool(strict, "strict")
    window = check_int(window, "window", minimum=0)
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    refit_fn = resolve_refit(refit, refit_loss_fn, refit_data, refit_lr)
    M = math.ceil(1.0 / resolution - 1e-9)
    needed = math.ceil(math.log2(M)) + 2
    max_evaluations = check_int(max_evaluations, "max_evaluations", minimum=needed)
    if baseline is not None:
        baseline = check_float(baseline, "baseline", allow_inf=False)
    crit = resolve_criterion(criterion, model, data, loss_fn, params, criterion_options)
    bar = progress_bar(resolve_progress(progress), max_evaluations, "threshold", "eval")
    evaluate = _counted(evaluate, bar)

    with preserve_model(model), bar:
        metrics: dict[int, float] = {}
        evaluations = 0
        if baseline is None:
            baseline = _dense_baseline(model, evaluate)
            evaluations += 1
            if refit_fn is None:
                metrics[0] = baseline
        grid = _Grid(model, evaluate, M, refit_fn, min_per_layer, params, baseline, tolerance,
                     strict, metrics, evaluations, crit)
        best = _bisect_then_scan(grid, window, max_evaluations)
    return Threshold(
        sparsity=(best / M) if best is not None else 0.0,
        evaluations=grid.evaluations,
        points=sorted((j / M, m) for j, m in grid.metrics.items()),
        baseline=baseline,
        tolerance=tolerance,
        strict=strict,
        resolution=1.0 / M,
        found=best is not None,
        extra={} if crit is None else {"criterion": criterion_label(crit)},
    )


def _counted(evaluate: Callable[[nn.Module], float], bar: Any) -> Callable[[nn.Module], float]:
    """``evaluate`` advancing ``bar`` by one per call."""

    def counted(m: nn.Module) -> float:
        value = evaluate(m)
        bar.update(1)
        return value

    return counted


def find_loss_threshold(
    model: nn.Module,
    loss_fn: Callable,
    data: Any,
    eps: float,
    resolution: float = 1e-3,
    refit: Refit = None,
    batch_fn: Callable | None = None,
    **kwargs: Any,
) -> Threshold:
    """Largest ``s`` with ``L(w^(s)) <= L(w*) + eps`` (THEORY §4 loss criterion), ``L`` the
    dataset-mean loss of ``loss_fn`` on ``data`` (:func:`~phasetrans.evaluate.evaluate_loss`).
    Runs :func:`find_threshold` on the metric ``−L`` with tolerance ``eps``; ``.points`` and
    ``.baseline`` hold ``−L``. ``batch_fn(batch) -> (inputs, targets)`` for batches of another
    shape (also used by an int ``refit``). Other keyword arguments go to :func:`find_threshold`; a
    ``criterion`` there is prepared on this ``loss_fn`` and ``data``."""
    check_model(model)
    eps = check_float(eps, "eps", minimum=0.0)
    check_callable(loss_fn, "loss_fn")
    if batch_fn is not None:
        check_callable(batch_fn, "batch_fn")
        data = as_batches(data, "data", batch_fn)
    if "tolerance" in kwargs or "baseline" in kwargs:
        raise TypeError("find_loss_threshold sets tolerance (eps) and baseline (L(w*)) itself")
    if kwargs.get("criterion", "magnitude") != "magnitude" or kwargs.get("criterion_options"):
        kwargs.update(data=data, loss_fn=loss_fn)

    def metric(m: nn.Module) -> float:
        return -evaluate_loss(m, loss_fn, data)

    baseline = metric(model)
    if "refit_loss_fn" not in kwargs and "refit_data" not in kwargs and isinstance(refit, int):
        kwargs.update(refit_loss_fn=loss_fn, refit_data=data)
    result = find_threshold(
        model, metric, baseline=baseline, tolerance=eps, resolution=resolution, refit=refit,
        **kwargs,
    )
    extra = result.extra if refit is not None else {**result.extra, "loss_dense": -baseline}
    return dataclasses.replace(result, evaluations=result.evaluations + 1, extra=extra)
