"""Layer-adaptive sparsities by rate–distortion: dynamic programming over layers, then magnitude.

Xu, Wang, Geng, Lin, Wu, Li, Lin, "Efficient joint optimization of layer-adaptive weight pruning
in deep neural networks", ICCV 2023 (arXiv:2308.10438; code github.com/Akimoto-Cris/RD_VIT_PRUNE).

Each layer ``l`` (``n_l`` weights) may be pruned at a grid level ``j/G`` (``j = 0 … G``,
``G = levels``): its ``p_l(j) = ⌈(j/G)·n_l⌉`` weights of smallest ``|w|`` (ties: lower index
first) set to 0. Its output distortion, measured on ``data`` with only that layer pruned,

    δ_l(j) = (1/N) Σ_n ‖f(x_n; layer l pruned at level j) − f(x_n)‖²,

and the paper's additivity (the distortion of pruning several layers ≈ the sum of the single-layer
distortions) turn the allocation into

    min_{j_1…j_L} Σ_l δ_l(j_l)   subject to   Σ_l p_l(j_l) ≥ k = ⌈sD⌉,   p_l(j_l) ≤ cap_l,

(``cap_l = n_l − ⌈f·n_l⌉`` for ``min_per_layer = f``), solved exactly by dynamic programming over
the layers on the pruned total (capped at ``k``), keeping at each layer only the Pareto-optimal
(total, distortion) states. The table ``δ`` costs ``L·G`` passes over ``data``, once; each
sparsity then costs only the DP. When the grid overshoots (``Σ p_l > k``), the surplus pruned
weights of largest ``|w|`` are kept again (ties: higher flat index first), so exactly ``k`` are
pruned, as in magnitude pruning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..._checks import check_fraction, check_int, check_model, preserve_model
from ._gradients import outputs, require_data, selected
from .scores import infeasible_floor, pruned_count

__all__ = ["layer_distortions", "allocate", "LayerAdaptiveCriterion", "layer_adaptive"]


def _smallest(magnitude: torch.Tensor, count: int) -> torch.Tensor:
    """Flat bool: the ``count`` entries of smallest ``|w|`` (ties: lower index first)."""
    flat = magnitude.reshape(-1)
    pruned = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    pruned[torch.sort(flat, stable=True).indices[:count]] = True
    return pruned


def layer_distortions(
    model: nn.Module, data: Any, params: Any = None, levels: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(δ, p)``: ``(L, G+1)`` tables of output distortions (float64) and pruned counts (int64)
    of each layer pruned alone at level ``j/G`` (module docstring). Eval mode; model unchanged."""
    check_model(model)
    batches = require_data("layer_adaptive", data, need_loss=False)
    levels = check_int(levels, "levels", minimum=1)
    with preserve_model(model):
        model.eval()
        items = selected(model, params)
        reference = [out for _, out in outputs(model, batches)]
        counts = torch.tensor(
            [[pruned_count(j / levels, p.numel()) for j in range(levels + 1)] for _, p in items]
        )
        table = torch.zeros(len(items), levels + 1, dtype=torch.float64)
        for layer, (name, p) in enumerate(items):
            w = p.detach()
            for j in range(1, levels + 1):
                mask = _smallest(w.abs(), int(counts[layer, j])).reshape(w.shape)
                total, size_sum = 0.0, 0
                pruned = {name: w.masked_fill(mask, 0)}
                for ref, (size, out) in zip(reference, outputs(model, batches, pruned)):
                    total += float((out - ref).double().square().sum())
                    size_sum += size
                table[layer, j] = total / size_sum
    return table, counts


def allocate(
    distortion: torch.Tensor, counts: torch.Tensor, k: int, caps: Sequence[int] | None = None
) -> tuple[int, ...] | None:
    """The level per layer minimising ``Σ δ_l(j_l)`` subject to ``Σ p_l(j_l) ≥ k`` and
    ``p_l(j_l) ≤ caps[l]``: exact DP over layers on the pruned total capped at ``k``, Pareto
    states only. ``None`` when infeasible. Ties are broken deterministically (per state, the
    lexicographically first level tuple of least distortion)."""
    rows, cols = distortion.shape
    if tuple(counts.shape) != (rows, cols):
        raise ValueError(f"counts must have shape {(rows, cols)}, got {tuple(counts.shape)}")
    caps = [int(counts[i].max()) for i in range(rows)] if caps is None else list(caps)
    d = distortion.tolist()
    c = counts.tolist()
    states: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for layer in range(rows):
        nxt: dict[int, tuple[float, tuple[int, ...]]] = {}
        for total, (value, choice) in states.items():
            for j in range(cols):
                if c[layer][j] > caps[layer]:
                    continue
                key = min(k, total + c[layer][j])
                cand = (value + d[layer][j], choice + (j,))
                if key not in nxt or cand[0] < nxt[key][0] or (
                    cand[0] == nxt[key][0] and cand[1] < nxt[key][1]
                ):
                    nxt[key] = cand
        states, best = {}, None
        for key in sorted(nxt, reverse=True):  # drop states with fewer pruned and no less distortion
            if best is None or nxt[key][0] < best:
                states[key], best = nxt[key], nxt[key][0]
    return states[k][1] if k in states else None


@dataclass(frozen=True, eq=False)
class LayerAdaptiveCriterion:
    """Layer-adaptive allocation at ``w*``: ``magnitudes`` ``|w|``, the tables of
    :func:`layer_distortions`; ``masks`` solves the allocation for each sparsity."""

    name: str
    magnitudes: Mapping[str, torch.Tensor]
    distortion: torch.Tensor
    counts: torch.Tensor

    def allocation(self, sparsity: float, min_per_layer: float = 0.0) -> dict[str, int]:
        """``{name: pruned count}`` chosen by the DP (before trimming the surplus to ``k``)."""
        sparsity = check_fraction(sparsity, "sparsity")
        min_per_layer = check_fraction(min_per_layer, "min_per_layer")
        sizes = [t.numel() for t in self.magnitudes.values()]
        total = sum(sizes)
        k = pruned_count(sparsity, total)
        caps = [n - pruned_count(min_per_layer, n) for n in sizes]
        if sum(caps) < k:
            raise infeasible_floor(min_per_layer, sparsity, total, sum(caps), k)
        choice = allocate(self.distortion, self.counts, k, caps)
        if choice is None:
            raise ValueError(
                f"min_per_layer={min_per_layer}: no allocation on the grid of "
                f"{self.counts.shape[1] - 1} levels prunes {k} weights within the floors; use "
                f"more levels or lower min_per_layer"
            )
        return {n: int(self.counts[i, j]) for i, (n, j) in enumerate(zip(self.magnitudes, choice))}

    def masks(self, sparsity: float, min_per_layer: float = 0.0) -> dict[str, torch.Tensor]:
        """Masks pruning exactly ``⌈sD⌉`` weights: the DP's per-layer counts by magnitude within
        each layer, the surplus pruned weights of largest ``|w|`` kept again."""
        allocation = self.allocation(sparsity, min_per_layer)
        items = list(self.magnitudes.items())
        k = pruned_count(sparsity, sum(t.numel() for _, t in items))
        flat = torch.cat([t.reshape(-1).double() for _, t in items])
        pruned = torch.cat([_smallest(t, allocation[n]).to(flat.device) for n, t in items])
        index = pruned.nonzero().reshape(-1)
        keep_pruned = index[torch.sort(flat[index], stable=True).indices[:k]]
        kept = torch.ones_like(pruned)
        kept[keep_pruned] = False
        pieces = torch.split(kept, [t.numel() for _, t in items])
        return {n: m.reshape(t.shape).to(t.device) for (n, t), m in zip(items, pieces)}

    def weights(self, masks: Mapping[str, torch.Tensor]) -> None:
        """``None``: the pruned weights are only zeroed."""
        return None


def layer_adaptive(
    model: nn.Module, data: Any = None, loss_fn: Any = None, params: Any = None, levels: int = 20
) -> LayerAdaptiveCriterion:
    """The layer-adaptive criterion at the model's current weights (needs ``data``; ``loss_fn``
    unused: the distortion is measured on the outputs). ``levels``: the grid ``G``."""
    table, counts = layer_distortions(model, data, params, levels)
    magnitudes = {n: p.detach().abs() for n, p in selected(model, params)}
    return LayerAdaptiveCriterion("layer_adaptive", magnitudes, table, counts)
