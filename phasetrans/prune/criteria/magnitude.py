"""Global magnitude pruning as a score criterion: score ``|w_q|``.

Han et al., "Learning both weights and connections for efficient neural networks", NeurIPS 2015;
the one-shot global form of Zhang et al., NeurIPS 2024 (THEORY §1). With :func:`score_masks`'s
tie rule (lower flat index pruned first) the masks equal :func:`phasetrans.magnitude_masks`
bit for bit, ``min_per_layer`` included.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..._checks import check_model
from ._gradients import selected
from .scores import ScoreCriterion

__all__ = ["magnitude_scores", "magnitude"]


def magnitude_scores(model: nn.Module, params: Any = None) -> dict[str, torch.Tensor]:
    """``{name: |w|}`` over the selected weights (default: the prunable weights), model order."""
    check_model(model)
    return {n: p.detach().abs() for n, p in selected(model, params)}


def magnitude(
    model: nn.Module, data: Any = None, loss_fn: Any = None, params: Any = None
) -> ScoreCriterion:
    """The magnitude criterion at the model's current weights (``data`` and ``loss_fn`` unused)."""
    return ScoreCriterion("magnitude", magnitude_scores(model, params))
