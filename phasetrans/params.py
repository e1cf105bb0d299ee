"""Which parameters are pruned: the weights of ``nn.Linear`` and ``nn.Conv{1,2,3}d`` layers and the
input projections of ``nn.MultiheadAttention`` (:func:`prunable_parameters` spells the set out).

Biases and normalisation parameters are never pruned and are held fixed (THEORY §1). Also the
two facts about a pruning that every layer above needs without pruning anything: how many
weights ``⌈sD⌉`` a sparsity prunes (:func:`pruned_count`, used by the theory and by pruning) and
whether a ``{name: BoolTensor}`` mask dict fits a model (:func:`check_masks`, used by pruning
and by the masked re-fit).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from ._checks import check_fraction, check_materialised, check_model

__all__ = [
    "PRUNABLE_LAYER_TYPES",
    "ParamSelection",
    "prunable_parameters",
    "select_parameters",
    "torch_prune_hooks",
    "keep_torch_prune_attributes",
    "torch_pruned_masks",
    "effective_values",
    "pruned_count",
    "check_masks",
]

#: A parameter selection: ``None`` (the prunable weights), ``"all"`` (every floating parameter)
#: or a sequence of parameter names, ``nn.Parameter`` objects or ``nn.Module`` s (a module stands
#: for all its floating parameters); one ``nn.Parameter`` or ``nn.Module`` alone is also accepted.
ParamSelection = (
    None | Literal["all"] | nn.Module | nn.Parameter | Sequence[str | nn.Parameter | nn.Module]
)

#: Layer types whose ``weight`` is prunable.
PRUNABLE_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

#: The prunable weights of ``nn.MultiheadAttention`` besides its ``out_proj`` (an ``nn.Linear``):
#: the packed query/key/value projection, or the three separate ones when ``kdim``/``vdim``
#: differ from ``embed_dim``.
ATTENTION_WEIGHTS: tuple[str, ...] = ("in_proj_weight", "q_proj_weight", "k_proj_weight",
                                      "v_proj_weight")


def _prunable_attributes(module: nn.Module) -> tuple[str, ...]:
    if isinstance(module, PRUNABLE_LAYER_TYPES):
        return ("weight",)
    if isinstance(module, nn.MultiheadAttention):
        return ATTENTION_WEIGHTS
    return ()


def torch_prune_hooks(module: nn.Module) -> dict[str, Any]:
    """``{tensor name: pruning method}`` of ``torch.nn.utils.prune`` on ``module`` (its forward
    pre-hooks that recompute ``name = name_orig * name_mask``)."""
    from torch.nn.utils import prune

    return {
        hook._tensor_name: hook
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, prune.BasePruningMethod)
    }


@contextlib.contextmanager
def keep_torch_prune_attributes(model: nn.Module) -> Iterator[None]:
    """Put back, on exit, the effective tensors (``module.weight``) that ``torch.nn.utils.prune``'s
    hooks store on their modules in each forward: a functional forward would leave traced
    tensors there, and a forward inside :func:`~phasetrans.prune.masks.pruned` pruned ones."""
    kept = [(m, attr, m.__dict__.get(attr)) for m in model.modules() for attr in torch_prune_hooks(m)]
    try:
        yield
    finally:
        for module, attr, value in kept:
            if value is None:
                module.__dict__.pop(attr, None)
            else:
                module.__dict__[attr] = value


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model``, ``{qualified name: Parameter}`` in module order.

    The prunable set (THEORY §1; biases are held fixed):

    - the ``weight`` of every ``nn.Linear`` and ``nn.Conv{1,2,3}d`` (subclasses included, so
      also ``nn.MultiheadAttention.out_proj``);
    - attention: ``nn.MultiheadAttention.in_proj_weight`` (the packed query/key/value
      projection; ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when ``kdim``/``vdim``
      differ), so every projection of an attention block is pruned, as in SparseGPT/Wanda;
    - never: embeddings (``nn.Embedding``: a lookup table, not a projection; select it with
      ``params`` to prune it), normalisation layers, biases, other modules' parameters;
    - frozen layers (``requires_grad=False``) count like any other: ``requires_grad`` is about
      training, and a frozen pre-trained model is pruned all the same (select
      ``[p for p in prunable_parameters(m).values() if p.requires_grad]`` to leave them out);
    - a weight pruned with ``torch.nn.utils.prune`` (``weight_orig`` + buffer ``weight_mask``)
      appears as its ``weight_orig`` Parameter, under that name; the tensor analysed and pruned
      is the effective weight ``weight_orig * weight_mask`` (:func:`effective_values`), so the
      entries already pruned count as zeros.

    Shared weights appear once, under their first name.
    """
    check_model(model)
    found: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        attributes = _prunable_attributes(module)
        if not attributes:
            continue
        pruned_by_torch = torch_prune_hooks(module)
        prefix = f"{module_name}." if module_name else ""
        for attr in attributes:
            if attr not in pruned_by_torch:
                _check_plain_weight(module_name, module, attr)
            key = f"{attr}_orig" if attr in pruned_by_torch else attr
            weight = module._parameters.get(key)
            if isinstance(weight, nn.Parameter) and id(weight) not in seen:
                seen.add(id(weight))
                found[prefix + key] = weight
    return found


def _check_plain_weight(module_name: str, module: nn.Module, attr: str) -> None:
    """``ValueError`` when a prunable tensor is computed rather than a parameter
    (``torch.nn.utils.parametrize``: ``weight_norm``, ``spectral_norm``, orthogonal; the
    hook-based ``torch.nn.utils.weight_norm``): its magnitudes and its Hessian are not those of
    one tensor of free weights, and leaving it out would silently shrink ``D``.
    (``torch.nn.utils.prune``'s ``weight_orig``/``weight_mask`` is read as masked instead.)"""
    from torch.nn.utils import parametrize

    kind = None
    if parametrize.is_parametrized(module, attr):
        kind = ("a torch.nn.utils.parametrize parametrisation (weight_norm, spectral_norm, ...); "
                f"remove it with torch.nn.utils.parametrize.remove_parametrizations(layer, {attr!r})")
    elif attr not in module._parameters and module.__dict__.get(attr) is not None:
        kind = ("a tensor computed from other parameters (e.g. torch.nn.utils.weight_norm's "
                "weight_g/weight_v); make it a plain parameter first (remove_weight_norm)")
    if kind is not None:
        raise ValueError(
            f"model: layer {module_name or '(root)'!r} ({type(module).__name__}) has a {attr} "
            f"that is not a plain parameter but {kind}; or pass params as a list of parameter names"
        )


def torch_pruned_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"<module>.<name>_orig": mask buffer}`` for every tensor of ``model`` pruned with
    ``torch.nn.utils.prune`` (the keys are the names of the ``_orig`` Parameters)."""
    masks: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for attr in torch_prune_hooks(module):
            mask = module._buffers.get(f"{attr}_mask")
            if f"{attr}_orig" in module._parameters and isinstance(mask, torch.Tensor):
                masks[f"{prefix}{attr}_orig"] = mask
    return masks


def effective_values(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The current values of the named parameters, detached: ``p`` itself, or the effective
    weight ``p * mask`` for a ``<name>_orig`` Parameter of ``torch.nn.utils.prune`` (what the
    model computes with; the entries pruned there are zeros)."""
    named = dict(model.named_parameters())
    masks = torch_pruned_masks(model)
    out = {}
    for n in names:
        value = named[n].detach()
        if n in masks:
            value = value * masks[n].to(dtype=value.dtype, device=value.device)
        out[n] = value
    return out


def select_parameters(
    model: nn.Module, params: ParamSelection = None, name: str = "params"
) -> list[str]:
    """Resolve a parameter selection to an ordered list of parameter names.

    ``params``: ``None`` (the prunable weights, :func:`prunable_parameters`), ``"all"`` (every
    floating parameter), or a sequence (or iterator, e.g. ``model.parameters()``) of parameter
    names, ``nn.Parameter`` objects of ``model`` (as curvlinops takes them) and submodules of
    ``model`` (a module stands for all its floating parameters); one ``nn.Parameter`` or
    ``nn.Module`` alone is also accepted. Parameters are named as in ``model.named_parameters()``
    (a shared parameter under its first name). A name or Parameter listed twice is a
    ``ValueError``; modules that overlap (tied weights) are merged.
    """
    check_materialised(check_model(model))
    named = dict(model.named_parameters())
    if params is None:
        names = list(prunable_parameters(model))
        if not names:
            raise ValueError(
                f"model has no prunable weights (nn.Linear / nn.Conv1d/2d/3d / "
                f"nn.MultiheadAttention) for {name}=None; pass {name}='all' or a list of "
                f"parameter names, Parameters or modules"
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
    if isinstance(params, (nn.Module, torch.Tensor)):
        params = [params]
    elif isinstance(params, Mapping):
        params = list(params)
    elif isinstance(params, Iterator):
        params = list(params)
    if not isinstance(params, Sequence) or not all(
        isinstance(n, (str, torch.Tensor, nn.Module)) for n in params
    ):
        raise TypeError(
            f"{name} must be None, 'all' or a list of parameter names (str), nn.Parameter "
            f"objects or nn.Module s, got {type(params).__name__}"
            + (f" of {sorted({type(n).__name__ for n in params})}"
               if isinstance(params, Sequence) else "")
        )
    if len(params) == 0:
        raise ValueError(f"{name} must name at least one parameter, got an empty list")
    explicit: list[str] = []
    from_modules: list[str] = []
    names_by_id = {id(p): n for n, p in named.items()}
    for index, entry in enumerate(params):
        if isinstance(entry, str):
            explicit.append(entry)
        elif isinstance(entry, torch.Tensor):
            explicit.append(_parameter_name(model, names_by_id, entry, f"{name}[{index}]"))
        else:
            from_modules.extend(_module_names(model, names_by_id, entry, f"{name}[{index}]"))
    unknown = [n for n in explicit if n not in named]
    if unknown:
        raise ValueError(
            f"{name} names parameters the model does not have: {unknown}; "
            f"available: {list(named)[:20]}{' ...' if len(named) > 20 else ''}"
        )
    if len(set(explicit)) != len(explicit):
        raise ValueError(f"{name} lists a parameter more than once: {explicit}")
    selected = list(dict.fromkeys(explicit + from_modules))  # order of first appearance
    non_float = [n for n in selected if not named[n].is_floating_point()]
    if non_float:
        raise ValueError(f"{name}: parameters must be floating point, got {non_float}")
    return selected


def _parameter_name(model: nn.Module, names_by_id: dict[int, str], tensor: torch.Tensor,
                    where: str) -> str:
    """The name of a Parameter object of ``model``; ``ValueError`` for any other tensor."""
    if id(tensor) in names_by_id:
        return names_by_id[id(tensor)]
    hint = ""
    for module_name, module in model.named_modules():
        for attr in torch_prune_hooks(module):
            if getattr(module, attr, None) is tensor:
                prefix = f"{module_name}." if module_name else ""
                hint = (f"; it is the effective weight of a layer pruned with torch.nn.utils.prune: "
                        f"select its Parameter {prefix}{attr}_orig")
    kind = "an nn.Parameter" if isinstance(tensor, nn.Parameter) else "a plain tensor"
    raise ValueError(
        f"{where} is {kind} of shape {tuple(tensor.shape)} that is not a parameter of the model "
        f"(a Parameter of another model or a copy?){hint}"
    )


def _module_names(model: nn.Module, names_by_id: dict[int, str], module: nn.Module,
                  where: str) -> list[str]:
    """The names of a submodule's floating parameters; ``ValueError`` for a foreign module."""
    if not any(m is module for m in model.modules()):
        raise ValueError(
            f"{where} is an nn.Module ({type(module).__name__}) that is not a submodule of the model"
        )
    names = [names_by_id[id(p)] for p in module.parameters() if p.is_floating_point()]
    if not names:
        raise ValueError(
            f"{where} is an nn.Module ({type(module).__name__}) without floating parameters"
        )
    return names


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
