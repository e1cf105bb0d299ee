"""``R(s)`` of any pruning criterion: the distance from the trained weights to its pruned point.

For a criterion ``c`` and sparsity ``s`` (THEORY §1 for magnitude pruning)::

    R_c(s) = ‖w* − w_c(s)‖₂,

``w_c(s)`` the covered weights as the criterion leaves them: the ``⌈sD⌉`` pruned entries set to
0 and, for a criterion that updates the kept weights (Optimal Brain Surgeon), those at ``w* + δ``.
For a score criterion (magnitude, Fisher–Taylor, layer-adaptive, a user's scores)
``R_c(s)² = Σ_{q pruned} w*_q²``. Global magnitude pruning gives the magnitude curve
``R(s) = sqrt(sum of the ⌈sD⌉ smallest w*²)`` (:class:`~phasetrans.MagnitudeCurve`), the
smallest distance to any point with ``⌈sD⌉`` zeros, so ``R_c(s) ≥ R(s)`` for every criterion:
the prediction (``s = Φ(R(s))``, Zhang et al., NeurIPS 2024) is built on the magnitude ``R(s)``;
another criterion's ``R_c`` says how far its pruned point is from ``w*`` in comparison.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._checks import check_fraction, check_model
from ..params import ParamSelection, select_parameters
from .criteria import CriterionLike, resolve_criterion
from .masks import magnitude_masks

__all__ = ["pruning_radius"]


def _grid(sparsities: Any) -> tuple[list[float], bool]:
    """``(grid, scalar)``: one sparsity or a non-empty sequence of them, each in ``[0, 1]``."""
    if isinstance(sparsities, numbers.Real) and not isinstance(sparsities, bool):
        return [check_fraction(sparsities, "sparsities")], True
    if isinstance(sparsities, (str, bytes)):
        raise TypeError("sparsities must be a number or a sequence of numbers in [0, 1]")
    try:
        values = list(sparsities)
    except TypeError:
        raise TypeError(
            f"sparsities must be a number or a sequence of numbers, got {type(sparsities).__name__}"
        ) from None
    if not values:
        raise ValueError("sparsities must contain at least one value")
    return [check_fraction(s, f"sparsities[{i}]") for i, s in enumerate(values)], False


def _distance(point: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
              new: dict[str, torch.Tensor] | None) -> float:
    """``‖w* − w_c‖₂`` in float64: the pruned entries of ``point``, or the whole difference."""
    total = 0.0
    for name, w in point.items():
        w64 = w.detach().double()
        if new is None:
            total += float(w64[~masks[name].to(w.device)].square().sum())
        else:
            total += float((w64 - new[name].to(w.device).double()).square().sum())
    return total ** 0.5


def pruning_radius(
    model: nn.Module,
    sparsities: Any,
    criterion: CriterionLike = "magnitude",
    data: Any = None,
    loss_fn: Callable | None = None,
    min_per_layer: float = 0.0,
    params: ParamSelection = None,
    criterion_options: dict | None = None,
) -> float | list[float]:
    """``R_c(s) = ‖w* − w_c(s)‖₂`` (module docstring) at one sparsity (a float back) or at each
    of a sequence (a list back), ``w*`` the model's current weights.

    ``criterion``, ``data``, ``loss_fn``, ``criterion_options``: as in
    :func:`~phasetrans.prune.masks.criterion_masks` (prepared once for all sparsities);
    ``min_per_layer`` and ``params`` as in :func:`~phasetrans.magnitude_masks`. Sums in float64.
    The model is only read.
    """
    check_model(model)
    grid, scalar = _grid(sparsities)
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    crit = resolve_criterion(criterion, model, data, loss_fn, params, criterion_options)
    if crit is None:
        names = set(select_parameters(model, params))
        point = {n: p for n, p in model.named_parameters() if n in names}
        out = [_distance(point, magnitude_masks(model, s, min_per_layer, params), None)
               for s in grid]
    else:
        named = dict(model.named_parameters())
        out = []
        for s in grid:
            masks = crit.masks(s, min_per_layer)
            point = {n: named[n] for n in masks}
            out.append(_distance(point, masks, crit.weights(masks)))
    return out[0] if scalar else out
