"""Fisher–Taylor sensitivity (FTS): first-order Taylor term plus the empirical-Fisher diagonal.

Gollini Navarrete, Mauricio Cuadrado, Restom, Takáč, Horváth, "Fishing for cheap and efficient
pruners at initialization", arXiv:2502.11450 (2025); reference code
github.com/Gollini/Fisher_Taylor_Sensitivity (``compressors.fd_taylor``). Built on Optimal Brain
Damage's saliency (LeCun et al. 1989) and SNIP's connection sensitivity (Lee et al. 2018).

Removing weight ``q`` changes the loss by, to second order with the Hessian replaced by the
empirical Fisher ``F = (1/N) Σ_n ∇ℓ_n ∇ℓ_nᵀ``, a first-order term ``g_q w_q`` plus
``½ F_qq w_q²``. The score, as in the authors' code, is the magnitude of that sum:

    S_q = | w_q ḡ_q + ½ F_qq w_q² |,   ḡ = (1/N) Σ_n ∇ℓ_n,   F_qq = (1/N) Σ_n (∂ℓ_n/∂w_q)²,

``ℓ_n`` the loss of sample ``n`` (``loss_fn`` on the batch of that one sample), ``N`` the number
of samples in ``data``. Higher = keep. The per-sample gradients come from ``torch.func``
(``vmap(grad)``), so ``F_qq`` is exactly the mean of squared per-sample gradients (the authors'
code approximates it from squared mini-batch gradients times the batch size). Works at
initialisation or after training: nothing assumes ``∇L(w) = 0``.

The sign. Zeroing ``w_q`` is the step ``δ_q = −w_q``, whose second-order change of the loss is
``−ḡ_q w_q + ½ F_qq w_q²``; the score above has ``+``. It follows the authors' code, checked in
``batch_exp/experiments/utils/compressors.py``, ``fd_taylor`` (commit ``566728a``): the score is
``((param * grad_mean) + square(param) * (batch_size * fisher_diag) / 2).abs()``, i.e.
``|w ḡ + ½ F̂ w²|``. At a minimum (``ḡ ≈ 0``) both signs give ``½ F_qq w_q²``, OBD's saliency
with the Fisher diagonal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..._checks import check_int, check_model, preserve_model
from ._gradients import per_sample_gradients, require_data, selected, unflatten
from .scores import ScoreCriterion

__all__ = ["fisher_taylor_scores", "fisher_taylor"]


def fisher_taylor_scores(
    model: nn.Module, data: Any, loss_fn: Callable, params: Any = None, chunk: int | None = None
) -> dict[str, torch.Tensor]:
    """FTS scores ``|w ḡ + ½ F_qq w²|`` of the selected weights (see the module docstring).

    ``data``: batches of ``(inputs, targets)`` or one tuple; ``loss_fn(outputs, targets)``: the
    batch-mean loss; ``chunk``: samples per ``vmap`` call (``None``: a whole batch). Computed in
    the model's dtype, in eval mode; the model comes back bit for bit.
    """
    check_model(model)
    batches = require_data("fisher_taylor", data, loss_fn)
    if chunk is not None:
        chunk = check_int(chunk, "chunk", minimum=1)
    with preserve_model(model):
        model.eval()
        items = selected(model, params)
        names = [n for n, _ in items]
        total = fisher = None
        count = 0
        for rows in per_sample_gradients(model, names, batches, loss_fn, chunk):
            total = rows.sum(0) if total is None else total + rows.sum(0)
            fisher = rows.square().sum(0) if fisher is None else fisher + rows.square().sum(0)
            count += rows.shape[0]
        w = torch.cat([p.detach().reshape(-1) for _, p in items])
        scores = (w * (total / count) + 0.5 * (fisher / count) * w.square()).abs()
        return {n: s.clone() for n, s in unflatten(scores, items).items()}


def fisher_taylor(
    model: nn.Module, data: Any = None, loss_fn: Any = None, params: Any = None,
    chunk: int | None = None,
) -> ScoreCriterion:
    """The FTS criterion at the model's current weights (needs ``data`` and ``loss_fn``)."""
    return ScoreCriterion("fisher_taylor", fisher_taylor_scores(model, data, loss_fn, params, chunk))
