"""Argument checks and the model-state guard shared by every public entry point.

Every public function validates its arguments with these helpers, so that bad input raises a
``ValueError`` or ``TypeError`` that names the argument and says what was expected, and wraps any
work on a user's model in :func:`preserve_model`, so that the model comes back bit-for-bit as it
went in (parameters, gradients, buffers, ``requires_grad`` and train/eval mode), also when the
call fails midway.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = [
    "check_model",
    "check_int",
    "check_float",
    "check_fraction",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_seed",
    "check_float_dtype",
    "check_scalar_loss",
    "check_differentiable",
    "NonScalarLossError",
    "preserve_model",
    "model_fingerprint",
    "model_device_dtype",
    "check_materialised",
    "MAX_SEED",
]


def check_model(model: Any, name: str = "model") -> nn.Module:
    """Return ``model`` if it is an ``nn.Module``, else raise ``TypeError``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (bools refused) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(
    value: Any,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
    allow_inf: bool = False,
) -> float:
    """A real number, finite (unless ``allow_inf``) and within the given bounds.

    ``strict_minimum=True`` makes the lower bound exclusive (``value > minimum``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if (isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex()
                and value.dtype != torch.bool):
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        if strict_minimum and not value > minimum:
            raise ValueError(f"{name} must be > {minimum}, got {value}")
        if not strict_minimum and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_fraction(value: Any, name: str) -> float:
    """A finite number in ``[0, 1]`` (a sparsity or a kept fraction)."""
    return check_float(value, name, minimum=0.0, maximum=1.0)


def check_bool(value: Any, name: str) -> bool:
    """``True`` or ``False`` (not merely truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} ({value!r})")
    return value


def check_callable(value: Any, name: str) -> Callable:
    """A callable (a function, a module, an object with ``__call__``)."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


#: The largest seed a ``torch.Generator`` accepts (``manual_seed`` takes 64-bit unsigned seeds).
MAX_SEED = 2**64 - 1


def check_seed(seed: Any, name: str = "seed") -> int:
    """A non-negative integer seed below ``2**64`` (what ``torch.Generator.manual_seed`` takes)."""
    return check_int(seed, name, minimum=0, maximum=MAX_SEED)


def check_float_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """A floating ``torch.dtype`` (e.g. ``torch.float32``)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating torch.dtype (e.g. torch.float32), got {dtype!r}")
    return dtype


class NonScalarLossError(TypeError, ValueError):
    """``loss_fn`` returned something other than a one-element tensor.

    Both a ``TypeError`` (the wrong kind of return value) and a ``ValueError`` (a tensor of the
    wrong shape): the callers raised one or the other before this check was shared, and code that
    catches either keeps working (as numpy's ``AxisError`` is both ``ValueError`` and
    ``IndexError``)."""


def check_scalar_loss(loss: Any, name: str = "loss_fn", where: str = "") -> torch.Tensor:
    """``loss`` if it is a one-element tensor (a batch mean), else :class:`NonScalarLossError`
    naming ``name`` and, when given, ``where`` (e.g. ``"at epoch 0, batch 3"``)."""
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else ""
        raise NonScalarLossError(
            f"{name} must return a scalar tensor (the batch mean), got {type(loss).__name__}"
            f"{shape}" + (f" {where}" if where else "")
        )
    return loss


def check_materialised(model: nn.Module, name: str = "model") -> nn.Module:
    """``ValueError`` when a parameter or buffer of ``model`` is on the ``meta`` device (shapes
    without values: nothing can be computed from them)."""
    for n, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.device.type == "meta":
            raise ValueError(
                f"{name}: {n!r} is on the meta device (it has a shape but no values); "
                f"materialise the model first, e.g. model.to_empty(device='cpu') and "
                f"load_state_dict(...)"
            )
    return model


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter (CPU/float32 if none);
    ``ValueError`` for a model on the meta device (:func:`check_materialised`)."""
    check_materialised(model)
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    for b in model.buffers():
        if b.is_floating_point():
            return b.device, b.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _structure(model: nn.Module) -> list[tuple]:
    """What the values do not show: every submodule's name and class, its parameter and buffer
    slots (``None`` where a slot holds ``None``), and the number of hooks of each kind (forward,
    pre-forward, backward, state-dict ...) registered on it. No object identities, so that two
    models built alike have equal fingerprints (a submodule swapped for an equal one of the same
    class is not seen: it computes the same)."""
    out = []
    for name, m in model.named_modules(remove_duplicate=False):
        hooks = tuple(
            (k, len(v)) for k, v in sorted(vars(m).items()) if k.endswith("hooks") and isinstance(v, dict)
        )
        out.append((
            name, type(m).__qualname__, hooks,
            tuple((k, p is None) for k, p in m._parameters.items()),
            tuple((k, b is None) for k, b in m._buffers.items()),
        ))
    return out


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """A copy of everything :func:`preserve_model` promises to keep: for tests and assertions.

    Values (parameters, gradients, buffers: bits, dtype, shape, device), ``requires_grad``, every
    submodule's mode, and the structure (:func:`_structure`: submodules, which parameter and buffer
    objects fill each slot, the hooks). Compare two fingerprints of one model with
    :func:`fingerprints_equal` (bitwise, NaN-safe).
    """
    check_model(model)
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {
            n: (None if p.grad is None else p.grad.detach().clone())
            for n, p in model.named_parameters()
        },
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "training": {n: m.training for n, m in model.named_modules()},
        "structure": _structure(model),
    }


def _bitwise_equal(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.is_floating_point() or a.is_complex():
        # view as integers so that NaN payloads and signed zeros compare bit for bit
        width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
        if a.is_complex():
            a, b = torch.view_as_real(a), torch.view_as_real(b)
        a = a.contiguous().view(width[a.element_size()])
        b = b.contiguous().view(width[b.element_size()])
    return bool(torch.equal(a, b))


def fingerprints_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two :func:`model_fingerprint` results are bit-for-bit identical."""
    for key in ("requires_grad", "training", "structure"):
        if a.get(key) != b.get(key):
            return False
    for key in ("params", "grads", "buffers"):
        if a[key].keys() != b[key].keys():
            return False
        if not all(_bitwise_equal(a[key][n], b[key][n]) for n in a[key]):
            return False
    return True


def snapshot_grads_and_modes(model: nn.Module) -> Callable[[], None]:
    """For calls that train in place: record every parameter's ``.grad`` and every submodule's
    train/eval mode, and return a function that puts them back (the trained values stay)."""
    grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]
    modes = {n: m.training for n, m in model.named_modules()}

    def restore() -> None:
        for p, g in grads:
            p.grad = g
        for n, m in model.named_modules():
            if n in modes:
                m.training = modes[n]

    return restore


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` view the same memory the same way (``p.data`` is a new object each time)."""
    return (a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.dtype == b.dtype
            and a.shape == b.shape and a.stride() == b.stride() and a.device == b.device
            and a.storage_offset() == b.storage_offset())


class _ModuleState:
    """One submodule's own state, enough to undo what a callback may do to it: its class (a
    parametrisation swaps it), its attribute dict, and a shallow copy of each dict/set in it
    (``_parameters``, ``_buffers``, ``_modules``, the hook dicts, the non-persistent buffer set),
    since those are mutated in place by ``register_parameter``, ``del m.bias``, ``m[0] = ...``,
    ``register_forward_hook`` ...; plus, per parameter object, its ``.data`` tensor, a copy of
    its values, its ``.grad`` and ``requires_grad``, and per buffer object a copy of its values."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.cls = module.__class__
        self.attrs = dict(vars(module))
        self.inner = {k: v.copy() for k, v in self.attrs.items() if isinstance(v, (dict, set))}
        self.params = [
            (p, p.data, p.detach().clone(), None if p.grad is None else p.grad.detach().clone(),
             p.requires_grad)
            for p in module._parameters.values() if p is not None
        ]
        self.buffers = [(b, b.detach().clone()) for b in module._buffers.values() if b is not None]

    def restore_structure(self) -> None:
        m = self.module
        if m.__class__ is not self.cls:
            m.__class__ = self.cls
        attrs = vars(m)
        attrs.clear()
        attrs.update(self.attrs)
        for k, v in self.inner.items():
            attrs[k].clear()
            attrs[k].update(v)

    def restore_values(self) -> None:
        for p, data, values, grad, requires_grad in self.params:
            if not _same_tensor(p.data, data):
                p.data = data  # a callback replaced .data (a dtype cast, another tensor)
            if not _bitwise_equal(p.data, values):
                p.data.copy_(values)
            p.grad = grad
            p.requires_grad_(requires_grad)
        for b, values in self.buffers:
            if b.shape != values.shape or b.dtype != values.dtype or b.device != values.device:
                b.data = values
            elif not _bitwise_equal(b, values):
                b.copy_(values)


@contextlib.contextmanager
def preserve_model(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block on ``model`` and put it back bit-for-bit afterwards, also on exceptions.

    Restores parameter values (in place, so the ``Parameter`` objects users hold stay valid),
    gradients, buffers, ``requires_grad`` flags and each submodule's train/eval mode; and the
    structure: a parameter, buffer, submodule or plain attribute added by the block is removed,
    one deleted or swapped is put back (the original object), a dtype or device cast is undone,
    hooks registered by the block are removed and a parametrisation registered by it is undone
    (the submodule's class and attribute dict are restored). Global hooks (``torch.nn.modules.
    module.register_module_forward_hook``) are outside the model and are not tracked.
    """
    check_model(model)
    states = [_ModuleState(m) for m in model.modules()]
    try:
        yield model
    finally:
        with torch.no_grad():
            for state in states:
                state.restore_structure()
            for state in states:
                state.restore_values()


def check_differentiable(loss: torch.Tensor, caller: str, where: str) -> None:
    """``ValueError`` when the loss carries no gradient (``loss_fn`` detached it, or computed
    it under ``no_grad``): training on it would only follow the penalty, silently."""
    if not loss.requires_grad:
        raise ValueError(
            f"{caller}: loss_fn returned a loss with no gradient {where} (detached, .item() "
            f"turned back into a tensor, or computed under torch.no_grad()); the weights would "
            f"not learn from the data; return the loss of the model's outputs with its graph"
        )
