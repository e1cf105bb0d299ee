"""Scores, the masks they define, and the interface every pruning criterion follows.

A *criterion*, prepared on a model at its current weights ``w*``, offers

- ``masks(sparsity, min_per_layer=0.0) -> {name: BoolTensor}`` (``True`` = kept), pruning exactly
  ``k = ⌈sD⌉`` of the ``D`` weights it covers (the magnitude-pruning convention,
  :func:`phasetrans.params.pruned_count`);
- ``weights(masks) -> {name: Tensor} | None``: the values the covered weights take at the pruned
  point (pruned entries exactly 0, kept ones possibly updated, as by Optimal Brain Surgeon), or
  ``None`` when the criterion only zeroes the pruned weights.

Most criteria are *score* criteria (:class:`ScoreCriterion`): a score per weight, higher = more
important, and :func:`score_masks` keeps the highest ones over all layers together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from ..._checks import check_fraction
from ...params import pruned_count

__all__ = ["Criterion", "ScoreCriterion", "score_masks", "check_scores", "infeasible_floor"]


@runtime_checkable
class Criterion(Protocol):
    """What a prepared criterion offers (see the module docstring)."""

    name: str

    def masks(self, sparsity: float, min_per_layer: float = 0.0) -> dict[str, torch.Tensor]: ...

    def weights(self, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None: ...


def check_scores(scores: Any, name: str = "scores") -> list[tuple[str, torch.Tensor]]:
    """``[(name, tensor)]`` in the dict's order for a dict ``{name: real floating tensor}``
    without NaN (``±inf`` allowed: always pruned first / kept last); ``TypeError`` /
    ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(scores, Mapping):
        raise TypeError(f"{name} must be a dict {{parameter name: Tensor}}, got {type(scores).__name__}")
    if not scores:
        raise ValueError(f"{name} must score at least one parameter, got an empty dict")
    items = []
    for key, t in scores.items():
        if not isinstance(key, str):
            raise TypeError(f"{name}: keys must be parameter names (str), got {type(key).__name__}")
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            kind = f"a tensor of dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"{name}[{key!r}] must be a real floating tensor, got {kind}")
        if bool(torch.isnan(t).any()):
            raise ValueError(f"{name}[{key!r}] contains NaN; scores cannot be ranked")
        items.append((key, t.detach()))
    return items


def infeasible_floor(min_per_layer: float, sparsity: float, total: int, capacity: int, k: int):
    """The ``ValueError`` for floors that keep more than ``D − k`` weights."""
    return ValueError(
        f"min_per_layer={min_per_layer} keeps at least {total - capacity} of {total} weights, so "
        f"sparsity={sparsity} ({k} pruned) is infeasible; lower min_per_layer"
    )


def _within_layer_rank(layer_of_ranked: torch.Tensor, num_layers: int) -> torch.Tensor:
    """For a sequence of layer ids, each entry's 0-based count of earlier entries of its layer."""
    rank = torch.empty_like(layer_of_ranked)
    for layer in range(num_layers):
        where = (layer_of_ranked == layer).nonzero().reshape(-1)
        rank[where] = torch.arange(where.numel(), device=rank.device)
    return rank


def score_masks(
    scores: Mapping[str, torch.Tensor], sparsity: float, min_per_layer: float = 0.0
) -> dict[str, torch.Tensor]:
    """Global top-k masks of ``scores`` (``True`` = kept): prune the ``k = ⌈sD⌉`` lowest.

    Order: by score, ties by flat index in the dict's order (each tensor row-major); among equal
    scores the *lower* index is pruned first, so ``score_masks({n: |w|})`` equals
    :func:`phasetrans.magnitude_masks` bit for bit. ``min_per_layer = f`` keeps at least
    ``⌈f·n_l⌉`` entries of every tensor: the prunes go in that order, skipping a tensor once it
    reached its cap ``n_l − ⌈f·n_l⌉`` (the same masks as magnitude pruning's floor rule), so
    ``k`` stays exact; ``ValueError`` if the floors make it infeasible. Memory ``O(D)``.
    """
    items = check_scores(scores)
    sparsity = check_fraction(sparsity, "sparsity")
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    sizes = [t.numel() for _, t in items]
    total = sum(sizes)
    k = pruned_count(sparsity, total)
    caps = [n - pruned_count(min_per_layer, n) for n in sizes]
    if sum(caps) < k:
        raise infeasible_floor(min_per_layer, sparsity, total, sum(caps), k)
    dtype = items[0][1].dtype
    for _, t in items[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    device = items[0][1].device
    flat = torch.cat([t.reshape(-1).to(device=device, dtype=dtype) for _, t in items])
    order = torch.sort(flat, stable=True).indices
    layer = torch.repeat_interleave(torch.arange(len(items), device=device),
                                    torch.tensor(sizes, device=device))
    if min_per_layer > 0:
        ranked_layer = layer[order]
        rank = _within_layer_rank(ranked_layer, len(items))
        order = order[rank < torch.tensor(caps, device=device)[ranked_layer]]
    keep = torch.ones(total, dtype=torch.bool, device=device)
    keep[order[:k]] = False
    pieces = torch.split(keep, sizes)
    return {n: m.reshape(t.shape).to(t.device) for (n, t), m in zip(items, pieces)}


@dataclass(frozen=True, eq=False)
class ScoreCriterion:
    """A criterion given by per-weight scores (higher = keep); masks by :func:`score_masks`."""

    name: str
    scores: Mapping[str, torch.Tensor]

    def masks(self, sparsity: float, min_per_layer: float = 0.0) -> dict[str, torch.Tensor]:
        """Masks pruning the ``⌈sD⌉`` lowest scores (see :func:`score_masks`)."""
        return score_masks(self.scores, sparsity, min_per_layer)

    def weights(self, masks: Mapping[str, torch.Tensor]) -> None:
        """``None``: a score criterion only zeroes the pruned weights."""
        return None

