"""One case of the one-shot study: the paper's prediction with ``applies``, the one-shot estimates,
and the measured one-shot threshold with its measurement window.

- ε: std of the batch-64 training losses at ``w*`` (``pt.estimate_eps`` on the training loader).
- Paper: ``pt.predict_sparsity`` on the full training set (SLQ ``num_steps × num_probes``), with
  ``applies`` / ``ratio = ΔL₂(s*)/ε`` / spike mass / implied l1.
- Estimates: ``pt.predict_oneshot`` forward at τ = ε, 2ε, 4ε and quadratic at 2ε (training data).
- Measured: ``pt.find_threshold`` on test accuracy, tolerance 0 (the reference protocol); the
  test accuracy on a 0.005 grid gives the *measurement window* ``[last s before the first failure,
  last s that holds]``: every point of it is a possible outcome of the zero-tolerance protocol.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from phasetrans._timing import Stopwatch
from phasetrans.evaluate import evaluate_accuracy
from phasetrans.oneshot import predict_oneshot
from phasetrans.predict import estimate_eps, predict_sparsity
from phasetrans.prune.masks import pruned
from phasetrans.prune.threshold import find_loss_threshold, find_threshold

__all__ = ["measure_case", "window_of"]

TOLERANCES = (1.0, 2.0, 4.0)


def window_of(s: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """``(last s before the first failing one, last s that holds)`` on a grid."""
    bad = np.nonzero(~ok)[0]
    lo = float(s[bad[0] - 1]) if bad.size and bad[0] > 0 else (0.0 if bad.size else float(s[-1]))
    hi = float(s[ok].max()) if ok.any() else 0.0
    return lo, max(lo, hi)


def _accuracy_grid(model, test, dense: float, step: float = 0.005) -> dict:
    grid = np.round(np.arange(0.0, 1.0 + 1e-9, step), 4)
    acc = []
    for s in grid:
        with pruned(model, float(s)):
            acc.append(evaluate_accuracy(model, [test]))
    acc = np.array(acc)
    lo, hi = window_of(grid, acc >= dense - 1e-9)
    return {"sparsity": grid.tolist(), "accuracy": acc.tolist(), "window": [lo, hi]}


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
        curve = _accuracy_grid(model, test, thr.baseline)
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
        "window": curve["window"], "curve": curve, "refit_loss": refit, "refit_steps": refit_steps,
        "slq": [num_steps, num_probes], "timings": clock.timings,
    }
