"""Optimal Brain Surgeon with M-FAC's inverse empirical Fisher: saliencies and weight update.

Hassibi & Stork, "Second order derivatives for network pruning: Optimal Brain Surgeon",
NeurIPS 1992 (1993); the empirical-Fisher (WoodFisher) form of Singh & Alistarh, "WoodFisher:
Efficient second-order approximation for neural network compression", NeurIPS 2020; the
matrix-free inverse and the one-shot pruner of Frantar, Kurtic & Alistarh, "M-FAC", NeurIPS 2021
(``main_prun.py``, ``MFACPruner``). ``F⁻¹`` is :class:`~.mfac.MFACInverse` of the ``m``
gradients (one per batch of ``data``, M-FAC's mini-batch gradients, or one per sample).

Removing weight ``q`` at best (minimise ``½ δᵀFδ`` subject to ``δ_q = −w_q``) costs

    ρ_q = w_q² / (2 [F⁻¹]_qq)            (the saliency; the score, higher = keep)
    δ   = −(w_q / [F⁻¹]_qq) F⁻¹ e_q.

For the set ``Q`` of pruned weights two updates are offered:

- ``update="independent"`` (WoodFisher / M-FAC's one-shot pruner): the single-weight updates
  summed as if the weights were independent, one inverse-Fisher product:
  ``δ = −F⁻¹ Σ_{q∈Q} (w_q / [F⁻¹]_qq) e_q``;
- ``update="joint"`` (exact OBS for the set, small ``|Q|``): ``δ = −F⁻¹ E_Q c`` with
  ``[F⁻¹]_QQ c = w_Q``, the minimiser of ``½ δᵀFδ`` subject to ``δ_Q = −w_Q``
  (``O(m|Q|² + |Q|³)``);
- ``update="none"``: only zero the pruned weights (OBS saliencies as a score criterion).

In every case the pruned weights are then set exactly to 0 (the independent update does not
zero them by itself). Kept weights: ``w + δ``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..._checks import check_choice, check_int, check_model, preserve_model
from ._gradients import (
    batch_gradients,
    flatten,
    per_sample_gradients,
    require_data,
    selected,
    unflatten,
)
from .mfac import MFACInverse
from .scores import score_masks

__all__ = ["obs_saliencies", "obs_update", "OBSCriterion", "obs"]

Update = Literal["independent", "joint", "none"]
Gradients = Literal["batch", "sample"]
_UPDATES = ("independent", "joint", "none")


def obs_saliencies(inverse: MFACInverse, weights: torch.Tensor) -> torch.Tensor:
    """``ρ_q = w_q² / (2 [F⁻¹]_qq)`` for the flat weights ``w``."""
    return weights.square() / (2.0 * inverse.diagonal())


def obs_update(
    inverse: MFACInverse, weights: torch.Tensor, pruned: torch.Tensor,
    update: Update = "independent", max_joint: int = 4096,
) -> torch.Tensor:
    """The flat weights after removing the entries where ``pruned`` (flat bool) is ``True``:
    ``w + δ`` with ``δ`` as in the module docstring, pruned entries exactly 0."""
    update = check_choice(update, "update", _UPDATES)
    index = pruned.nonzero().reshape(-1)
    new = weights.clone()
    if index.numel() and update == "independent":
        direction = torch.zeros_like(weights)
        direction[index] = weights[index] / inverse.diagonal()[index]
        new = new - inverse.matvec(direction)
    elif index.numel() and update == "joint":
        if index.numel() > max_joint:
            raise ValueError(
                f"update='joint' solves a |Q|×|Q| system; {index.numel()} pruned weights exceed "
                f"max_joint={max_joint}: use update='independent' or raise max_joint"
            )
        c = torch.linalg.solve(inverse.submatrix(index), weights[index])
        direction = torch.zeros_like(weights)
        direction[index] = c
        new = new - inverse.matvec(direction)
    new[index] = 0
    return new


@dataclass(frozen=True, eq=False)
class OBSCriterion:
    """OBS at ``w*``: ``scores`` = saliencies ``ρ``, ``weights(masks)`` = the OBS update."""

    name: str
    scores: Mapping[str, torch.Tensor]
    inverse: MFACInverse
    point: Mapping[str, torch.Tensor]
    update: Update = "independent"
    max_joint: int = 4096

    def masks(self, sparsity: float, min_per_layer: float = 0.0) -> dict[str, torch.Tensor]:
        """Masks pruning the ``⌈sD⌉`` weights of least saliency (see ``score_masks``)."""
        return score_masks(self.scores, sparsity, min_per_layer)

    def weights(self, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """``{name: w + δ}`` for ``masks`` over exactly this criterion's weights (pruned = 0);
        ``None`` with ``update="none"``."""
        if not isinstance(masks, Mapping) or set(masks) != set(self.point):
            got = sorted(masks) if isinstance(masks, Mapping) else type(masks).__name__
            raise ValueError(f"masks must cover exactly the weights {list(self.point)}, got {got}")
        if self.update == "none":
            return None
        items = list(self.point.items())
        for n, w in items:
            m = masks[n]
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.shape != w.shape:
                raise TypeError(f"masks[{n!r}] must be a bool tensor of shape {tuple(w.shape)}")
        pruned = ~flatten([masks[n].to(w.device) for n, w in items])
        new = obs_update(self.inverse, flatten([w for _, w in items]), pruned, self.update,
                         self.max_joint)
        return {n: t.clone() for n, t in unflatten(new, items).items()}


def obs(
    model: nn.Module, data: Any = None, loss_fn: Callable | None = None, params: Any = None,
    damp: float = 1e-5, gradients: Gradients = "batch", update: Update = "independent",
    max_joint: int = 4096,
) -> OBSCriterion:
    """The OBS / M-FAC criterion at the model's current weights (needs ``data`` and ``loss_fn``).

    ``gradients``: ``"batch"`` (one gradient ``∇L_b`` per batch of ``data``, M-FAC's choice) or
    ``"sample"`` (one per sample, ``vmap(grad)``); ``damp``: ``λ`` (M-FAC's default ``1e-5``);
    ``update``: see the module docstring. The inverse is held in memory: ``m·d`` numbers.
    """
    check_model(model)
    batches = require_data("obs", data, loss_fn)
    gradients = check_choice(gradients, "gradients", ("batch", "sample"))
    update = check_choice(update, "update", _UPDATES)
    max_joint = check_int(max_joint, "max_joint", minimum=1)
    with preserve_model(model):
        model.eval()
        items = selected(model, params)
        names = [n for n, _ in items]
        if gradients == "batch":
            grads = batch_gradients(model, names, batches, loss_fn)
        else:
            grads = torch.cat(list(per_sample_gradients(model, names, batches, loss_fn)))
        inverse = MFACInverse.from_gradients(grads, damp)
        point = {n: p.detach().clone() for n, p in items}
        rho = obs_saliencies(inverse, flatten(list(point.values())))
        scores = {n: s.clone() for n, s in unflatten(rho, items).items()}
    return OBSCriterion("obs", scores, inverse, point, update, max_joint)
