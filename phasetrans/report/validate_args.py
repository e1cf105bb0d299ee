"""The arguments of :func:`~phasetrans.report.validate.validate`, checked before any work and
resolved into one frozen :class:`ValidateRun` that every stage reads (the criterion, the metric,
the output folder, the keyword dictionaries passed on to training and prediction)."""


from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .._batches import as_batches
from .._checks import (
    check_bool,
    check_callable,
    check_float,
    check_int,
    check_model,
    check_seed,
)
from .._io import check_out_dir
from .._progress import resolve_progress
from ..distributed import is_distributed, is_main_process
from ..prune.criteria import criterion_label
from ..prune.threshold import MIN_RESOLUTION

__all__ = ["ValidateRun", "check_validate_args", "check_kwargs", "check_criterion_arg",
           "check_metric_arg", "METRICS", "OUT_FILES"]


def check_kwargs(value: Any, name: str, target: Callable) -> dict:
    """A dict of keyword arguments for ``target``; unknown keys are refused up front (before
    any training), naming ``name``."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"{name} must be a dict of keyword arguments, got {type(value).__name__}")
    accepted = inspect.signature(target).parameters
    unknown = sorted(k for k in value if k not in accepted)
    if unknown:
        raise ValueError(
            f"{name} has keys that {target.__name__} does not take: {unknown}; "
            f"accepted: {sorted(accepted)}"
        )
    return dict(value)


@dataclass(frozen=True)
class ValidateRun:
    """The arguments of one :func:`validate` call, checked, and its data as lists of batches."""

    loss_fn: Callable
    train: list
    test: list
    hessian: list
    hessian_given: bool
    l1: float | None
    epochs: int
    lr: float
    eps: float | None
    num_steps: int | None
    num_probes: int | None
    seed: int
    out: str | os.PathLike | None
    refit: int | None
    tolerance: float
    inplace: bool
    loss_criterion: bool
    curve_points: int
    resolution: float
    strict: bool
    refit_lr: float
    progress: bool
    train_kwargs: dict
    predict_kwargs: dict
    criterion: Any = "magnitude"
    criterion_options: dict | None = None
    metric: Callable[[nn.Module, Any], float] = None  # type: ignore[assignment]
    metric_name: str = "accuracy"
    spread: bool = False

    def config(self) -> dict:
        """The arguments as recorded in ``Report.config``."""
        trained = self.l1 is not None
        return {
            "l1": self.l1, "epochs": self.epochs if trained else None, "lr": self.lr if trained else None,
            "eps": self.eps, "num_steps": self.num_steps, "num_probes": self.num_probes, "seed": self.seed,
            "refit": self.refit, "tolerance": self.tolerance, "inplace": self.inplace, "strict": self.strict,
            "resolution": self.resolution, "curve_points": self.curve_points,
            "loss_criterion": self.loss_criterion,
            "train_kwargs": self.train_kwargs, "predict_kwargs": self.predict_kwargs,
            "criterion": criterion_label(self.criterion), "criterion_options": self.criterion_options,
            "metric": self.metric_name, "spread": self.spread,
        }

    @property
    def dense_key(self) -> str:
        """The key of the dense test metric in ``Report.dense``."""
        return "test_accuracy" if self.metric_name == "accuracy" else "test_metric"


#: What :func:`validate` writes to ``out`` (checked before any work: none may be a folder).
OUT_FILES = ("report.json", "spectrum.png", "crossing.png", "pruning_curve.png", "layers.png",
             "threshold_spread.png")


def check_validate_args(model, loss_fn, train_data, test_data, l1, epochs, lr, eps, num_steps, num_probes, seed,
             out, refit, tolerance, inplace, hessian_data, loss_criterion, curve_points, resolution,
             strict, refit_lr, progress, train_kwargs, predict_kwargs, criterion="magnitude",
             criterion_options=None, batch_fn=None, metric="accuracy", spread=False) -> ValidateRun:
    """Every argument of :func:`validate` checked (in signature order), before any work."""
    from ..predict import predict_sparsity
    from ..train import train_l1

    check_model(model)
    check_callable(loss_fn, "loss_fn")
    if batch_fn is not None:  # every stage then reads (inputs, targets) batches
        check_callable(batch_fn, "batch_fn")
    train_batches = as_batches(train_data, "train_data", batch_fn)
    test_batches = as_batches(test_data, "test_data", batch_fn)
    hessian_batches = (train_batches if hessian_data is None
                       else as_batches(hessian_data, "hessian_data", batch_fn))
    if l1 is not None:
        l1 = check_float(l1, "l1", minimum=0.0)
        epochs = check_int(epochs, "epochs", minimum=1)
        lr = check_float(lr, "lr", minimum=0.0, strict_minimum=True)
    if eps is not None:
        eps = check_float(eps, "eps", minimum=0.0, strict_minimum=True)
    num_steps = None if num_steps is None else check_int(num_steps, "num_steps", minimum=1)
    num_probes = None if num_probes is None else check_int(num_probes, "num_probes", minimum=1)
    seed = check_seed(seed)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be None or a directory path, got {type(out).__name__}")
    if refit is not None:
        refit = check_int(refit, "refit", minimum=1)
    tolerance = check_float(tolerance, "tolerance", minimum=0.0)
    check_bool(inplace, "inplace")
    check_bool(loss_criterion, "loss_criterion")
    check_bool(strict, "strict")
    progress = resolve_progress(progress)
    curve_points = check_int(curve_points, "curve_points", minimum=0)
    if curve_points == 1:
        raise ValueError("curve_points must be 0 or at least 2 (it includes both ends 0 and 1)")
    resolution = check_float(resolution, "resolution", minimum=MIN_RESOLUTION, maximum=0.5)
    refit_lr = check_float(refit_lr, "refit_lr", minimum=0.0, strict_minimum=True)
    train_kwargs = check_kwargs(train_kwargs, "train_kwargs", train_l1)
    predict_kwargs = check_kwargs(predict_kwargs, "predict_kwargs", predict_sparsity)
    # the trace from the spectrum itself (the Jensen bound then provably holds); a separate
    # Hutch++ estimate would cost as many Hessian products as the spectrum
    predict_kwargs.setdefault("trace_method", None)
    for key in ("eps", "num_steps", "num_probes", "seed", "batch_fn"):
        if key in predict_kwargs:
            raise TypeError(f"predict_kwargs must not contain {key!r}: pass {key}= to validate")
    if "batch_fn" in train_kwargs:
        raise TypeError("train_kwargs must not contain 'batch_fn': pass batch_fn= to validate")
    if l1 is not None:
        train_kwargs.setdefault("progress", progress)
    criterion, criterion_options = check_criterion_arg(criterion, criterion_options)
    metric_args = check_metric_arg(metric, loss_fn)
    check_bool(spread, "spread")
    if spread and metric_args["metric_name"] != "accuracy":
        raise ValueError(f"spread=True measures the spread of the test-accuracy threshold: it needs "
                         f"metric='accuracy', got metric={metric_args['metric_name']!r}")
    if spread and is_distributed():
        raise ValueError("spread=True needs every test sample on one process; it is not available "
                         "under torch.distributed")
    if out is not None and is_main_process():  # last check, before any work: no result lost to it
        check_out_dir(out, "out", OUT_FILES)
    return ValidateRun(
        loss_fn=loss_fn, train=train_batches, test=test_batches, hessian=hessian_batches,
        hessian_given=hessian_data is not None, l1=l1, epochs=epochs, lr=lr, eps=eps,
        num_steps=num_steps, num_probes=num_probes, seed=seed, out=out, refit=refit,
        tolerance=tolerance, inplace=inplace, loss_criterion=loss_criterion,
        curve_points=curve_points, resolution=resolution, strict=strict, refit_lr=refit_lr,
        progress=progress, train_kwargs=train_kwargs, predict_kwargs=predict_kwargs,
        criterion=criterion, criterion_options=criterion_options, spread=spread, **metric_args,
    )


def check_criterion_arg(criterion: Any, options: Any) -> tuple[Any, dict | None]:
    """The ``criterion`` argument checked up front (before any training): a name in
    :data:`~phasetrans.prune.criteria.CRITERIA`, a callable or a prepared criterion; options a
    dict of the named builder's keyword arguments."""
    from ..prune.criteria import CRITERIA, Criterion

    if isinstance(criterion, str):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {list(CRITERIA)} or a callable, got {criterion!r}")
    elif not callable(criterion) and not isinstance(criterion, Criterion):
        raise TypeError(f"criterion must be one of {list(CRITERIA)} or a callable, got "
                        f"{type(criterion).__name__}")
    if options is not None:
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            raise TypeError(f"criterion_options must be a dict of keyword arguments, got "
                            f"{type(options).__name__}")
        if not isinstance(criterion, str):
            raise TypeError("criterion_options apply only to a criterion given by name")
        options = check_kwargs(options, "criterion_options", CRITERIA[criterion])
        taken = sorted(set(options) & {"model", "data", "loss_fn", "params"})
        if taken:
            raise ValueError(f"criterion_options must not contain {taken}: validate passes them")
    return criterion, options


METRICS = ("accuracy", "neg_loss")


def check_metric_arg(metric: Any, loss_fn: Callable) -> dict:
    """``{"metric": metric(model, data) -> float, "metric_name": name}`` from ``metric``: a name
    in :data:`METRICS` or a callable (its ``__name__`` is recorded)."""
    from ..evaluate import evaluate_accuracy, evaluate_loss

    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)} or a callable "
                             f"metric(model, data) -> float, got {metric!r}")
        if metric == "accuracy":
            return {"metric": evaluate_accuracy, "metric_name": "accuracy"}

        def neg_loss(model: nn.Module, data: Any) -> float:
            return -evaluate_loss(model, loss_fn, data)

        return {"metric": neg_loss, "metric_name": "neg_loss"}
    if not callable(metric):
        raise TypeError(f"metric must be one of {list(METRICS)} or a callable "
                        f"metric(model, data) -> float, got {type(metric).__name__}")
    name = getattr(metric, "__name__", type(metric).__name__)
    return {"metric": metric, "metric_name": name if name not in METRICS else f"{name} (callable)"}


# ------------------------------------------------------------------------------------------
# the stages
# ------------------------------------------------------------------------------------------
