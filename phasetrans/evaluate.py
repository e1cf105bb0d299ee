"""Dataset-level evaluation of a model: accuracy and mean loss, batches weighted by size.

Both run in eval mode under ``no_grad`` and leave the model bit-for-bit as it was; under
``torch.distributed`` each rank evaluates its shard and the sums are reduced over ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._batches import as_batches, batch_size, call_model, move_batch
from ._checks import (
    check_callable,
    check_model,
    check_scalar_loss,
    model_device_dtype,
    preserve_model,
)

__all__ = ["evaluate_accuracy", "evaluate_loss"]


def _sum_over_ranks(a: float, b: float, device: torch.device) -> tuple[float, float]:
    """``(a, b)`` summed over ``torch.distributed`` ranks (unchanged when not distributed)."""
    from .distributed import all_reduce_sum, is_distributed

    if not is_distributed():
        return a, b
    summed = all_reduce_sum([float(a), float(b)], device=device).cpu()
    return float(summed[0]), float(summed[1])


def evaluate_accuracy(model: nn.Module, data: Any, batch_fn: Callable | None = None) -> float:
    """Fraction of correct predictions over the dataset: ``argmax`` of the outputs over the last
    dim against integer targets (or against ``argmax`` of one-hot/probability targets of the
    outputs' shape); batches weighted by size. Eval mode, ``no_grad``; the model is unchanged.
    Non-finite outputs raise ``FloatingPointError`` naming the batch. ``batch_fn(batch) ->
    (inputs, targets)`` for batches of another shape; tuple inputs are the model's positional
    arguments, dict inputs its keyword arguments."""
    check_model(model)
    if batch_fn is not None:
        check_callable(batch_fn, "batch_fn")
    batches = as_batches(data, batch_fn=batch_fn)
    device, dtype = model_device_dtype(model)
    correct = total = 0
    with preserve_model(model), torch.no_grad():
        model.eval()
        for index, (inputs, targets) in enumerate(batches):
            inputs, targets = move_batch(inputs, targets, device, dtype)
            outputs = call_model(model, inputs)
            if not isinstance(outputs, torch.Tensor):
                raise TypeError(f"model outputs must be a tensor, got {type(outputs).__name__}")
            if outputs.is_floating_point() and not bool(torch.isfinite(outputs).all()):
                raise FloatingPointError(
                    f"evaluate_accuracy: non-finite model outputs (NaN or inf) at batch {index} "
                    f"of data; the accuracy would be meaningless"
                )
            pred = outputs.argmax(-1)
            if targets.shape == outputs.shape and targets.dim() > 1:
                targets = targets.argmax(-1)
            if targets.shape != pred.shape:
                raise ValueError(
                    f"data: targets of shape {tuple(targets.shape)} do not match predictions of "
                    f"shape {tuple(pred.shape)} (outputs {tuple(outputs.shape)})"
                )
            correct += int((pred == targets).sum().item())
            total += pred.numel()
    # data-parallel: each rank evaluates its shard; the counts are summed over ranks (a rank
    # that passes the whole set counts it world_size times, which leaves the ratio unchanged)
    correct, total = _sum_over_ranks(correct, total, device)
    return correct / total


def evaluate_loss(model: nn.Module, loss_fn: Callable, data: Any,
                  batch_fn: Callable | None = None) -> float:
    """Dataset-mean loss ``Σ_b |b|·loss_fn(model(x_b), y_b) / Σ_b |b|`` (``loss_fn`` returns the
    batch mean). Eval mode, ``no_grad``; the model is unchanged. A non-finite batch loss raises
    ``FloatingPointError`` naming the batch. ``batch_fn`` as in :func:`evaluate_accuracy`."""
    check_model(model)
    check_callable(loss_fn, "loss_fn")
    if batch_fn is not None:
        check_callable(batch_fn, "batch_fn")
    batches = as_batches(data, batch_fn=batch_fn)
    device, dtype = model_device_dtype(model)
    total = 0.0
    count = 0
    with preserve_model(model), torch.no_grad():
        model.eval()
        for index, (inputs, targets) in enumerate(batches):
            inputs, targets = move_batch(inputs, targets, device, dtype)
            n = batch_size(inputs)
            loss = check_scalar_loss(loss_fn(call_model(model, inputs), targets),
                                     where=f"at batch {index}")
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"evaluate_loss: non-finite loss {float(loss)} at batch {index} of data"
                )
            total += float(loss) * n
            count += n
    total, count = _sum_over_ranks(total, count, device)
    return total / count
