"""Masked fine-tuning: a short re-fit of a pruned network on its kept support.

:func:`finetune_masked` runs SGD steps with the pruned entries' gradients zeroed and the weights
re-zeroed after each step, so the support never grows back (THEORY §4: the "prune, then re-fit on
the kept support" measurement behind ``find_threshold(refit=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ._batches import as_batches, call_model, move_batch
from ._checks import (
    check_callable,
    check_differentiable,
    check_float,
    check_int,
    check_model,
    check_scalar_loss,
    check_seed,
    model_device_dtype,
    snapshot_grads_and_modes,
)
from .params import check_masks
from .train import rng_devices

__all__ = ["finetune_masked"]


def _masked_step(model: nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer,
                 held: list[tuple[nn.Parameter, torch.Tensor]], inputs: Any, targets: Any,
                 where: str, lr: float) -> None:
    """One SGD step with the pruned entries' gradients zeroed and the weights re-zeroed after."""
    loss = check_scalar_loss(loss_fn(call_model(model, inputs), targets), where=where)
    check_differentiable(loss, "finetune_masked", where)
    if not torch.isfinite(loss.detach()):
        raise FloatingPointError(
            f"finetune_masked: non-finite loss {float(loss.detach())} {where}; the weights are "
            f"those before this step; lower lr (got {lr}) or check the data"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for p, off in held:
        if p.grad is not None:
            p.grad.masked_fill_(off, 0)
    optimizer.step()
    with torch.no_grad():
        for p, off in held:
            p.masked_fill_(off, 0)


def finetune_masked(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    loss_fn: Callable,
    data: Any,
    steps: int,
    lr: float = 1e-2,
    momentum: float = 0.9,
    seed: int = 0,
    batch_fn: Callable[[Any], Any] | None = None,
) -> nn.Module:
    """Re-fit IN PLACE on the fixed support of ``masks``: ``steps`` SGD steps (cycling through
    ``data``) on ``L``, pruned weights held at zero (gradients masked, weights re-zeroed after
    each step). The theory's "prune, then re-fit on the kept support" (THEORY §4). Mode,
    ``requires_grad`` and ``.grad`` come back as they were. ``batch_fn`` as in
    :func:`train_l1`. Returns ``model``."""
    check_model(model)
    checked = check_masks(model, masks)
    check_callable(loss_fn, "loss_fn")
    if batch_fn is not None:
        check_callable(batch_fn, "batch_fn")
    batches = as_batches(data, batch_fn=batch_fn)
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
    restore_grads_and_modes = snapshot_grads_and_modes(model)
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=momentum)
    try:
        with torch.random.fork_rng(devices=rng_devices(device)):
            torch.manual_seed(seed)
            model.train()
            with torch.no_grad():
                for p, off in held:
                    p.masked_fill_(off, 0)
            done = 0
            while done < steps:
                for index, (inputs, targets) in enumerate(batches):
                    inputs, targets = move_batch(inputs, targets, device, dtype)
                    _masked_step(model, loss_fn, optimizer, held, inputs, targets,
                                 f"at step {done}, batch {index}", lr)
                    done += 1
                    if done >= steps:
                        break
    finally:
        restore_grads_and_modes()
    return model
