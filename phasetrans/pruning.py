"""Transition shim: pruning moved to :mod:`phasetrans.prune.masks` and :func:`pruned_count` /
:func:`check_masks` to :mod:`phasetrans.params` (issue 14); the coordinator removes this file."""

from .params import check_masks, pruned_count  # noqa: F401
from .params import check_masks as _check_masks  # noqa: F401
from .prune.masks import (  # noqa: F401
    apply_masks,
    magnitude_masks,
    mask_sparsity,
    pruned,
    to_torch_prune,
)

__all__ = [
    "pruned_count",
    "magnitude_masks",
    "pruned",
    "apply_masks",
    "to_torch_prune",
    "mask_sparsity",
]
