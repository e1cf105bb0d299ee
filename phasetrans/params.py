"""Which parameters are pruned: the weights of ``nn.Linear`` and ``nn.Conv{1,2,3}d`` layers.

Biases and normalisation parameters are never pruned and are held fixed (THEORY §1). Also the
two facts about a pruning that every layer above needs without pruning anything: how many
weights ``⌈sD⌉`` a sparsity prunes (:func:`pruned_count`, used by the theory and by pruning) and
whether a ``{name: BoolTensor}`` mask dict fits a model (:func:`check_masks`, used by pruning
and by the masked re-fit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from ._checks import check_fraction, check_materialised, check_model

__all__ = [
    "PRUNABLE_LAYER_TYPES",
    "ParamSelection",
    "prunable_parameters",
    "select_parameters",
    "pruned_count",
    "check_masks",
]

#: A parameter selection: ``None`` (the prunable weights), ``"all"`` (every floating parameter)
#: or a sequence of parameter names.
ParamSelection = None | Literal["all"] | Sequence[str]

#: Layer types whose ``weight`` is prunable.
PRUNABLE_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model``, ``{qualified name: Parameter}`` in module order.

    The weight of every ``nn.Linear`` and ``nn.Conv{1,2,3}d`` (subclasses included). Shared
    weights appear once, under their first name. A layer whose ``weight`` is computed rather than
    a parameter (``torch.nn.utils.parametrize``: ``weight_norm``, ``spectral_norm``, orthogonal;
    the hook-based ``torch.nn.utils.weight_norm``; ``torch.nn.utils.prune``'s
    ``weight_orig``/``weight_mask``) raises ``ValueError`` naming the layer: its magnitudes and
    its Hessian are not those of one tensor of free weights, and leaving it out would silently
    shrink ``D``. Remove the parametrisation first (``parametrize.remove_parametrizations``,
    ``remove_weight_norm``, ``prune.remove``), or pass ``params`` as a list of parameter names.
    """
    check_model(model)
    found: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_LAYER_TYPES):
            _check_plain_weight(module_name, module)
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and id(weight) not in seen:
                seen.add(id(weight))
                found[f"{module_name}.weight" if module_name else "weight"] = weight
    return found


def _check_plain_weight(module_name: str, module: nn.Module) -> None:
    """``ValueError`` when a prunable layer's ``weight`` is not a plain ``nn.Parameter``."""
    from torch.nn.utils import parametrize

    kind = None
    if parametrize.is_parametrized(module, "weight"):
        kind = ("a torch.nn.utils.parametrize parametrisation (weight_norm, spectral_norm, ...); "
                "remove it with torch.nn.utils.parametrize.remove_parametrizations(layer, 'weight')")
    elif "weight" not in module._parameters and module.__dict__.get("weight") is not None:
        if "weight_orig" in module._parameters:
            kind = "torch.nn.utils.prune's weight_orig/weight_mask; make it plain with prune.remove(layer, 'weight')"
        else:
            kind = ("a weight computed from other parameters (e.g. torch.nn.utils.weight_norm's "
                    "weight_g/weight_v); make it a plain parameter first (remove_weight_norm)")
    if kind is not None:
        raise ValueError(
            f"model: layer {module_name or '(root)'!r} ({type(module).__name__}) has a weight "
            f"that is not a plain parameter but {kind}; or pass params as a list of parameter names"
        )


def select_parameters(
    model: nn.Module, params: ParamSelection = None, name: str = "params"
) -> list[str]:
    """Resolve a parameter selection to an ordered list of parameter names.

    ``params``: ``None`` (the prunable weights), ``"all"`` (every floating parameter), or a
    sequence of parameter names of ``model``.
    """
    check_materialised(check_model(model))
    named = dict(model.named_parameters())
    if params is None:
        names = list(prunable_parameters(model))
        if not names:
            raise ValueError(
                f"model has no prunable weights (nn.Linear / nn.Conv1d/2d/3d) for {name}=None; "
                f"pass {name}='all' or a list of parameter names"
            )
        return names
    if isinstance(params, str):
        if params != "all":
            raise ValueError(
                f"{name} must be None, 'all' or a list of parameter names, got {params!r}"
            )
        names = [n for n, p in named.items() if p.is_floating_point()]
        if not names:
            raise ValueError(f"model has no floating parameters for {name}='all'")
        return names
    if isinstance(params, dict):
        params = list(params)
    if not isinstance(params, Sequence) or not all(isinstance(n, str) for n in params):
        raise TypeError(
            f"{name} must be None, 'all' or a list of parameter names (str), got "
            f"{type(params).__name__}"
        )
    if len(params) == 0:
        raise ValueError(f"{name} must name at least one parameter, got an empty list")
    unknown = [n for n in params if n not in named]
    if unknown:
        raise ValueError(
            f"{name} names parameters the model does not have: {unknown}; "
            f"available: {list(named)[:20]}{' ...' if len(named) > 20 else ''}"
        )
    if len(set(params)) != len(params):
        raise ValueError(f"{name} lists a parameter more than once: {list(params)}")
    non_float = [n for n in params if not named[n].is_floating_point()]
    if non_float:
        raise ValueError(f"{name}: parameters must be floating point, got {non_float}")
    return list(params)



def pruned_count(sparsity: float, total: int) -> int:
    """``⌈s·D⌉`` with float error guarded: ``ceil(s·D − δ)``, ``δ = max(1e-9, 64·eps·s·D)``.

    ``sparsity`` must be a finite number in ``[0, 1]``; ``total`` a non-negative integer.
    """
    s = check_fraction(sparsity, "sparsity")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"total must be a non-negative integer, got {total!r}")
    x = s * total
    delta = max(1e-9, 64 * 2.220446049250313e-16 * x)
    return min(total, max(0, math.ceil(x - delta)))


def check_masks(model: nn.Module, masks: Any) -> dict[str, tuple[nn.Parameter, torch.Tensor]]:
    """``{name: (parameter, mask)}`` for a mask dict ``{parameter name: BoolTensor}`` that fits
    ``model`` (``True`` = kept): ``TypeError`` for a non-dict or a non-bool mask, ``ValueError``
    for a name the model does not have or a shape that differs from the parameter's."""
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks must be a dict {{name: BoolTensor}}, got {type(masks).__name__}")
    named = dict(model.named_parameters())
    out = {}
    for name, mask in masks.items():
        if name not in named:
            raise ValueError(f"masks names a parameter the model does not have: {name!r}")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"masks[{name!r}] must be a bool tensor, got {type(mask).__name__}"
                            + (f" of dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else ""))
        if mask.shape != named[name].shape:
            raise ValueError(
                f"masks[{name!r}] has shape {tuple(mask.shape)}, expected "
                f"{tuple(named[name].shape)}"
            )
        out[name] = (named[name], mask)
    return out
