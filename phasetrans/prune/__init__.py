"""Layer 3, pruning: global one-shot magnitude masks (:mod:`.masks`), re-fit strategies
(:mod:`.refit`), the empirical critical sparsity (:mod:`.threshold`) and how precisely an evaluation set
measures it (:mod:`.threshold_spread`), whole pruning curves
with a resumable log (:mod:`.sweep`), pruning criteria (:mod:`.criteria`) and the distance
``R(s)`` from ``w*`` to any criterion's pruned point (:mod:`.radius`)."""

from .criteria import CRITERIA, Criterion, CriterionName, prepare_criterion
from .masks import (
    apply_masks,
    check_masks,
    criterion_masks,
    from_torch_prune,
    magnitude_masks,
    mask_sparsity,
    pruned,
    pruned_count,
    to_torch_prune,
)
from .radius import pruning_radius
from .refit import Refit, RefitFn, refit_steps, resolve_refit
from .sweep import sweep
from .threshold import Threshold, find_loss_threshold, find_threshold
from .threshold_spread import ThresholdSpread, threshold_spread

__all__ = [
    "pruned_count",
    "magnitude_masks",
    "criterion_masks",
    "pruned",
    "apply_masks",
    "to_torch_prune",
    "from_torch_prune",
    "mask_sparsity",
    "check_masks",
    "Refit",
    "RefitFn",
    "refit_steps",
    "resolve_refit",
    "Threshold",
    "find_threshold",
    "find_loss_threshold",
    "ThresholdSpread",
    "threshold_spread",
    "sweep",
    "CRITERIA",
    "Criterion",
    "CriterionName",
    "prepare_criterion",
    "pruning_radius",
]
