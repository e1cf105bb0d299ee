"""Re-fit strategies: what happens to a pruned model before it is evaluated.

The existence question of the theory is "prune, then re-fit on the kept support" (THEORY §4). A
strategy is a callable ``refit(model, masks)`` that fine-tunes the pruned model in place with the
masks held. :func:`refit_steps` builds the standard one (SGD steps of
:func:`~phasetrans.finetune.finetune_masked`); the ``refit=`` argument of
:func:`~phasetrans.prune.threshold.find_threshold` and :func:`~phasetrans.prune.sweep.sweep`
also accepts ``None`` (no re-fit) or an int number of steps, which :func:`resolve_refit` turns
into the same strategy.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._batches import as_batches
from .._checks import check_callable, check_float, check_int
from ..finetune import finetune_masked
from ..params import ParamSelection
from .criteria import Criterion
from .masks import pruned

__all__ = ["RefitFn", "Refit", "refit_steps", "resolve_refit", "as_metric", "pruned_metric"]

#: A re-fit strategy: ``refit(model, masks)`` fine-tunes the pruned model in place, masks held.
RefitFn = Callable[[nn.Module, dict[str, torch.Tensor]], None]
#: What ``refit=`` accepts: ``None`` (no re-fit), a :data:`RefitFn`, or an int number of steps.
Refit = None | int | RefitFn


def refit_steps(steps: int, loss_fn: Callable, data: Any, lr: float = 1e-2) -> RefitFn:
    """The strategy "``steps`` SGD steps on ``loss_fn`` over ``data`` with step size ``lr``"
    (:func:`~phasetrans.finetune.finetune_masked`: momentum 0.9, seed 0, pruned weights held at
    zero) — what ``refit=steps, refit_loss_fn=loss_fn, refit_data=data, refit_lr=lr`` means."""
    steps = check_int(steps, "steps", minimum=0)
    check_callable(loss_fn, "loss_fn")
    data = as_batches(data)
    lr = check_float(lr, "lr", minimum=0.0, strict_minimum=True)

    def run(model: nn.Module, masks: dict) -> None:
        finetune_masked(model, masks, loss_fn, data, steps=steps, lr=lr)

    return run


def resolve_refit(
    refit: Refit, loss_fn: Callable | None = None, data: Any = None, lr: float = 1e-2
) -> RefitFn | None:
    """The strategy a ``refit=`` argument names, checked under the names ``refit``,
    ``refit_loss_fn``, ``refit_data`` and ``refit_lr`` of the calls that take it."""
    if refit is None:
        return None
    if callable(refit):
        return refit
    steps = check_int(refit, "refit", minimum=0)
    if loss_fn is None or data is None:
        raise ValueError("refit as a number of steps needs refit_loss_fn and refit_data")
    check_callable(loss_fn, "refit_loss_fn")
    lr = check_float(lr, "refit_lr", minimum=0.0, strict_minimum=True)
    return refit_steps(steps, loss_fn, as_batches(data, "refit_data"), lr)


def as_metric(value: Any) -> float:
    """An ``evaluate(model)`` result as a float (a real number or a one-element tensor)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"evaluate must return a real number, got {type(value).__name__}")
    return float(value)


def pruned_metric(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    sparsity: float,
    refit: RefitFn | None,
    min_per_layer: float,
    params: ParamSelection,
    criterion: Criterion | None = None,
) -> float:
    """``evaluate(w^(s))``: the metric of the model pruned to ``sparsity`` (by the prepared
    ``criterion``, default global magnitude; and re-fitted with ``refit`` when given); the model
    comes back bit-for-bit."""
    with pruned(model, sparsity, min_per_layer=min_per_layer, params=params,
                criterion="magnitude" if criterion is None else criterion) as masks:
        if refit is not None:
            refit(model, masks)
        return as_metric(evaluate(model))
