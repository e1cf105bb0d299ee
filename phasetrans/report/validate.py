"""The embedded default: train (optionally), predict, prune, compare — one call.

:func:`validate` runs the whole check of the theory of Zhang, Zhang, Sun & Liu, "How Sparse Can
We Prune A Deep Network: A Fundamental Limit Perspective" (NeurIPS 2024) on one model, as a list
of stages (one function each, timed by one :class:`~phasetrans._timing.Stopwatch`):

1. ``train`` (``l1`` given): train a *copy* of the model with the l1 penalty
   (:func:`~phasetrans.train_l1`, the paper's LOMP recipe), or take the weights as given;
2. ``dense_eval``: test accuracy, test loss and training loss of the unpruned model;
3. ``predict``: the critical sparsity from the Hessian spectrum and the weight magnitudes
   (:func:`~phasetrans.predict_sparsity`);
4. ``criterion`` (only for a ``criterion`` other than global magnitude): prepared once on the
   training data (:func:`~phasetrans.prune.criteria.prepare_criterion`), then used by every
   pruning stage below;
   ``threshold``: the empirical threshold of one-shot global magnitude pruning (or ``criterion``)
   on held-out data (:func:`~phasetrans.find_threshold` with test accuracy); ``refit_threshold``
   the same after a short re-fit on the kept support; ``loss_threshold`` the loss criterion
   ``L(w^(s)) <= L(w*) + eps`` (:func:`~phasetrans.find_loss_threshold`);
5. ``curve``: test accuracy and loss along the pruning curve (:func:`~phasetrans.pruning_curve`);
6. ``layers``: the per-layer kept fraction at the threshold and at the prediction;
7. ``plots`` and ``report.json`` (with ``out``; figures from :mod:`phasetrans.report.plots`).

Everything is a thin layer over the public API; the numbers come from those calls unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .._batches import as_batches
from .._checks import (
    check_bool,
    check_callable,
    check_float,
    check_int,
    check_model,
    check_seed,
    preserve_model,
)
from .._io import check_out_dir
from .._progress import resolve_progress
from .._timing import Stopwatch
from ..distributed import is_main_process
from ..evaluate import check_classifier
from ..prune.criteria import criterion_label, resolve_criterion
from ..prune.threshold import MIN_RESOLUTION
from .report import Report, layer_kept_fractions, pruning_curve

__all__ = ["validate"]


# ------------------------------------------------------------------------------------------
# the checked arguments
# ------------------------------------------------------------------------------------------
def _check_kwargs(value: Any, name: str, target: Callable) -> dict:
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
class _Run:
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
    num_steps: int
    num_probes: int
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
            "metric": self.metric_name,
        }

    @property
    def dense_key(self) -> str:
        """The key of the dense test metric in ``Report.dense``."""
        return "test_accuracy" if self.metric_name == "accuracy" else "test_metric"


#: What :func:`validate` writes to ``out`` (checked before any work: none may be a folder).
OUT_FILES = ("report.json", "spectrum.png", "crossing.png", "pruning_curve.png", "layers.png")


def _checked(model, loss_fn, train_data, test_data, l1, epochs, lr, eps, num_steps, num_probes, seed,
             out, refit, tolerance, inplace, hessian_data, loss_criterion, curve_points, resolution,
             strict, refit_lr, progress, train_kwargs, predict_kwargs, criterion="magnitude",
             criterion_options=None, batch_fn=None, metric="accuracy") -> _Run:
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
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    num_probes = check_int(num_probes, "num_probes", minimum=1)
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
    train_kwargs = _check_kwargs(train_kwargs, "train_kwargs", train_l1)
    predict_kwargs = _check_kwargs(predict_kwargs, "predict_kwargs", predict_sparsity)
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
    criterion, criterion_options = _check_criterion(criterion, criterion_options)
    if out is not None and is_main_process():  # last check, before any work: no result lost to it
        check_out_dir(out, "out", OUT_FILES)
    return _Run(
        loss_fn=loss_fn, train=train_batches, test=test_batches, hessian=hessian_batches,
        hessian_given=hessian_data is not None, l1=l1, epochs=epochs, lr=lr, eps=eps,
        num_steps=num_steps, num_probes=num_probes, seed=seed, out=out, refit=refit,
        tolerance=tolerance, inplace=inplace, loss_criterion=loss_criterion,
        curve_points=curve_points, resolution=resolution, strict=strict, refit_lr=refit_lr,
        progress=progress, train_kwargs=train_kwargs, predict_kwargs=predict_kwargs,
        criterion=criterion, criterion_options=criterion_options,
        **_check_metric(metric, loss_fn),
    )


def _check_criterion(criterion: Any, options: Any) -> tuple[Any, dict | None]:
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
        options = _check_kwargs(options, "criterion_options", CRITERIA[criterion])
        taken = sorted(set(options) & {"model", "data", "loss_fn", "params"})
        if taken:
            raise ValueError(f"criterion_options must not contain {taken}: validate passes them")
    return criterion, options


METRICS = ("accuracy", "neg_loss")


def _check_metric(metric: Any, loss_fn: Callable) -> dict:
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
def _train_copy(model: nn.Module, run: _Run) -> tuple[nn.Module, Any]:
    """``(trained model, history)``: a deep copy (the model itself with ``inplace``) trained
    with :func:`~phasetrans.train_l1`."""
    from ..train import train_l1

    work = model if run.inplace else copy.deepcopy(model)
    history = train_l1(work, run.loss_fn, run.train, l1=run.l1, epochs=run.epochs, lr=run.lr,
                       seed=run.seed, **run.train_kwargs)
    return work, history


def _dense_eval(work: nn.Module, run: _Run) -> dict:
    """Test accuracy (``test_metric`` for another ``metric``), test loss and training loss of
    the unpruned model."""
    from ..evaluate import evaluate_accuracy, evaluate_loss

    if run.metric_name == "accuracy":
        first = {"test_accuracy": evaluate_accuracy(work, run.test)}
    else:
        first = {"test_metric": _test_metric(run)(work)}
    return {
        **first,
        "test_loss": evaluate_loss(work, run.loss_fn, run.test),
        "train_loss": evaluate_loss(work, run.loss_fn, run.train),
    }


def _predict(work: nn.Module, run: _Run) -> Any:
    """:func:`~phasetrans.predict_sparsity` on the Hessian data. Without ``eps`` and with
    separate ``hessian_data``, ε is the standard deviation of the batch losses over the
    *training* batches (``eps_source="batch_loss_std"``), not over the larger Hessian batches."""
    from ..predict import estimate_eps, predict_sparsity

    eps, eps_source = run.eps, "user"
    if eps is None and run.hessian_given:
        eps = estimate_eps(work, run.loss_fn, run.train)
        eps_source = "batch_loss_std"
    kwargs = {"progress": run.progress, **run.predict_kwargs}
    prediction = predict_sparsity(work, run.loss_fn, run.hessian, eps=eps, num_steps=run.num_steps,
                                  num_probes=run.num_probes, seed=run.seed, **kwargs)
    if eps_source != "user":
        prediction = dataclasses.replace(prediction, eps_source=eps_source)
    return prediction


def _test_metric(run: _Run) -> Callable[[nn.Module], float]:
    """``model -> metric(model, test data)`` (test accuracy by default), as a float."""

    def test_metric(m: nn.Module) -> float:
        return float(run.metric(m, run.test))

    return test_metric


def _criterion(work: nn.Module, run: _Run) -> Any:
    """The criterion prepared once on the training data at the trained weights (``None``: global
    magnitude pruning, the default path)."""
    return resolve_criterion(run.criterion, work, run.train, run.loss_fn, None,
                             run.criterion_options)


def _by(crit: Any) -> Any:
    """The ``criterion=`` argument for the pruning calls: the prepared one, or the default."""
    return "magnitude" if crit is None else crit


def _threshold(work: nn.Module, run: _Run, dense: dict, crit: Any = None) -> Any:
    """One-shot threshold on the test metric (``>= dense − tolerance``)."""
    from ..prune.threshold import find_threshold

    return find_threshold(work, _test_metric(run), baseline=dense[run.dense_key],
                          tolerance=run.tolerance, resolution=run.resolution, strict=run.strict,
                          criterion=_by(crit), progress=run.progress)


def _refit_threshold(work: nn.Module, run: _Run, dense: dict, crit: Any = None) -> Any:
    """The same threshold after ``refit`` SGD steps on the kept support of each pruned model."""
    from ..prune.threshold import find_threshold

    return find_threshold(
        work, _test_metric(run), baseline=dense[run.dense_key], tolerance=run.tolerance,
        resolution=run.resolution, strict=run.strict, refit=run.refit, refit_loss_fn=run.loss_fn,
        refit_data=run.train, refit_lr=run.refit_lr, criterion=_by(crit), progress=run.progress,
    )


def _loss_threshold(work: nn.Module, run: _Run, eps: float, crit: Any = None) -> Any:
    """Largest ``s`` with ``L_train(w^(s)) <= L_train(w*) + eps``."""
    from ..prune.threshold import find_loss_threshold

    return find_loss_threshold(work, run.loss_fn, run.train, eps, resolution=run.resolution,
                               criterion=_by(crit), progress=run.progress)


def _curve(work: nn.Module, run: _Run, threshold: Any, prediction: Any, crit: Any = None) -> dict:
    """The test metric (under the key ``accuracy``, whatever ``metric`` is: the figures read it
    there) and the test loss at the points the threshold search evaluated, ``curve_points`` evenly
    spaced sparsities, and the prediction with its window."""
    grid = [s for s, _ in threshold.points]
    if run.curve_points:
        grid += list(np.linspace(0.0, 1.0, run.curve_points))
    grid += [prediction.sparsity, prediction.lower, prediction.upper]
    metric = None if run.metric_name == "accuracy" else _test_metric(run)
    return pruning_curve(work, grid, run.test, loss_fn=run.loss_fn, metric=metric,
                         progress=run.progress, criterion=_by(crit))


def _layers(work: nn.Module, threshold: Any, prediction: Any, crit: Any = None) -> dict:
    """Per-layer kept fractions at the measured threshold and at the prediction."""
    at_prediction = min(1.0, max(0.0, prediction.sparsity))
    return {
        "at_threshold": layer_kept_fractions(work, threshold.sparsity, criterion=_by(crit)),
        "at_prediction": layer_kept_fractions(work, at_prediction, criterion=_by(crit)),
        "threshold_sparsity": threshold.sparsity,
        "predicted_sparsity": prediction.sparsity,
    }


def _write(report: Report, out: str | os.PathLike | None, clock: Stopwatch) -> Report:
    """The figures and ``report.json`` in ``out`` (only on rank 0 of a data-parallel run: every
    rank computes the same report); the report with its figures and ``timings["total"]``."""
    write = out is not None and is_main_process()
    figures: list = []
    if write:
        with clock("plots"):
            figures = sorted(set(map(Path, report.plot(out))))
    timings = clock.timings
    timings["total"] = clock.elapsed
    report = dataclasses.replace(report, timings=timings, figures=figures)
    if write:
        report.to_json(Path(out) / "report.json")
    return report


# ------------------------------------------------------------------------------------------
# validate
# ------------------------------------------------------------------------------------------
def validate(
    model: nn.Module,
    loss_fn: Callable,
    train_data: Any,
    test_data: Any,
    l1: float | None = None,
    epochs: int = 30,
    lr: float = 0.05,
    eps: float | None = None,
    num_steps: int = 80,
    num_probes: int = 10,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    refit: int | None = None,
    tolerance: float = 0.0,
    inplace: bool = False,
    hessian_data: Any = None,
    loss_criterion: bool = True,
    curve_points: int = 21,
    resolution: float = 1e-3,
    strict: bool = False,
    refit_lr: float = 1e-2,
    progress: bool | None = None,
    train_kwargs: dict | None = None,
    predict_kwargs: dict | None = None,
    criterion: Any = "magnitude",
    criterion_options: dict | None = None,
    batch_fn: Callable | None = None,
    metric: str | Callable[[nn.Module, Any], float] = "accuracy",
) -> Report:
    """Train (optionally), predict, prune, compare: the whole check on one model.

    Parameters
    ----------
    model, loss_fn
        The network and the batch-mean loss (e.g. ``nn.CrossEntropyLoss()``).
    train_data, test_data
        DataLoaders (or lists of batches, or one ``(inputs, targets)`` tuple). ``train_data``
        defines the training loss ``L`` (Hessian, ε); ``test_data`` the held-out accuracy, so
        the model must be a classifier: a single output per sample (a regression with
        ``MSELoss``), non-integer or out-of-range labels raise ``ValueError`` before any stage
        runs (one forward pass on the first test batch); for a regression, use
        :func:`~phasetrans.predict_sparsity` and :func:`~phasetrans.find_loss_threshold`.
    l1
        ``None``: the weights are taken as trained. A number ``>= 0``: first train with
        :func:`~phasetrans.train_l1` (``l1``, ``epochs``, ``lr``, ``seed`` and ``train_kwargs``).
        Training runs on a deep copy unless ``inplace=True``; the user's model comes back
        bit-for-bit in every other case. The trained copy is ``report.model``.
    eps
        Loss tolerance ε; ``None``: the standard deviation of the mini-batch training losses at
        ``w*`` over the batches of ``train_data`` (the reference code's choice).
    num_steps, num_probes, seed
        SLQ settings (:func:`~phasetrans.slq`).
    hessian_data
        Data for the Hessian products (default ``train_data``): the same training set in larger
        batches makes the products faster on CPU and gives the same ``H``.
    refit
        ``None`` or a number of SGD steps: also measure the threshold after re-fitting each pruned
        model on its kept support (THEORY §4; step size ``refit_lr``).
    tolerance, resolution, strict
        The threshold criterion (:func:`~phasetrans.find_threshold`): holds when the test metric
        ``>= dense − tolerance`` (``strict``: ``>``), on the grid of step ``resolution``.
    metric
        The held-out metric, higher is better: ``"accuracy"`` (default, classification),
        ``"neg_loss"`` (``−loss_fn`` on ``test_data``: regression) or a callable
        ``metric(model, test_batches) -> float``. With another metric than accuracy,
        ``report.dense["test_metric"]`` holds its dense value, ``report.config["metric"]`` its
        name, and ``report.curve["accuracy"]`` its values along the curve.
    progress
        Bars of the long stages (training epochs, SLQ steps, trace products, threshold
        evaluations, curve) on standard error; ``None`` (default): only when standard error is a
        terminal (:mod:`phasetrans._progress`).
    loss_criterion
        Also measure the largest ``s`` with ``L_train(w^(s)) <= L_train(w*) + eps``.
    curve_points
        Extra evenly spaced sparsities in [0, 1] for the accuracy/loss curve, besides the points
        the threshold search evaluated (0: none).
    out
        A directory: write ``report.json`` and the figures there. Checked before any work: it
        must be (or become) a writable directory and none of its output files a folder, else
        ``ValueError``.
    predict_kwargs
        More arguments for :func:`~phasetrans.predict_sparsity` (``negative``, ``zero_mass``,
        ``trace_method`` (default ``None`` here: the trace from the spectrum), ``bootstrap``,
        ``eta``, ...).
    criterion, criterion_options
        What one-shot pruning removes in the threshold, curve and layer stages: ``"magnitude"``
        (global magnitude pruning, the theory's pruner), ``"fisher_taylor"``, ``"obs"`` (with its
        weight update), ``"layer_adaptive"``, a callable ``model -> {name: scores}`` or a prepared
        criterion (:func:`~phasetrans.criterion_masks`); prepared once on ``train_data`` with
        ``loss_fn`` (options: the named builder's keyword arguments). The prediction is always
        the magnitude one: the limit the criterion is measured against.

    batch_fn
        ``batch_fn(batch) -> (inputs, targets)`` for batches of another shape (e.g. dicts),
        applied to ``train_data``, ``test_data`` and ``hessian_data``.

    Returns a :class:`Report` (``timings``: seconds per stage, and ``total``).

    (Over 80 lines only for its signature and the documentation of its 28 parameters: the body
    is the list of stages above, one line each.)
    """
    clock = Stopwatch()
    run = _checked(model, loss_fn, train_data, test_data, l1, epochs, lr, eps, num_steps, num_probes,
                   seed, out, refit, tolerance, inplace, hessian_data, loss_criterion, curve_points,
                   resolution, strict, refit_lr, progress, train_kwargs, predict_kwargs, criterion,
                   criterion_options, batch_fn, metric)
    if run.metric_name == "accuracy":
        # accuracy must be defined (several outputs, labels in range) before any long stage:
        # a regression model (one output, MSELoss) is refused here, not after training
        check_classifier(model, run.test, "test_data", "validate (it measures test accuracy)")
    with preserve_model(model) if not run.inplace else contextlib.nullcontext():
        work, history = model, None
        if run.l1 is not None:
            with clock("train"):
                work, history = _train_copy(model, run)
        with clock("dense_eval"):
            dense = _dense_eval(work, run)
        with clock("predict"):
            prediction = _predict(work, run)
        crit = None
        if run.criterion != "magnitude" or run.criterion_options:
            with clock("criterion"):
                crit = _criterion(work, run)
        with clock("threshold"):
            threshold = _threshold(work, run, dense, crit)
        refit_threshold = loss_threshold = None
        if run.refit is not None:
            with clock("refit_threshold"):
                refit_threshold = _refit_threshold(work, run, dense, crit)
        if run.loss_criterion:
            with clock("loss_threshold"):
                loss_threshold = _loss_threshold(work, run, prediction.eps, crit)
        with clock("curve"):
            curve = _curve(work, run, threshold, prediction, crit)
        with clock("layers"):
            layers = _layers(work, threshold, prediction, crit)
    report = Report(
        prediction=prediction, threshold=threshold, curve=curve, timings=clock.timings, dense=dense,
        layers=layers, refit_threshold=refit_threshold, loss_threshold=loss_threshold,
        training=history, config=run.config(), model=work if work is not model else None,
    )
    return _write(report, run.out, clock)
