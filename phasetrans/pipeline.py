"""The embedded default: train (optionally), predict, prune, compare — one call.

:func:`validate` runs the whole check of the theory of Zhang, Zhang, Sun & Liu, "How Sparse Can
We Prune A Deep Network: A Fundamental Limit Perspective" (NeurIPS 2024) on one model:

1. (``l1`` given) train a *copy* of the model with the l1 penalty (:func:`~phasetrans.train_l1`,
   the paper's LOMP recipe), or take the weights as given (``l1=None``);
2. predict the critical sparsity from the Hessian spectrum and the weight magnitudes
   (:func:`~phasetrans.predict_sparsity`);
3. measure the empirical threshold of one-shot global magnitude pruning on held-out data
   (:func:`~phasetrans.find_threshold` with test accuracy), optionally also after a short re-fit
   on the kept support, and with the loss criterion ``L(w^(s)) <= L(w*) + eps``;
4. evaluate test accuracy and loss along the pruning curve, the per-layer kept fraction at the
   threshold, and draw the figures (:mod:`phasetrans.plots`).

Everything is a thin layer over the public API; the numbers come from those calls unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ._batches import as_batches
from ._checks import (
    check_bool,
    check_callable,
    check_float,
    check_int,
    check_model,
    check_seed,
    preserve_model,
)
from ._io import atomic_write_text, to_jsonable
from .distributed import is_main_process

__all__ = ["Report", "validate", "layer_kept_fractions", "pruning_curve"]


# ------------------------------------------------------------------------------------------
# small public helpers (thin: masks from pruning, metrics from training)
# ------------------------------------------------------------------------------------------
def layer_kept_fractions(model: nn.Module, sparsity: float, params: Any = None) -> dict[str, dict]:
    """Per prunable layer at global one-shot magnitude pruning to ``sparsity``:
    ``{name: {"kept": int, "total": int, "kept_fraction": float}}`` (from
    :func:`~phasetrans.magnitude_masks`). A layer with kept fraction near 0 has *collapsed*: the
    network is cut, whatever the other layers keep. The model is unchanged."""
    from .pruning import magnitude_masks

    check_model(model)
    masks = magnitude_masks(model, sparsity, params=params)
    out = {}
    for name, mask in masks.items():
        kept, total = int(mask.sum().item()), int(mask.numel())
        out[name] = {"kept": kept, "total": total, "kept_fraction": kept / total}
    return out


def pruning_curve(
    model: nn.Module,
    sparsities: Any,
    test_data: Any,
    loss_fn: Callable | None = None,
    metric: Callable[[nn.Module], float] | None = None,
    progress: bool = False,
) -> dict[str, list[float]]:
    """Test accuracy (or ``metric``) and test loss of ``w^(s)`` for each ``s`` in ``sparsities``
    (one-shot global magnitude pruning, :func:`~phasetrans.pruned`; no re-fit).

    Returns ``{"sparsity": [...], "accuracy": [...], "loss": [...]}`` sorted by sparsity
    (``loss`` only with ``loss_fn``). The model comes back bit-for-bit.
    """
    from .pruning import pruned
    from .training import evaluate_accuracy, evaluate_loss

    check_model(model)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if metric is not None and not callable(metric):
        raise TypeError(f"metric must be callable, got {type(metric).__name__}")
    batches = as_batches(test_data, "test_data")
    if isinstance(sparsities, (str, bytes)):
        raise TypeError("sparsities must be a sequence of numbers in [0, 1]")
    try:
        grid = sorted({check_float(s, "sparsities", minimum=0.0, maximum=1.0) for s in sparsities})
    except TypeError as exc:
        raise TypeError(f"sparsities must be a sequence of numbers in [0, 1]: {exc}") from None
    if not grid:
        raise ValueError("sparsities must contain at least one value")
    evaluate = metric if metric is not None else (lambda m: evaluate_accuracy(m, batches))
    from tqdm.auto import tqdm

    out: dict[str, list[float]] = {"sparsity": [], "accuracy": []}
    if loss_fn is not None:
        out["loss"] = []
    with preserve_model(model):
        for s in tqdm(grid, desc="curve", disable=not progress, leave=False):
            with pruned(model, s):
                out["sparsity"].append(s)
                out["accuracy"].append(float(evaluate(model)))
                if loss_fn is not None:
                    out["loss"].append(float(evaluate_loss(model, loss_fn, batches)))
    return out


# ------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------
@dataclass
class Report:
    """Result of :func:`validate`.

    - ``prediction``: :class:`~phasetrans.Prediction` (``.sparsity``, window ``.lower``/``.upper``).
    - ``threshold``: :class:`~phasetrans.Threshold` of one-shot pruning on the test metric
      (``.sparsity``, ``.points``, ``.baseline``); ``refit_threshold`` the same after a re-fit
      on the kept support (or ``None``); ``loss_threshold`` the loss criterion
      ``L_train(w^(s)) <= L_train(w*) + eps`` (or ``None``).
    - ``curve``: ``{"sparsity", "accuracy", "loss"}`` lists at every evaluated sparsity.
    - ``layers``: per-layer kept fractions at the measured threshold and at the prediction.
    - ``dense``: test accuracy / test loss / train loss of the unpruned model.
    - ``timings``: seconds per stage; ``training``: the l1 training history (or ``None``);
      ``config``: the arguments; ``figures``: paths of the PNGs written.
    """

    prediction: Any
    threshold: Any
    curve: dict
    timings: dict
    dense: dict
    layers: dict
    refit_threshold: Any = None
    loss_threshold: Any = None
    training: Any = None
    config: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    model: Any = field(default=None, repr=False)

    @property
    def predicted(self) -> float:
        """Predicted critical sparsity ``s*``."""
        return float(self.prediction.sparsity)

    @property
    def measured(self) -> float:
        """Measured one-shot threshold (largest sparsity holding the dense test metric)."""
        return float(self.threshold.sparsity)

    @property
    def difference(self) -> float:
        """``predicted − measured`` (in sparsity, 0.01 = one point)."""
        return self.predicted - self.measured

    @property
    def within_window(self) -> bool:
        """Whether the measured threshold lies in the prediction's kinematic window."""
        return bool(self.prediction.lower <= self.measured <= self.prediction.upper)

    def to_dict(self) -> dict:
        """JSON-serialisable dict of everything (non-finite numbers become ``None``)."""
        out = {
            "summary": {
                "predicted_sparsity": self.predicted,
                "predicted_window": [self.prediction.lower, self.prediction.upper],
                "measured_sparsity": self.measured,
                "difference": self.difference,
                "within_window": self.within_window,
                "refit_sparsity": None if self.refit_threshold is None else self.refit_threshold.sparsity,
                "loss_criterion_sparsity": None if self.loss_threshold is None else self.loss_threshold.sparsity,
                "dense": self.dense,
            },
            "prediction": self.prediction.to_dict(),
            "threshold": self.threshold.to_dict(),
            "refit_threshold": None if self.refit_threshold is None else self.refit_threshold.to_dict(),
            "loss_threshold": None if self.loss_threshold is None else self.loss_threshold.to_dict(),
            "curve": self.curve,
            "layers": self.layers,
            "timings": self.timings,
            "training": None if self.training is None else self.training.to_dict(),
            "config": self.config,
            "figures": [str(p) for p in self.figures],
        }
        return to_jsonable(out)

    def to_json(self, path: str | os.PathLike | None = None, indent: int | None = 2) -> str:
        """The report as JSON text; with ``path``, also written there atomically (temp file +
        ``os.replace``)."""
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be None, a str or os.PathLike, got {type(path).__name__}")
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    def plot(self, path: str | os.PathLike) -> list[Path]:
        """Write the figures as PNGs. ``path``: a directory (all four figures:
        ``spectrum.png``, ``crossing.png``, ``pruning_curve.png``, ``layers.png``) or a file
        name ending in ``.png`` (one overview figure with all panels). Returns the paths."""
        from . import plots

        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        p = Path(path)
        if p.suffix.lower() == ".png":
            plots.plot_overview(self, p)
            written = [p]
        else:
            written = plots.plot_report(self, p)
        self.figures = sorted({*map(Path, self.figures), *written})
        return written

    def summary(self) -> str:
        """A few readable lines: predicted vs measured sparsity, dense metrics, timings."""
        p, t = self.prediction, self.threshold
        lines = [
            f"predicted critical sparsity  {p.sparsity:.4f}  (kinematic window "
            f"[{p.lower:.4f}, {p.upper:.4f}], D = {p.dim}, eps = {p.eps:.4g})",
            f"measured one-shot threshold  {t.sparsity:.4f}  (test accuracy >= "
            f"{t.baseline:.4f} − {t.tolerance:g}; {t.evaluations} evaluations)",
            f"difference (pred − meas)     {100 * self.difference:+.2f} points"
            f"{'  (inside the window)' if self.within_window else ''}",
        ]
        if self.refit_threshold is not None:
            lines.append(f"after re-fit on the support  {self.refit_threshold.sparsity:.4f}")
        if self.loss_threshold is not None:
            lines.append(
                f"loss criterion L(w^s) <= L(w*) + eps (train)  {self.loss_threshold.sparsity:.4f}"
            )
        d = self.dense
        lines.append(
            f"dense model: test accuracy {d.get('test_accuracy', float('nan')):.4f}, test loss "
            f"{d.get('test_loss', float('nan')):.4g}, train loss {d.get('train_loss', float('nan')):.4g}"
        )
        collapsed = [n for n, v in self.layers.get("at_threshold", {}).items() if v["kept_fraction"] < 0.01]
        if collapsed:
            lines.append(f"layers (nearly) collapsed at the threshold: {', '.join(collapsed)}")
        lines.append(
            "timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return (
            f"Report(predicted={self.predicted:.4f} [{self.prediction.lower:.4f}, "
            f"{self.prediction.upper:.4f}], measured={self.measured:.4f}, "
            f"difference={100 * self.difference:+.2f} points, dim={self.prediction.dim}, "
            f"total={self.timings.get('total', float('nan')):.1f}s)"
        )


# ------------------------------------------------------------------------------------------
# validate
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
    progress: bool = False,
    train_kwargs: dict | None = None,
    predict_kwargs: dict | None = None,
) -> Report:
    """Train (optionally), predict, prune, compare: the whole check on one model.

    Parameters
    ----------
    model, loss_fn
        The network and the batch-mean loss (e.g. ``nn.CrossEntropyLoss()``).
    train_data, test_data
        DataLoaders (or lists of batches, or one ``(inputs, targets)`` tuple). ``train_data``
        defines the training loss ``L`` (Hessian, ε); ``test_data`` the held-out accuracy.
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
        The threshold criterion (:func:`~phasetrans.find_threshold`): holds when test accuracy
        ``>= dense − tolerance`` (``strict``: ``>``), on the grid of step ``resolution``.
    loss_criterion
        Also measure the largest ``s`` with ``L_train(w^(s)) <= L_train(w*) + eps``.
    curve_points
        Extra evenly spaced sparsities in [0, 1] for the accuracy/loss curve, besides the points
        the threshold search evaluated (0: none).
    out
        A directory: write ``report.json`` and the figures there.
    predict_kwargs
        More arguments for :func:`~phasetrans.predict_sparsity` (``negative``, ``zero_mass``,
        ``trace_method`` (default ``None`` here: the trace from the spectrum), ``bootstrap``,
        ``eta``, ...).

    Returns a :class:`Report`.
    """
    from .prediction import estimate_eps, predict_sparsity
    from .threshold import find_loss_threshold, find_threshold
    from .training import evaluate_accuracy, evaluate_loss, train_l1

    t_start = time.perf_counter()
    check_model(model)
    check_callable(loss_fn, "loss_fn")
    train_batches = as_batches(train_data, "train_data")
    test_batches = as_batches(test_data, "test_data")
    hessian_batches = train_batches if hessian_data is None else as_batches(hessian_data, "hessian_data")
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
    check_bool(progress, "progress")
    curve_points = check_int(curve_points, "curve_points", minimum=0)
    if curve_points == 1:
        raise ValueError("curve_points must be 0 or at least 2 (it includes both ends 0 and 1)")
    resolution = check_float(resolution, "resolution", minimum=0.0, maximum=0.5, strict_minimum=True)
    refit_lr = check_float(refit_lr, "refit_lr", minimum=0.0, strict_minimum=True)
    train_kwargs = _check_kwargs(train_kwargs, "train_kwargs", train_l1)
    predict_kwargs = _check_kwargs(predict_kwargs, "predict_kwargs", predict_sparsity)
    # the trace from the spectrum itself (the Jensen bound then provably holds); a separate
    # Hutch++ estimate would cost as many Hessian products as the spectrum
    predict_kwargs.setdefault("trace_method", None)
    for key in ("eps", "num_steps", "num_probes", "seed"):
        if key in predict_kwargs:
            raise TypeError(f"predict_kwargs must not contain {key!r}: pass {key}= to validate")

    config = {
        "l1": l1, "epochs": epochs if l1 is not None else None, "lr": lr if l1 is not None else None,
        "eps": eps, "num_steps": num_steps, "num_probes": num_probes, "seed": seed,
        "refit": refit, "tolerance": tolerance, "inplace": inplace, "strict": strict,
        "resolution": resolution, "curve_points": curve_points, "loss_criterion": loss_criterion,
        "train_kwargs": train_kwargs, "predict_kwargs": predict_kwargs,
    }
    timings: dict[str, float] = {}
    guard = preserve_model(model) if not inplace else contextlib.nullcontext()
    with guard:
        history = None
        work = model
        if l1 is not None:
            t = time.perf_counter()
            work = model if inplace else copy.deepcopy(model)
            train_kwargs.setdefault("progress", progress)
            history = train_l1(work, loss_fn, train_batches, l1=l1, epochs=epochs, lr=lr, seed=seed,
                               **train_kwargs)
            timings["train"] = time.perf_counter() - t

        t = time.perf_counter()
        dense = {
            "test_accuracy": evaluate_accuracy(work, test_batches),
            "test_loss": evaluate_loss(work, loss_fn, test_batches),
            "train_loss": evaluate_loss(work, loss_fn, train_batches),
        }
        timings["dense_eval"] = time.perf_counter() - t

        t = time.perf_counter()
        eps_source = "user"
        if eps is None and hessian_data is not None:
            eps = estimate_eps(work, loss_fn, train_batches)
            eps_source = "batch_loss_std"
        prediction = predict_sparsity(work, loss_fn, hessian_batches, eps=eps, num_steps=num_steps,
                                      num_probes=num_probes, seed=seed, **predict_kwargs)
        if eps_source != "user":
            prediction.eps_source = eps_source
        timings["predict"] = time.perf_counter() - t

        def test_accuracy(m: nn.Module) -> float:
            return evaluate_accuracy(m, test_batches)

        t = time.perf_counter()
        threshold = find_threshold(work, test_accuracy, baseline=dense["test_accuracy"],
                                   tolerance=tolerance, resolution=resolution, strict=strict)
        timings["threshold"] = time.perf_counter() - t

        refit_threshold = None
        if refit is not None:
            t = time.perf_counter()
            refit_threshold = find_threshold(
                work, test_accuracy, baseline=dense["test_accuracy"], tolerance=tolerance,
                resolution=resolution, strict=strict, refit=refit, refit_loss_fn=loss_fn,
                refit_data=train_batches, refit_lr=refit_lr,
            )
            timings["refit_threshold"] = time.perf_counter() - t

        loss_threshold = None
        if loss_criterion:
            t = time.perf_counter()
            loss_threshold = find_loss_threshold(work, loss_fn, train_batches, prediction.eps,
                                                 resolution=resolution)
            timings["loss_threshold"] = time.perf_counter() - t

        t = time.perf_counter()
        grid = [s for s, _ in threshold.points]
        if curve_points:
            grid += list(np.linspace(0.0, 1.0, curve_points))
        grid += [prediction.sparsity, prediction.lower, prediction.upper]
        curve = pruning_curve(work, grid, test_batches, loss_fn=loss_fn)
        timings["curve"] = time.perf_counter() - t

        t = time.perf_counter()
        layers = {
            "at_threshold": layer_kept_fractions(work, threshold.sparsity),
            "at_prediction": layer_kept_fractions(work, min(1.0, max(0.0, prediction.sparsity))),
            "threshold_sparsity": threshold.sparsity,
            "predicted_sparsity": prediction.sparsity,
        }
        timings["layers"] = time.perf_counter() - t

    report = Report(
        prediction=prediction, threshold=threshold, curve=curve, timings=timings, dense=dense,
        layers=layers, refit_threshold=refit_threshold, loss_threshold=loss_threshold,
        training=history, config=config, model=work if work is not model else None,
    )
    # data-parallel runs compute the same report on every rank; only rank 0 writes files
    write = out is not None and is_main_process()
    if write:
        t = time.perf_counter()
        report.plot(out)
        timings["plots"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    if write:
        report.to_json(Path(out) / "report.json")
    return report
