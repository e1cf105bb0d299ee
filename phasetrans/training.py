"""l1-regularised training (the LOMP recipe), masked fine-tuning, and evaluation.

``train_l1`` minimises ``L(w) + λ₁ ‖w‖₁`` over the prunable weights ``w`` (THEORY §3 last bullet),
the training recipe of Zhang et al., "How Sparse Can We Prune A Deep Network" (NeurIPS 2024):
SGD with momentum, a linear warm-up, then a step or cosine learning-rate schedule stepped once per
epoch. The l1 penalty drives most weights towards zero, so ``R(s)`` stays small up to high
sparsity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ._batches import as_batches, batch_size, move_batch
from ._checks import (
    check_choice,
    check_float,
    check_int,
    check_model,
    check_seed,
    model_device_dtype,
    preserve_model,
)
from .params import select_parameters

__all__ = [
    "TrainHistory",
    "lr_at_epoch",
    "train_l1",
    "finetune_masked",
    "evaluate_accuracy",
    "evaluate_loss",
]

SCHEDULES = ("cosine", "step", "constant")


def lr_at_epoch(
    epoch: int,
    lr: float,
    epochs: int,
    warmup_epochs: int = 0,
    schedule: str = "cosine",
    step_size: int = 30,
    gamma: float = 0.1,
) -> float:
    """Learning rate of epoch ``e`` (0-based), constant within the epoch.

    Warm-up (``e < W``): ``lr·(e+1)/W``. Then, with ``t = e − W`` and ``T = epochs − W``:
    ``cosine``: ``lr·½(1 + cos(π t/T))``; ``step``: ``lr·γ^⌊t/step_size⌋``; ``constant``: ``lr``.
    """
    epoch = check_int(epoch, "epoch", minimum=0)
    epochs = check_int(epochs, "epochs", minimum=1)
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0, maximum=epochs)
    lr = check_float(lr, "lr", minimum=0.0, strict_minimum=True)
    schedule = check_choice(schedule, "schedule", SCHEDULES)
    step_size = check_int(step_size, "step_size", minimum=1)
    gamma = check_float(gamma, "gamma", minimum=0.0)
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    t, T = epoch - warmup_epochs, epochs - warmup_epochs
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * t / T))
    if schedule == "step":
        return lr * gamma ** (t // step_size)
    return lr


@dataclass
class TrainHistory:
    """Per-epoch record of :func:`train_l1`: ``loss`` (dataset mean of the data loss over the
    epoch's batches, weighted by size), ``penalty`` (``λ₁‖w‖₁``, batch-size-weighted mean over the
    epoch), ``lr`` (the epoch's learning rate), ``eval`` (values of ``eval_fn`` after each epoch)."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        return asdict(self)


def _check_callable(value: Any, name: str) -> Callable:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


def train_l1(
    model: nn.Module,
    loss_fn: Callable,
    data: Any,
    l1: float,
    epochs: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    warmup_epochs: int = 0,
    schedule: str = "cosine",
    step_size: int = 30,
    gamma: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    params: Any = None,
    eval_fn: Callable[[nn.Module], Any] | None = None,
) -> TrainHistory:
    """Train ``model`` IN PLACE on ``L(w) + l1·Σ|w|`` (LOMP, Zhang et al. NeurIPS 2024).

    SGD (``momentum``, ``weight_decay`` on all trainable parameters); the l1 penalty applies to the
    ``params`` selection only (default: the prunable weights). Learning rate per epoch from
    :func:`lr_at_epoch` (linear warm-up, then ``schedule``). Runs under a forked RNG seeded with
    ``seed`` (dropout, and a DataLoader's default shuffling, become deterministic; the global RNG
    is left untouched). ``eval_fn(model)`` runs after each epoch (the model is restored after it).
    Train/eval mode, ``requires_grad`` and ``.grad`` come back as they were; parameters and
    buffers keep the trained values. Returns a :class:`TrainHistory`.
    """
    check_model(model)
    _check_callable(loss_fn, "loss_fn")
    batches = as_batches(data)
    l1 = check_float(l1, "l1", minimum=0.0)
    epochs = check_int(epochs, "epochs", minimum=1)
    lr = check_float(lr, "lr", minimum=0.0, strict_minimum=True)
    momentum = check_float(momentum, "momentum", minimum=0.0)
    weight_decay = check_float(weight_decay, "weight_decay", minimum=0.0)
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0, maximum=epochs)
    schedule = check_choice(schedule, "schedule", SCHEDULES)
    step_size = check_int(step_size, "step_size", minimum=1)
    gamma = check_float(gamma, "gamma", minimum=0.0)
    seed = check_seed(seed)
    if eval_fn is not None:
        _check_callable(eval_fn, "eval_fn")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
    names = set(select_parameters(model, params))
    penalised = [p for n, p in model.named_parameters() if n in names]
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("model has no parameters with requires_grad=True to train")
    device, dtype = model_device_dtype(model)
    schedule_args = dict(
        lr=lr, epochs=epochs, warmup_epochs=warmup_epochs, schedule=schedule,
        step_size=step_size, gamma=gamma,
    )

    from tqdm.auto import tqdm

    history = TrainHistory()
    saved_grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]
    saved_modes = {n: m.training for n, m in model.named_modules()}
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay)
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(seed)
            bar = tqdm(range(epochs), desc="train_l1", disable=not progress, leave=False)
            for epoch in bar:
                epoch_lr = lr_at_epoch(epoch, **schedule_args)
                for group in optimizer.param_groups:
                    group["lr"] = epoch_lr
                model.train()
                loss_sum = penalty_sum = 0.0
                count = 0
                for inputs, targets in batches:
                    inputs, targets = move_batch(inputs, targets, device, dtype)
                    n = batch_size(inputs)
                    loss = loss_fn(model(inputs), targets)
                    penalty = sum(p.abs().sum() for p in penalised) * l1
                    total = loss + penalty
                    if not torch.isfinite(total.detach()):
                        raise FloatingPointError(
                            f"train_l1: non-finite loss {float(total.detach())} at epoch {epoch}; "
                            f"lower lr (got {epoch_lr})"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    optimizer.step()
                    loss_sum += float(loss.detach()) * n
                    penalty_sum += float(penalty.detach()) * n
                    count += n
                history.epoch.append(epoch)
                history.loss.append(loss_sum / count)
                history.penalty.append(penalty_sum / count)
                history.lr.append(epoch_lr)
                if eval_fn is not None:
                    with preserve_model(model):
                        history.eval.append(eval_fn(model))
                bar.set_postfix(loss=f"{loss_sum / count:.4g}", penalty=f"{penalty_sum / count:.3g}")
            bar.close()
    finally:
        for p, g in saved_grads:
            p.grad = g
        for n, m in model.named_modules():
            if n in saved_modes:
                m.training = saved_modes[n]
    return history


def finetune_masked(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    loss_fn: Callable,
    data: Any,
    steps: int,
    lr: float = 1e-2,
    momentum: float = 0.9,
    seed: int = 0,
) -> nn.Module:
    """Re-fit IN PLACE on the fixed support of ``masks``: ``steps`` SGD steps (cycling through
    ``data``) on ``L``, pruned weights held at zero (gradients masked, weights re-zeroed after
    each step). The theory's "prune, then re-fit on the kept support" (THEORY §4). Mode,
    ``requires_grad`` and ``.grad`` come back as they were. Returns ``model``."""
    from .pruning import _check_masks

    check_model(model)
    checked = _check_masks(model, masks)
    _check_callable(loss_fn, "loss_fn")
    batches = as_batches(data)
    steps = check_int(steps, "steps", minimum=0)
    lr = check_float(lr, "lr", minimum=0.0, strict_minimum=True)
    momentum = check_float(momentum, "momentum", minimum=0.0)
    seed = check_seed(seed)
    if steps == 0:
        return model
    device, dtype = model_device_dtype(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("model has no parameters with requires_grad=True to re-fit")
    held = [(p, ~m.to(p.device)) for p, m in checked.values()]
    saved_grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]
    saved_modes = {n: m.training for n, m in model.named_modules()}
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=momentum)
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(seed)
            model.train()
            with torch.no_grad():
                for p, off in held:
                    p.masked_fill_(off, 0)
            done = 0
            while done < steps:
                for inputs, targets in batches:
                    inputs, targets = move_batch(inputs, targets, device, dtype)
                    loss = loss_fn(model(inputs), targets)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    for p, off in held:
                        if p.grad is not None:
                            p.grad.masked_fill_(off, 0)
                    optimizer.step()
                    with torch.no_grad():
                        for p, off in held:
                            p.masked_fill_(off, 0)
                    done += 1
                    if done >= steps:
                        break
    finally:
        for p, g in saved_grads:
            p.grad = g
        for n, m in model.named_modules():
            if n in saved_modes:
                m.training = saved_modes[n]
    return model


def evaluate_accuracy(model: nn.Module, data: Any) -> float:
    """Fraction of correct predictions over the dataset: ``argmax`` of the outputs over the last
    dim against integer targets (or against ``argmax`` of one-hot/probability targets of the
    outputs' shape); batches weighted by size. Eval mode, ``no_grad``; the model is unchanged."""
    check_model(model)
    batches = as_batches(data)
    device, dtype = model_device_dtype(model)
    correct = total = 0
    with preserve_model(model), torch.no_grad():
        model.eval()
        for inputs, targets in batches:
            inputs, targets = move_batch(inputs, targets, device, dtype)
            outputs = model(inputs)
            if not isinstance(outputs, torch.Tensor):
                raise TypeError(f"model outputs must be a tensor, got {type(outputs).__name__}")
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
    return correct / total


def evaluate_loss(model: nn.Module, loss_fn: Callable, data: Any) -> float:
    """Dataset-mean loss ``Σ_b |b|·loss_fn(model(x_b), y_b) / Σ_b |b|`` (``loss_fn`` returns the
    batch mean). Eval mode, ``no_grad``; the model is unchanged."""
    check_model(model)
    _check_callable(loss_fn, "loss_fn")
    batches = as_batches(data)
    device, dtype = model_device_dtype(model)
    total = 0.0
    count = 0
    with preserve_model(model), torch.no_grad():
        model.eval()
        for inputs, targets in batches:
            inputs, targets = move_batch(inputs, targets, device, dtype)
            n = batch_size(inputs)
            loss = loss_fn(model(inputs), targets)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ValueError("loss_fn must return a scalar tensor (the batch mean)")
            total += float(loss) * n
            count += n
    return total / count
