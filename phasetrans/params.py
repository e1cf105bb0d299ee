"""Which parameters are pruned: the weights of ``nn.Linear`` and ``nn.Conv{1,2,3}d`` layers.

Biases and normalisation parameters are never pruned and are held fixed (THEORY §1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ._checks import check_model

__all__ = ["PRUNABLE_LAYER_TYPES", "prunable_parameters", "select_parameters"]

#: Layer types whose ``weight`` is prunable.
PRUNABLE_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model``, ``{qualified name: Parameter}`` in module order.

    The weight of every ``nn.Linear`` and ``nn.Conv{1,2,3}d`` (subclasses included). Shared
    weights appear once, under their first name.
    """
    check_model(model)
    found: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_LAYER_TYPES):
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and id(weight) not in seen:
                seen.add(id(weight))
                found[f"{module_name}.weight" if module_name else "weight"] = weight
    return found


def select_parameters(model: nn.Module, params: Any = None, name: str = "params") -> list[str]:
    """Resolve a parameter selection to an ordered list of parameter names.

    ``params``: ``None`` (the prunable weights), ``"all"`` (every floating parameter), or a
    sequence of parameter names of ``model``.
    """
    check_model(model)
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

