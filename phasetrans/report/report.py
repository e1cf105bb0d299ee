"""The result of a validation run, and two small measurements it is made of.

- :class:`Report`: what :func:`~phasetrans.validate` found on one model (prediction, measured
  thresholds, curve, per-layer kept fractions, timings), a frozen value built once; ``to_json``,
  ``summary``, ``plot`` (figures from :mod:`phasetrans.report.plots`).
- :func:`pruning_curve`: test accuracy and loss of one-shot global magnitude pruning along a grid.
- :func:`layer_kept_fractions`: the kept fraction of each prunable layer at one sparsity.

Everything is a thin layer over the public API; the numbers come from those calls unchanged.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .._batches import as_batches
from .._checks import check_float, check_model, preserve_model
from .._io import atomic_write_text, to_jsonable
from .._progress import resolve_progress
from ..prune.criteria import resolve_criterion

__all__ = ["Report", "layer_kept_fractions", "pruning_curve"]


# ------------------------------------------------------------------------------------------
# small public helpers (thin: masks from pruning, metrics from training)
# ------------------------------------------------------------------------------------------
def layer_kept_fractions(
    model: nn.Module, sparsity: float, params: Any = None, criterion: Any = "magnitude",
    data: Any = None, loss_fn: Callable | None = None, criterion_options: dict | None = None,
) -> dict[str, dict]:
    """Per prunable layer at global one-shot magnitude pruning to ``sparsity``:
    ``{name: {"kept": int, "total": int, "kept_fraction": float}}`` (from
    :func:`~phasetrans.magnitude_masks`; with ``criterion``, its masks,
    :func:`~phasetrans.criterion_masks`). A layer with kept fraction near 0 has *collapsed*: the
    network is cut, whatever the other layers keep. The model is unchanged."""
    from ..prune.masks import criterion_masks

    check_model(model)
    masks = criterion_masks(model, sparsity, criterion, data, loss_fn, params=params,
                            criterion_options=criterion_options)
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
    progress: bool | None = None,
    criterion: Any = "magnitude",
    data: Any = None,
    criterion_options: dict | None = None,
) -> dict[str, list[float]]:
    """Test accuracy (or ``metric``) and test loss of ``w^(s)`` for each ``s`` in ``sparsities``
    (one-shot global magnitude pruning, :func:`~phasetrans.pruned`; no re-fit). ``criterion``:
    what to prune instead (:func:`~phasetrans.criterion_masks`), prepared once on ``data`` (the
    training batches) with ``loss_fn``.

    Returns ``{"sparsity": [...], "accuracy": [...], "loss": [...]}`` sorted by sparsity
    (``loss`` only with ``loss_fn``). The model comes back bit-for-bit. ``progress``: a bar on
    standard error (``None``: only when standard error is a terminal).
    """
    from ..evaluate import evaluate_accuracy, evaluate_loss
    from ..prune.masks import pruned

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
    crit = resolve_criterion(criterion, model, data, loss_fn, None, criterion_options)
    show = resolve_progress(progress)
    from tqdm.auto import tqdm

    out: dict[str, list[float]] = {"sparsity": [], "accuracy": []}
    if loss_fn is not None:
        out["loss"] = []
    with preserve_model(model):
        for s in tqdm(grid, desc="curve", disable=not show, leave=False, file=sys.stderr):
            with pruned(model, s, criterion="magnitude" if crit is None else crit):
                out["sparsity"].append(s)
                out["accuracy"].append(float(evaluate(model)))
                if loss_fn is not None:
                    out["loss"].append(float(evaluate_loss(model, loss_fn, batches)))
    return out


def _by_criterion(config: dict) -> str:
    """``"; criterion obs"`` when the report's pruning was not global magnitude, else ``""``."""
    name = config.get("criterion", "magnitude")
    return "" if name == "magnitude" else f"; criterion {name}"
def _criterion(t: Any, name: str) -> str:
    """The threshold's rule in words: "largest sparsity whose test accuracy is still >= 0.9720,
    the dense model's" (with the tolerance: "... >= 0.9670 = dense 0.9720 − tolerance 0.005")."""
    op = ">" if t.strict else ">="
    if t.tolerance:
        bar = f"{t.baseline - t.tolerance:.4f} = dense {t.baseline:.4f} − tolerance {t.tolerance:g}"
    else:
        bar = f"{t.baseline:.4f}, the dense model's"
    return f"largest sparsity whose test {name} is still {op} {bar}"


# ------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Report:
    """Result of :func:`~phasetrans.validate`, a frozen value (make a changed copy with
    ``dataclasses.replace``).

    - ``prediction``: :class:`~phasetrans.Prediction` (``.sparsity``, window ``.lower``/``.upper``).
    - ``threshold``: :class:`~phasetrans.Threshold` of one-shot pruning on the test metric
      (``.sparsity``, ``.points``, ``.baseline``); ``refit_threshold`` the same after a re-fit
      on the kept support (or ``None``); ``loss_threshold`` the loss criterion
      ``L_train(w^(s)) <= L_train(w*) + eps`` (or ``None``).
    - ``curve``: ``{"sparsity", "accuracy", "loss"}`` lists at every evaluated sparsity.
    - ``layers``: per-layer kept fractions at the measured threshold and at the prediction.
    - ``dense``: test accuracy / test loss / train loss of the unpruned model.
    - ``timings``: seconds per stage; ``training``: the l1 training history (or ``None``);
      ``config``: the arguments; ``figures``: paths of the PNGs ``validate`` wrote (sorted).
    - ``spread``: with ``validate(spread=True)``, the :class:`~phasetrans.ThresholdSpread` of the
      measured threshold (its bootstrap interval over test sets of this size and the error floor
      it sets for any prediction), else ``None``.
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
    spread: Any = None

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
                "applies": self.prediction.applies,
                "warnings": list(self.prediction.warnings),
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
            "spread": None if self.spread is None else self.spread.to_dict(draws=True),
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

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        """The :class:`Report` of :meth:`to_dict` (also the ``--json`` output of ``phasetrans
        validate``/``demo``, whose ``command`` key is ignored): ``to_dict()`` of the result equals
        ``d``. The prediction comes back with :meth:`Prediction.from_dict`, the thresholds as
        ``Threshold``, the training history as ``TrainHistory``, ``figures`` as paths; ``model``
        is not saved (``None``); ``summary`` is recomputed."""
        return _report_from_dict(cls, d)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Report:
        """The :class:`Report` saved in ``path`` (``report.json`` from :func:`validate` with ``out``,
        :meth:`to_json`, or ``phasetrans validate --out``)."""
        from .._io import check_path

        path = check_path(path, "path")
        if not Path(path).is_file():
            raise ValueError(f"path does not exist or is not a file: {path}")
        try:
            d = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"path is not a JSON file ({path}): {exc}") from None
        return cls.from_dict(d)

    def plot(self, path: str | os.PathLike) -> list[Path]:
        """Write the figures as PNGs. ``path``: a directory (all four figures:
        ``spectrum.png``, ``crossing.png``, ``pruning_curve.png``, ``layers.png``) or a file
        name ending in ``.png`` (one overview figure with all panels). Returns the paths; the
        report itself is not changed (``dataclasses.replace(report, figures=...)`` records them)."""
        from . import plots

        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        p = Path(path)
        if p.suffix.lower() == ".png":
            plots.plot_overview(self, p)
            return [p]
        return plots.plot_report(self, p)

    def summary(self) -> str:
        """A few readable lines: predicted vs measured sparsity, dense metrics, timings."""
        p, t = self.prediction, self.threshold
        name = self.config.get("metric", "accuracy")
        lines = [
            f"predicted critical sparsity  {p.sparsity:.4f}  (kinematic window "
            f"[{p.lower:.4f}, {p.upper:.4f}], D = {p.dim}, eps = {p.eps:.4g})",
            f"measured one-shot threshold  {t.sparsity:.4f}  ({_criterion(t, name)}; "
            f"{t.evaluations} evaluations{_by_criterion(self.config)})",
            f"difference (pred − meas)     {100 * self.difference:+.2f} points"
            f"{'  (inside the window)' if self.within_window else ''}",
        ]
        if p.applies is not None:  # THEORY §7: does s* describe one-shot pruning of this network?
            lines.insert(1, f"theory {'applies' if p.applies else 'does NOT apply'} to this network"
                            + "".join(f"\n  - {w}" for w in p.warnings))
        if self.spread is not None:  # THEORY §9: how precisely the test set measures it
            lines.insert(3 if p.applies is not None else 2, f"  measurement: {self.spread.summary()}")
        if self.refit_threshold is not None:
            lines.append(f"after re-fit on the support  {self.refit_threshold.sparsity:.4f}")
        if self.loss_threshold is not None:
            lines.append(
                f"loss criterion L(w^s) <= L(w*) + eps (train)  {self.loss_threshold.sparsity:.4f}"
            )
        d = self.dense
        dense_metric = d.get("test_accuracy", d.get("test_metric", float("nan")))
        lines.append(
            f"dense model: test {name} {dense_metric:.4f}, test loss "
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


_REPORT_KEYS = ("prediction", "threshold", "curve", "timings", "layers", "summary")


def _threshold(d: Any, key: str) -> Any:
    """A ``Threshold`` from its ``to_dict()`` (``points`` back to tuples), or ``None``."""
    from ..prune.threshold import Threshold

    if d is None:
        return None
    if not isinstance(d, dict):
        raise TypeError(f"d[{key!r}] must be a dict (Threshold.to_dict()) or None, got {type(d).__name__}")
    kwargs = {k: v for k, v in d.items() if k != "kept_fraction"}
    kwargs["points"] = [tuple(p) for p in kwargs.get("points", [])]
    try:
        return Threshold(**kwargs)
    except TypeError as exc:
        raise ValueError(f"d[{key!r}] is not a Threshold.to_dict(): {exc}") from None


def _report_from_dict(cls: type, d: Any) -> Report:
    """:meth:`Report.from_dict`."""
    from ..prune.threshold_spread import ThresholdSpread
    from ..theory.critical import Prediction
    from ..train import TrainHistory

    if not isinstance(d, dict):
        raise TypeError(f"d must be a dict (Report.to_dict()), got {type(d).__name__}")
    missing = sorted(set(_REPORT_KEYS) - d.keys())
    if missing:
        raise ValueError(f"d is missing keys {missing} (not a Report.to_dict())")
    if not isinstance(d["summary"], dict):
        raise TypeError(f"d['summary'] must be a dict, got {type(d['summary']).__name__}")
    training = d.get("training")
    if training is not None and not isinstance(training, dict):
        raise TypeError(f"d['training'] must be a dict or None, got {type(training).__name__}")
    return cls(
        prediction=Prediction.from_dict(d["prediction"]), threshold=_threshold(d["threshold"], "threshold"),
        curve=d["curve"], timings=d["timings"], dense=dict(d["summary"].get("dense") or {}), layers=d["layers"],
        refit_threshold=_threshold(d.get("refit_threshold"), "refit_threshold"),
        loss_threshold=_threshold(d.get("loss_threshold"), "loss_threshold"),
        training=None if training is None else TrainHistory(**training),
        config=d.get("config") or {}, figures=[Path(p) for p in d.get("figures") or []],
        spread=None if d.get("spread") is None else ThresholdSpread.from_dict(d["spread"]),
    )
