"""Transition shim: training moved to :mod:`phasetrans.train` and evaluation to
:mod:`phasetrans.evaluate` (issue 14); the coordinator removes this file."""

from .evaluate import _sum_over_ranks, evaluate_accuracy, evaluate_loss  # noqa: F401
from .train import (  # noqa: F401
    _TRAIN_KIND,
    SCHEDULES,
    TrainHistory,
    _is_plain,
    _rng_devices,
    _state_hash,
    finetune_masked,
    lr_at_epoch,
    train_l1,
)

__all__ = [
    "TrainHistory",
    "lr_at_epoch",
    "train_l1",
    "finetune_masked",
    "evaluate_accuracy",
    "evaluate_loss",
]
