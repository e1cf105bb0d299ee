"""The dataset-mean loss as a loop over batches: modes, functional loss, size-weighted sums.

The quantities of the dataset-mean loss weight each batch by its size (THEORY §6)::

    L = sum_b (|b| / N) L_b,        N = sum_b |b|

so an uneven last batch is exact. Data-parallel: each rank loops over its shard, and the sums and
sample counts are all-reduced (:func:`reduce_sum`), per-batch values all-gathered
(:func:`gather_batches`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call

from .._batches import batch_size, model_args, move_batch
from .._checks import check_scalar_loss
from ..params import keep_torch_prune_attributes, torch_pruned_masks

__all__ = [
    "BatchNormMode", "BATCHNORM_TYPES", "batchnorm_modes", "math_attention", "pass_modes",
    "FixedState", "fixed_state", "batch_loss",
    "check_batch_loss", "sized_batches", "reduce_sum", "gather_batches",
]

BatchNormMode = Literal["eval", "train"]

BATCHNORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


@contextlib.contextmanager
def batchnorm_modes(model: nn.Module, batchnorm: BatchNormMode) -> Iterator[None]:
    """Eval mode for the whole model during a pass (BatchNorm in train mode with
    ``batchnorm="train"``); every module's mode is put back afterwards."""
    saved = [(m, m.training) for m in model.modules()]
    for m in model.modules():
        m.training = batchnorm == "train" and isinstance(m, BATCHNORM_TYPES)
    try:
        yield
    finally:
        for m, mode in saved:
            m.training = mode


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """``F.scaled_dot_product_attention`` (inside ``nn.MultiheadAttention`` and the Transformer
    layers) on its math kernel: the fused CPU/GPU kernels have no forward-mode AD and no double
    backward, the math kernel (the same attention, composite ops) has both, so Hessian products
    through attention are exact."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch without the API
        yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield


@contextlib.contextmanager
def pass_modes(model: nn.Module, batchnorm: BatchNormMode) -> Iterator[None]:
    """Everything a pass over the data sets and puts back: :func:`batchnorm_modes`,
    :func:`math_attention`, and the effective tensors that ``torch.nn.utils.prune``'s hooks
    store on their modules in each forward (a functional forward would leave traced tensors
    there)."""
    with keep_torch_prune_attributes(model), batchnorm_modes(model, batchnorm), math_attention():
        yield


class FixedState(dict):
    """``{name: tensor}`` of what a pass holds fixed, with the names of the buffers among them
    (``buffer_names``), which :func:`batch_loss` hands to the model as fresh copies."""

    buffer_names: frozenset = frozenset()


def fixed_state(model: nn.Module, param_names: list[str], batchnorm: BatchNormMode) -> FixedState:
    """The parameters not in ``param_names`` and the buffers, detached (the buffers are copied
    per batch by :func:`batch_loss`, so that nothing done in a forward pass can touch them).

    A selected ``<name>_orig`` of ``torch.nn.utils.prune`` is passed its effective value
    (:func:`~phasetrans.params.effective_values`) and its ``<name>_mask`` is replaced by ones,
    so that the products are those of the effective weight, as for a plain layer."""
    state = FixedState((n, p.detach()) for n, p in model.named_parameters() if n not in param_names)
    buffers = dict(model.named_buffers())
    state.update((n, b.detach()) for n, b in buffers.items())
    state.buffer_names = frozenset(buffers)
    for n, mask in torch_pruned_masks(model).items():
        if n in param_names:
            state[n[: -len("_orig")] + "_mask"] = torch.ones_like(mask)
    return state


def batch_loss(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    params: dict[str, torch.Tensor],
    fixed: dict,
    inputs: Any,
    targets: Any,
) -> torch.Tensor:
    """The batch loss with the selected parameters taken from ``params`` (name -> tensor)
    and the others from ``fixed`` (``torch.func.functional_call``: the model is not modified)."""
    state = dict(fixed)
    # a forward may update buffers even in eval mode (a counter, an EMA, BatchNorm with
    # batchnorm="train"): each batch gets fresh copies, so the user's buffers never change and
    # every batch sees the same values (cost: one copy of the buffers per batch and product,
    # small beside a forward: BatchNorm statistics are 2 floats per channel)
    for name in getattr(fixed, "buffer_names", ()):
        state[name] = fixed[name].clone()
    state.update(params)
    args, kwargs = model_args(inputs)
    outputs = functional_call(model, state, args, kwargs)
    return loss_fn(outputs, targets)


def check_batch_loss(loss: torch.Tensor, index: int) -> None:
    """``NonScalarLossError`` (a ``TypeError``) unless ``loss`` is a scalar tensor, ``ValueError`` if it is not finite."""
    check_scalar_loss(loss, "loss_fn", f"at batch {index}")
    if not torch.isfinite(loss).all():
        raise ValueError(f"non-finite loss ({loss.item()}) at batch {index} of data")


def sized_batches(data: Any, device: torch.device, dtype: torch.dtype):
    """``(index, size, (inputs, targets))`` per batch of ``data``, moved to ``device``/``dtype``."""
    for index, (inputs, targets) in enumerate(data):
        yield index, batch_size(inputs), move_batch(inputs, targets, device, dtype)


def reduce_sum(total: torch.Tensor, count: int, distributed: bool) -> tuple[torch.Tensor, int]:
    """The size-weighted sum ``total`` (in place) and the sample ``count``, summed over ranks."""
    if not distributed:
        return total, count
    import torch.distributed as dist

    n = torch.tensor([float(count)], dtype=torch.float64, device=total.device)
    dist.all_reduce(total)
    dist.all_reduce(n)
    return total, int(round(n.item()))


def gather_batches(
    losses: list[float], sizes: list[int], distributed: bool
) -> tuple[list[float], list[int]]:
    """Per-batch losses and sizes of every rank, in rank order, on every rank."""
    if not distributed:
        return losses, sizes
    from ..distributed import all_gather_list

    return all_gather_list(losses), all_gather_list(sizes)
