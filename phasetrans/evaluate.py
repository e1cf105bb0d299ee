"""Dataset-level evaluation of a model: accuracy and mean loss, batches weighted by size.

Both run in eval mode under ``no_grad`` and leave the model bit-for-bit as it was; under
``torch.distributed`` each rank evaluates its shard and the sums are reduced over ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ._batches import FixedOrder, as_batches, batch_size, call_model, move_batch
from ._checks import (
    check_callable,
    check_model,
    check_scalar_loss,
    model_device_dtype,
    preserve_model,
)

__all__ = ["evaluate_accuracy", "evaluate_correct", "evaluate_loss", "check_classifier"]


def _sum_over_ranks(a: float, b: float, device: torch.device) -> tuple[float, float]:
    """``(a, b)`` summed over ``torch.distributed`` ranks (unchanged when not distributed)."""
    from .distributed import all_reduce_sum, is_distributed

    if not is_distributed():
        return a, b
    summed = all_reduce_sum([float(a), float(b)], device=device).cpu()
    return float(summed[0]), float(summed[1])


def _correct_mask(outputs: Any, targets: torch.Tensor, index: int, name: str,
                  caller: str = "evaluate_accuracy") -> torch.Tensor:
    """Per-sample correctness (bool) of one batch, after the checks that make accuracy
    meaningful: finite outputs of at least two classes, integer labels in ``[0, C)`` (or one-hot
    / probability targets of the outputs' shape)."""
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"model outputs must be a tensor, got {type(outputs).__name__}")
    if outputs.is_floating_point() and not bool(torch.isfinite(outputs).all()):
        raise FloatingPointError(
            f"{caller}: non-finite model outputs (NaN or inf) at batch {index} "
            f"of {name}; the accuracy would be meaningless"
        )
    if outputs.dim() >= 2 and outputs.shape[-1] == 1:
        raise ValueError(
            f"{caller}: the model has a single output per sample (outputs of shape "
            f"{tuple(outputs.shape)} at batch {index} of {name}), so the argmax accuracy is 1.0 "
            f"whatever the weights: it is undefined; use evaluate_loss (or pass your own metric, "
            f"e.g. find_loss_threshold / find_threshold(evaluate=...))"
        )
    classes = outputs.shape[-1] if outputs.dim() >= 1 else 0
    pred = outputs.argmax(-1)
    if targets.shape == outputs.shape and targets.dim() > 1:
        targets = targets.argmax(-1)
    if targets.shape != pred.shape:
        raise ValueError(
            f"{name}: targets of shape {tuple(targets.shape)} do not match predictions of "
            f"shape {tuple(pred.shape)} (outputs {tuple(outputs.shape)})"
        )
    if targets.is_floating_point() and not torch.equal(targets, targets.round()):
        raise ValueError(
            f"{name}: targets at batch {index} are not class labels (non-integer values); "
            f"evaluate_accuracy needs integer labels or one-hot targets; for regression use "
            f"evaluate_loss"
        )
    if targets.numel() and (bool((targets < 0).any()) or bool((targets >= classes).any())):
        raise ValueError(
            f"{name}: labels at batch {index} lie outside [0, {classes}) (min "
            f"{targets.min().item()}, max {targets.max().item()}) for a model with {classes} "
            f"outputs per sample"
        )
    return pred == targets


def _batch_masks(model: nn.Module, data: Any, batch_fn: Callable | None, caller: str) -> Iterator[torch.Tensor]:
    """Per-sample correctness of each batch of ``data`` (:func:`_correct_mask`'s checks), in eval
    mode under ``no_grad``, one fixed order of a shuffling loader; the model comes back as it was."""
    check_model(model)
    if batch_fn is not None:
        check_callable(batch_fn, "batch_fn")
    batches = as_batches(data, batch_fn=batch_fn)
    device, dtype = model_device_dtype(model)
    with preserve_model(model), torch.no_grad(), FixedOrder(batches)():
        model.eval()
        for index, (inputs, targets) in enumerate(batches):
            inputs, targets = move_batch(inputs, targets, device, dtype)
            yield _correct_mask(call_model(model, inputs), targets, index, batches.name, caller)


def evaluate_accuracy(model: nn.Module, data: Any, batch_fn: Callable | None = None) -> float:
    """Fraction of correct predictions over the dataset: ``argmax`` of the outputs over the last
    dim against integer targets (or against ``argmax`` of one-hot/probability targets of the
    outputs' shape); batches weighted by size. Eval mode, ``no_grad``; the model is unchanged.
    Non-finite outputs raise ``FloatingPointError`` naming the batch; a model with one output
    per sample (accuracy undefined: ``evaluate_loss`` instead), non-integer targets and labels
    outside ``[0, C)`` raise ``ValueError``. A shuffling DataLoader is read in one fixed order
    (:class:`~phasetrans._batches.FixedOrder`). ``batch_fn(batch) -> (inputs, targets)`` for
    batches of another shape; tuple inputs are the model's positional arguments, dict inputs its
    keyword arguments."""
    correct = total = 0
    for mask in _batch_masks(model, data, batch_fn, "evaluate_accuracy"):
        correct += int(mask.sum().item())
        total += mask.numel()
    # data-parallel: each rank evaluates its shard; the counts are summed over ranks (a rank
    # that passes the whole set counts it world_size times, which leaves the ratio unchanged)
    correct, total = _sum_over_ranks(correct, total, model_device_dtype(model)[0])
    return correct / total


def evaluate_correct(model: nn.Module, data: Any, batch_fn: Callable | None = None) -> np.ndarray:
    """Per-sample correctness of :func:`evaluate_accuracy` (its checks, modes and batch order):
    a flat bool array over the samples of ``data`` in the order they are read (a shuffling
    DataLoader in one fixed order), so ``evaluate_correct(m, d).mean() == evaluate_accuracy(m, d)``.
    Needs every sample on this process: under ``torch.distributed`` it raises ``RuntimeError``
    (gather the evaluation set on one rank). The model is unchanged."""
    from .distributed import is_distributed

    if is_distributed():
        raise RuntimeError("evaluate_correct needs every evaluation sample on one process; under "
                           "torch.distributed call it on one rank with the whole evaluation set")
    parts = [m.reshape(-1).cpu() for m in _batch_masks(model, data, batch_fn, "evaluate_correct")]
    if not parts:
        raise ValueError("data: no batches to evaluate")
    return torch.cat(parts).numpy().astype(bool)


def check_classifier(model: nn.Module, data: Any, name: str = "data",
                     caller: str = "evaluate_accuracy") -> None:
    """The checks of :func:`evaluate_accuracy` on the first batch of ``data`` only (one forward
    pass; the model is unchanged): callers that will measure accuracy after long work (e.g.
    :func:`~phasetrans.validate`) fail before it."""
    check_model(model)
    batches = as_batches(data, name)
    device, dtype = model_device_dtype(model)
    with preserve_model(model), torch.no_grad(), FixedOrder(batches)():
        model.eval()
        for inputs, targets in batches:
            inputs, targets = move_batch(inputs, targets, device, dtype)
            _correct_mask(call_model(model, inputs), targets, 0, name, caller)
            return


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
    with preserve_model(model), torch.no_grad(), FixedOrder(batches)():
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
