"""Shared plumbing of the data-dependent criteria: the weights they cover, the data and loss
checks, per-sample and per-batch gradients (``torch.func``), and the model's outputs.

Every pass runs with the whole model in eval mode (BatchNorm uses its running statistics, dropout
is off) and evaluates the model functionally (``torch.func.functional_call``): the model's own
parameters and buffers are never written. Callers wrap the work in ``preserve_model``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..._batches import Batches, as_batches, batch_size, move_batch
from ..._checks import check_callable, check_scalar_loss, model_device_dtype
from ...params import select_parameters

__all__ = [
    "selected",
    "require_data",
    "per_sample_gradients",
    "batch_gradients",
    "outputs",
    "flatten",
    "unflatten",
]


def selected(model: nn.Module, params: Any) -> list[tuple[str, nn.Parameter]]:
    """The selected parameters (default: the prunable weights) in ``named_parameters`` order."""
    names = set(select_parameters(model, params))
    return [(n, p) for n, p in model.named_parameters() if n in names]


def require_data(criterion: str, data: Any, loss_fn: Any = None, need_loss: bool = True) -> Batches:
    """``data`` as :class:`Batches` and ``loss_fn`` checked, for a criterion that needs them."""
    if data is None:
        raise ValueError(f"criterion={criterion!r} needs data= (batches of (inputs, targets))")
    if need_loss:
        if loss_fn is None:
            raise ValueError(f"criterion={criterion!r} needs loss_fn= (the batch-mean loss)")
        check_callable(loss_fn, "loss_fn")
    return as_batches(data)


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One flat vector of the tensors, in order (row-major)."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def unflatten(flat: torch.Tensor, items: list[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Split a flat vector into ``{name: tensor}`` with the shapes of ``items``."""
    pieces = torch.split(flat, [t.numel() for _, t in items])
    return {n: piece.reshape(t.shape) for (n, t), piece in zip(items, pieces)}


def _args(inputs: Any) -> tuple:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _one_sample(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.unsqueeze(0)
    return type(x)(_one_sample(t) for t in x)


def _loss_function(model: nn.Module, loss_fn: Callable, names: list[str]) -> Callable:
    """``loss(theta, inputs, targets)``: the batch loss with the selected weights from ``theta``
    (a tuple in ``names`` order) and everything else from the model (read, not modified)."""
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in set(names)}
    fixed.update({n: b.detach() for n, b in model.named_buffers()})

    def loss(theta: tuple, inputs: Any, targets: Any) -> torch.Tensor:
        state = dict(fixed)
        state.update(zip(names, theta))
        value = loss_fn(functional_call(model, state, _args(inputs)), targets)
        return check_scalar_loss(value, "loss_fn")

    return loss


def _moved(model: nn.Module, data: Batches) -> Iterator[tuple[int, Any, Any]]:
    device, dtype = model_device_dtype(model)
    for inputs, targets in data:
        yield batch_size(inputs), *move_batch(inputs, targets, device, dtype)


def per_sample_gradients(
    model: nn.Module, names: list[str], data: Batches, loss_fn: Callable, chunk: int | None = None
) -> Iterator[torch.Tensor]:
    """Per batch, the ``(|b|, d)`` matrix of per-sample gradients ``∇ℓ_n`` of the selected weights
    (flattened in order), ``ℓ_n`` = ``loss_fn`` on the batch of the one sample ``n``
    (``vmap(grad)``; ``chunk`` samples at a time bounds the memory)."""
    loss = _loss_function(model, loss_fn, names)
    named = dict(model.named_parameters())
    theta = tuple(named[n].detach() for n in names)

    def sample_loss(th: tuple, x: Any, y: Any) -> torch.Tensor:
        return loss(th, _one_sample(x), _one_sample(y))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0), chunk_size=chunk)
    for _, inputs, targets in _moved(model, data):
        grads = per_sample(theta, inputs, targets)
        yield torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)


def batch_gradients(model: nn.Module, names: list[str], data: Batches, loss_fn: Callable) -> torch.Tensor:
    """The ``(m, d)`` matrix of the ``m`` batch gradients ``∇L_b`` (one per batch of ``data``)."""
    loss = _loss_function(model, loss_fn, names)
    named = dict(model.named_parameters())
    theta = tuple(named[n].detach() for n in names)
    rows = []
    for _, inputs, targets in _moved(model, data):
        rows.append(torch.cat([g.reshape(-1) for g in grad(loss)(theta, inputs, targets)]))
    return torch.stack(rows)


def outputs(
    model: nn.Module, data: Batches, replace: dict[str, torch.Tensor] | None = None
) -> Iterator[tuple[int, torch.Tensor]]:
    """Per batch, ``(|b|, f(x))``, with the parameters in ``replace`` substituted (functionally)."""
    state = {n: p.detach() for n, p in model.named_parameters()}
    state.update({n: b.detach() for n, b in model.named_buffers()})
    if replace:
        state.update(replace)
    with torch.no_grad():
        for size, inputs, _ in _moved(model, data):
            out = functional_call(model, state, _args(inputs))
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"model: the layer-adaptive distortion needs a tensor output, got "
                    f"{type(out).__name__}"
                )
            yield size, out
