"""One case of the one-shot study: the paper's prediction with ``applies``, the one-shot estimates,
and the measured one-shot threshold with its measurement window.

- ε: std of the batch-64 training losses at ``w*`` (``pt.estimate_eps`` on the training loader).
- Paper: ``pt.predict_sparsity`` on the full training set (SLQ ``num_steps × num_probes``), with
  ``applies`` / ``ratio = ΔL₂(s*)/ε`` / spike mass / implied l1.
- Estimates: ``pt.predict_oneshot`` forward at τ = ε, 2ε, 4ε and quadratic at 2ε (training data).
- Measured: ``pt.find_threshold`` on test accuracy, tolerance 0 (the reference protocol); the
  test accuracy on a 0.005 grid gives the *measurement window* ``[last s before the first failure,
  last s that holds]``: every point of it is a possible outcome of the zero-tolerance protocol.
- Spread (:func:`spread_of`): ``pt.threshold_spread`` of that protocol and of the one-point one,
  on the test and on the training set: how far the measurement moves when the test set is
  resampled, and the error floor it sets for every estimator (THEORY §9).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from phasetrans._timing import Stopwatch
from phasetrans.evaluate import evaluate_accuracy
from phasetrans.oneshot import predict_oneshot
from phasetrans.predict import estimate_eps, predict_sparsity
from phasetrans.prune.threshold import find_loss_threshold, find_threshold
from phasetrans.prune.threshold_spread import RULES, threshold_rules, threshold_spread

__all__ = ["SPREADS", "curve_of", "measure_case", "spread_of", "window_of"]

TOLERANCES = (1.0, 2.0, 4.0)


def window_of(s: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """``(last s before the first failing one, last s that holds)`` on a grid
    (:func:`~phasetrans.prune.threshold_spread.threshold_rules`)."""
    first, last = threshold_rules(np.asarray(s), np.asarray(ok, dtype=bool))
    return float(first), float(last)


#: the measurements whose bootstrap spread every case records: (data, tolerance in accuracy units)
SPREADS = {"test": ("test", 0.0), "test_tol1pt": ("test", 0.01),
           "train": ("train", 0.0), "train_tol1pt": ("train", 0.01)}


def spread_of(model: nn.Module, hdata, test, resamples: int = 1000, step: float = 0.005) -> tuple[list, dict]:
    """``(grid, spreads)``: ``pt.threshold_spread`` of the zero-tolerance and the one-point
    protocol, on the test set (the measurement) and on the training set (the same protocol on the
    data an estimator may see): window, bootstrap intervals and error floors, accuracy curves on
    the shared sparsity ``grid``."""
    out = {}
    for key, (which, tol) in SPREADS.items():
        sp = threshold_spread(model, [test if which == "test" else hdata], tolerance=tol, step=step,
                              resamples=resamples, seed=0)
        d = sp.to_dict()
        grid = d.pop("sparsity")  # one grid for all four: it goes to the case's curve
        # how often even the best fixed estimate lands within 2 / 5 points of a new test set's value
        d["best_coverage"] = {r: {"2": sp.best_coverage(0.02, r), "5": sp.best_coverage(0.05, r)} for r in RULES}
        out[key] = d
    return grid, out


def curve_of(grid: list, spread: dict) -> dict:
    """The case's accuracy ``curve`` and measurement ``window``: the test measurement's."""
    test = spread["test"]
    return {"sparsity": grid, "accuracy": test["accuracy"], "window": test["window"]}


def measure_case(name: str, model: nn.Module, train, hdata, test, num_steps: int = 80,
                 num_probes: int = 10, refit_steps: int = 0, seed: int = 0) -> dict:
    """Every number of one case (see the module). SLQ ``num_steps × num_probes`` below 15 000
    weights, half of each above (LeNet, the big MLP: CPU time)."""
    loss = nn.CrossEntropyLoss()
    if sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight")) >= 15_000:
        num_steps, num_probes = max(num_steps // 2, 10), max(num_probes // 2, 2)
    clock = Stopwatch()
    with clock("eps"):
        eps = estimate_eps(model, loss, train)
    dense = evaluate_accuracy(model, [test])
    with clock("paper"):
        pred = predict_sparsity(model, loss, hdata, eps=eps, num_steps=num_steps, num_probes=num_probes,
                                seed=seed, trace_method=None, bootstrap=0)
    app = pred.details["applicability"]
    est = {}
    for c in TOLERANCES:
        with clock(f"forward_{c:g}"):
            p = predict_oneshot(model, loss, [hdata], eps=eps, tolerance=c, method="forward")
        est[f"forward_{c:g}"] = {"sparsity": p.sparsity, "upper": p.upper,
                                 "forward_passes": p.details["forward_passes"]}
    with clock("quadratic_2"):
        q = predict_oneshot(model, loss, [hdata], eps=eps, tolerance=2.0, method="quadratic", grid=16,
                            resolution=2e-3)
    est["quadratic_2"] = {"sparsity": q.sparsity, "upper": q.upper, "applies": q.applies,
                          "hessian_columns": q.details["hessian_columns"],
                          "loss_change_at_estimate": q.details["loss_change_at_estimate"],
                          "model_loss_change_at_estimate": q.details["model_loss_change_at_estimate"]}
    acc = lambda m: evaluate_accuracy(m, [test])  # noqa: E731
    with clock("measured"):
        thr = find_threshold(model, acc)
    with clock("window"):
        grid, spread = spread_of(model, hdata, test)
    curve = curve_of(grid, spread)
    refit = None
    if refit_steps:
        with clock("refit"):
            refit = find_loss_threshold(model, loss, train, eps, refit=refit_steps).sparsity
    return {
        "name": name, "dim": pred.dim, "eps": eps, "dense_acc": dense, "n_test": int(test[1].shape[0]),
        "paper": pred.sparsity, "applies": pred.applies, "warnings": list(pred.warnings),
        "ratio": app["ratio"], "first_order": app["first_order"], "second_order": app["second_order"],
        "spike_mass": app["spike_mass"], "implied_l1": app["implied_l1"],
        "estimates": est, "estimate": est["forward_2"]["sparsity"],
        "measured": thr.sparsity, "measured_evaluations": thr.evaluations,
        "window": curve["window"], "curve": curve, "spread": spread, "refit_loss": refit, "refit_steps": refit_steps,
        "slq": [num_steps, num_probes], "timings": clock.timings,
    }
