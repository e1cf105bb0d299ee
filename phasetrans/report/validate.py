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
   ``spread`` (with ``spread=True``): how far that threshold moves over test sets of the same
   size (:func:`~phasetrans.threshold_spread`, bootstrap) and the error floor it sets;
5. ``curve``: test accuracy and loss along the pruning curve (:func:`~phasetrans.pruning_curve`);
6. ``layers``: the per-layer kept fraction at the threshold and at the prediction;
7. ``plots`` and ``report.json`` (with ``out``; figures from :mod:`phasetrans.report.plots`).

Everything is a thin layer over the public API; the numbers come from those calls unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .._checks import (
    preserve_model,
)
from .._timing import Stopwatch
from ..distributed import is_main_process
from ..evaluate import check_classifier
from ..prune.criteria import resolve_criterion
from .report import Report, layer_kept_fractions, pruning_curve
from .validate_args import ValidateRun, check_validate_args

__all__ = ["validate"]


# ------------------------------------------------------------------------------------------
# the checked arguments
# ------------------------------------------------------------------------------------------
def _train_copy(model: nn.Module, run: ValidateRun) -> tuple[nn.Module, Any]:
    """``(trained model, history)``: a deep copy (the model itself with ``inplace``) trained
    with :func:`~phasetrans.train_l1`."""
    from ..train import train_l1

    work = model if run.inplace else copy.deepcopy(model)
    history = train_l1(work, run.loss_fn, run.train, l1=run.l1, epochs=run.epochs, lr=run.lr,
                       seed=run.seed, **run.train_kwargs)
    return work, history


def _dense_eval(work: nn.Module, run: ValidateRun) -> dict:
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


def _predict(work: nn.Module, run: ValidateRun) -> Any:
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


def _test_metric(run: ValidateRun) -> Callable[[nn.Module], float]:
    """``model -> metric(model, test data)`` (test accuracy by default), as a float."""

    def test_metric(m: nn.Module) -> float:
        return float(run.metric(m, run.test))

    return test_metric


def _criterion(work: nn.Module, run: ValidateRun) -> Any:
    """The criterion prepared once on the training data at the trained weights (``None``: global
    magnitude pruning, the default path)."""
    return resolve_criterion(run.criterion, work, run.train, run.loss_fn, None,
                             run.criterion_options)


def _by(crit: Any) -> Any:
    """The ``criterion=`` argument for the pruning calls: the prepared one, or the default."""
    return "magnitude" if crit is None else crit


def _threshold(work: nn.Module, run: ValidateRun, dense: dict, crit: Any = None) -> Any:
    """One-shot threshold on the test metric (``>= dense − tolerance``)."""
    from ..prune.threshold import find_threshold

    return find_threshold(work, _test_metric(run), baseline=dense[run.dense_key],
                          tolerance=run.tolerance, resolution=run.resolution, strict=run.strict,
                          criterion=_by(crit), progress=run.progress)


def _refit_threshold(work: nn.Module, run: ValidateRun, dense: dict, crit: Any = None) -> Any:
    """The same threshold after ``refit`` SGD steps on the kept support of each pruned model."""
    from ..prune.threshold import find_threshold

    return find_threshold(
        work, _test_metric(run), baseline=dense[run.dense_key], tolerance=run.tolerance,
        resolution=run.resolution, strict=run.strict, refit=run.refit, refit_loss_fn=run.loss_fn,
        refit_data=run.train, refit_lr=run.refit_lr, criterion=_by(crit), progress=run.progress,
    )


def _loss_threshold(work: nn.Module, run: ValidateRun, eps: float, crit: Any = None) -> Any:
    """Largest ``s`` with ``L_train(w^(s)) <= L_train(w*) + eps``."""
    from ..prune.threshold import find_loss_threshold

    return find_loss_threshold(work, run.loss_fn, run.train, eps, resolution=run.resolution,
                               criterion=_by(crit), progress=run.progress)


def _spread(work: nn.Module, run: ValidateRun, crit: Any = None) -> Any:
    """How precisely the test set measures the threshold: its bootstrap spread under the same
    criterion, tolerance, strictness and resolution (:func:`~phasetrans.threshold_spread`)."""
    from ..prune.threshold_spread import threshold_spread

    return threshold_spread(work, run.test, tolerance=run.tolerance, strict=run.strict,
                            resolution=run.resolution, criterion=_by(crit), progress=run.progress)


def _curve(work: nn.Module, run: ValidateRun, threshold: Any, prediction: Any, crit: Any = None) -> dict:
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
    num_steps: int | None = None,
    num_probes: int | None = None,
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
    spread: bool = False,
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
        SLQ settings (:func:`~phasetrans.slq`); ``None`` (the default): the adaptive budget of
        :func:`~phasetrans.predict_sparsity` (steps and probes grown until ``s*`` is settled to
        0.1 point). A ``checkpoint`` in ``predict_kwargs`` needs both fixed.
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
    spread
        Also measure how precisely the test set measures the threshold
        (:func:`~phasetrans.threshold_spread`: ``⌈1/0.005⌉ + 1`` pruned passes over ``test_data``
        plus those of ``find_threshold``'s search on 1000 bootstrap resamples): ``report.spread``,
        a line in ``summary()``, ``threshold_spread.png``. Needs ``metric="accuracy"`` and every
        test sample on one process.
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

    (Over 80 lines only for its signature and the documentation of its 29 parameters: the body
    is the list of stages above, one line each.)
    """
    clock = Stopwatch()
    run = check_validate_args(model, loss_fn, train_data, test_data, l1, epochs, lr, eps, num_steps, num_probes,
                   seed, out, refit, tolerance, inplace, hessian_data, loss_criterion, curve_points,
                   resolution, strict, refit_lr, progress, train_kwargs, predict_kwargs, criterion,
                   criterion_options, batch_fn, metric, spread)
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
        threshold_spread = None
        if run.spread:
            with clock("spread"):
                threshold_spread = _spread(work, run, crit)
        with clock("curve"):
            curve = _curve(work, run, threshold, prediction, crit)
        with clock("layers"):
            layers = _layers(work, threshold, prediction, crit)
    report = Report(
        prediction=prediction, threshold=threshold, curve=curve, timings=clock.timings, dense=dense,
        layers=layers, refit_threshold=refit_threshold, loss_threshold=loss_threshold,
        training=history, config=run.config(), model=work if work is not model else None,
        spread=threshold_spread,
    )
    return _write(report, run.out, clock)
