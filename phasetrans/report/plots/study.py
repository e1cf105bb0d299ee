"""Figures of many runs (the validation study, ``python -m studies.validation``, draws these from
the dicts it records per case; the keys each one reads are in its docstring)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import PRED_COLOR, REGIME, new_axes, new_figure, plain_log_ticks, save, titled

__all__ = ["plot_prediction_scatter", "plot_case_curve", "plot_l1_ablation", "plot_criteria",
           "plot_oneshot_study", "plot_measurement_floor"]


def plot_prediction_scatter(cases: Any, ax: Any = None, path: Any = None):
    """Predicted (x) against measured (y) critical sparsity, one marker per case (square:
    ``kind == "quadratic"``, circle: a network), the re-fit threshold as an open red marker where
    known, the diagonal and a ±3-point band. ``cases``: dicts with ``name``, ``kind``,
    ``predicted``, ``measured_oneshot`` and optionally ``measured_refit_loss``. ``path`` is
    written cropped to the drawn content."""
    cases = list(cases)
    if not cases or not all(isinstance(c, dict) for c in cases):
        raise TypeError("cases must be a non-empty sequence of case dicts")
    fig, ax = new_axes(ax, (5.6, 5.2))
    lo = min(min(c["predicted"], c["measured_oneshot"]) for c in cases) - 0.05
    lo = max(0.0, lo)
    xs = np.linspace(lo, 1, 50)
    ax.fill_between(xs, xs - 0.03, xs + 0.03, color="tab:gray", alpha=0.2, label="±3 points")
    ax.plot(xs, xs, "k-", lw=0.8, label="y = x")
    for c in cases:
        mk = "s" if c["kind"] == "quadratic" else "o"
        ax.plot(c["predicted"], c["measured_oneshot"], mk, color="tab:blue", ms=6)
        if c.get("measured_refit_loss") is not None:
            ax.plot(c["predicted"], c["measured_refit_loss"], mk, mfc="none", color="tab:red", ms=6)
        ax.annotate(c["name"], (c["predicted"], c["measured_oneshot"]), fontsize=6,
                    xytext=(3, -8), textcoords="offset points")
    ax.plot([], [], "o", color="tab:blue", label="one-shot (networks: test acc. ≥ dense)")
    ax.plot([], [], "s", color="tab:blue", label="one-shot (quadratics: exact)")
    ax.plot([], [], "o", mfc="none", color="tab:red", label="re-fit on the magnitude support (L ≤ L*+ε)")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_xlabel("predicted critical sparsity (SLQ)")
    ax.set_ylabel("measured critical sparsity")
    titled(ax, "Theory vs experiment (CPU cases)",
           "quadratics: exact; networks: " + REGIME)
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, alpha=0.3)
    save(fig, path, tight=True)
    return fig


def plot_case_curve(case: dict, ax: Any = None, path: Any = None):
    """One case along the one-shot pruning path: test accuracy (left axis; the grid of
    ``case["curve"]`` merged with the threshold search's ``threshold_points``) and training loss
    (right axis, log, with ``L* + ε`` dotted), the prediction (SLQ, and exact eigenvalues where
    known) with its window, the measured one-shot and re-fit thresholds; zoomed to
    ``s ≥ min(lower, measured) − 0.05``. ``case``: a network case dict (``name``, ``dim``,
    ``curve`` with ``sparsity``/``accuracy``/``train_loss``, ``lower``, ``upper``, ``predicted``,
    ``measured_oneshot``, ``dense_metric``, ``train_loss``, ``eps``; optionally
    ``predicted_exact``, ``measured_refit_loss``, ``threshold_points``)."""
    if not isinstance(case, dict):
        raise TypeError(f"case must be a case dict, got {type(case).__name__}")
    fig, ax = new_axes(ax, (6.8, 4.2))
    cv = case["curve"]
    s = np.asarray(cv["sparsity"])
    ax.axvspan(case["lower"], case["upper"], color=PRED_COLOR, alpha=0.12, label="predicted window")
    ax.axvline(case["predicted"], color=PRED_COLOR, lw=1.5, label=f"predicted (SLQ) {case['predicted']:.3f}")
    if case.get("predicted_exact") is not None:
        ax.axvline(case["predicted_exact"], color=PRED_COLOR, lw=1, ls=":",
                   label=f"predicted (exact eig.) {case['predicted_exact']:.3f}")
    ax.axvline(case["measured_oneshot"], color="k", ls="--", lw=1.3,
               label=f"measured one-shot {case['measured_oneshot']:.3f}")
    if case.get("measured_refit_loss") is not None:
        ax.axvline(case["measured_refit_loss"], color="tab:purple", ls="-.", lw=1.2,
                   label=f"measured re-fit (L ≤ L*+ε) {case['measured_refit_loss']:.3f}")
    pts = sorted(list(zip(s.tolist(), cv["accuracy"])) + [tuple(p) for p in case.get("threshold_points", [])])
    ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", ms=3, color="tab:blue",
            label="test accuracy (one-shot)")
    ax.axhline(case["dense_metric"], color="gray", ls=":", lw=0.8)
    ax.set_xlabel("sparsity s")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.semilogy(s, cv["train_loss"], color="tab:orange", lw=1, label="train loss")
    ax2.axhline(case["train_loss"] + case["eps"], color="tab:orange", ls=":", lw=0.8)
    plain_log_ticks(ax2.yaxis)
    ax2.set_ylabel("train loss (log); dotted: L* + ε", color="tab:orange")
    ax.legend(fontsize="small", loc="lower left")
    x0 = max(0.0, min(case["lower"], case["measured_oneshot"]) - 0.05)
    ax.set_xlim(x0, 1.0)
    titled(ax, f"{case['name']}: accuracy vs sparsity, D = {case['dim']} (zoomed to s ≥ {x0:.2f})", REGIME)
    ax.grid(True, alpha=0.3)
    save(fig, path, tight=True)
    return fig


def plot_l1_ablation(rows: Any, ax: Any = None, path: Any = None):
    """Critical sparsity against the l1 strength of training: the prediction (SLQ) with its
    window and the measured one-shot thresholds (accuracy ≥ dense, one-sample tolerance, loss
    criterion), and the re-fit threshold (loss criterion) when every row has it. ``rows``: dicts
    with ``l1``, ``lower``, ``upper``, ``predicted``, ``measured_oneshot``,
    ``measured_oneshot_tol1``, ``measured_loss`` and optionally ``measured_refit_loss``."""
    rows = list(rows)
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise TypeError("rows must be a non-empty sequence of ablation row dicts")
    fig, ax = new_axes(ax, (6.4, 4.2))
    x = np.arange(len(rows))
    ax.fill_between(x, [r["lower"] for r in rows], [r["upper"] for r in rows], color=PRED_COLOR, alpha=0.12,
                    label="predicted window")
    ax.plot(x, [r["predicted"] for r in rows], "o-", color=PRED_COLOR, label="predicted (SLQ)")
    ax.plot(x, [r["measured_oneshot"] for r in rows], "s--", color="k", label="one-shot (acc ≥ dense)")
    ax.plot(x, [r["measured_oneshot_tol1"] for r in rows], "^:", color="gray", label="one-shot (1 sample tol.)")
    ax.plot(x, [r["measured_loss"] for r in rows], "v:", color="tab:orange", label="one-shot (L ≤ L*+ε)")
    if all(r.get("measured_refit_loss") is not None for r in rows):
        ax.plot(x, [r["measured_refit_loss"] for r in rows], "d-.", color="tab:purple",
                label="re-fit 100 steps (L ≤ L*+ε)")
    ax.set_xticks(x, [f"{r['l1']:g}" for r in rows])
    ax.set_xlabel("l1 strength λ₁ (digits MLP 64-64-32-10)")
    ax.set_ylabel("critical sparsity")
    titled(ax, "l1 strength: theory tracks one-shot only in the strong-l1 regime", REGIME)
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, alpha=0.3)
    save(fig, path, tight=True)
    return fig


_CRITERION_STYLE = {"magnitude": ("tab:blue", "o"), "fisher_taylor": ("tab:green", "^"),
                    "obs": ("tab:purple", "s"), "layer_adaptive": ("tab:orange", "D")}


def plot_criteria(cases: Any, path: Any = None):
    """Test accuracy against sparsity, one line per pruning criterion, one panel per case: the
    predicted limit (line) with its window (shaded), each criterion's one-shot threshold (a
    marker on the dense-accuracy line), and in the panel's corner whether the theory applies
    there (``note``). ``cases``: dicts with ``name``, ``predicted``, ``lower``, ``upper``,
    ``dense_metric``, ``note`` and ``criteria``: dicts with ``name``, ``threshold`` and ``curve``
    (``sparsity``, ``accuracy``); zoomed to ``s ≥ min(lower, thresholds) − 0.1``
    (``studies.criteria``)."""
    cases = list(cases)
    if not cases or not all(isinstance(c, dict) for c in cases):
        raise TypeError("cases must be a non-empty sequence of case dicts")
    fig, axes = new_figure((5.2 * len(cases), 4.4), ncols=len(cases))
    for ax, case in zip(np.atleast_1d(axes), cases):
        ax.axvspan(case["lower"], case["upper"], color=PRED_COLOR, alpha=0.12,
                   label="predicted window")
        ax.axvline(case["predicted"], color=PRED_COLOR, lw=1.6,
                   label=f"predicted limit {case['predicted']:.3f}")
        ax.axhline(case["dense_metric"], color="gray", ls=":", lw=0.8)
        for c in case["criteria"]:
            color, marker = _CRITERION_STYLE.get(c["name"], ("black", "x"))
            ax.plot(c["curve"]["sparsity"], c["curve"]["accuracy"], "-", color=color, lw=1.2,
                    label=f"{c['name']} (threshold {c['threshold']:.3f})")
            ax.plot([c["threshold"]], [case["dense_metric"]], marker, color=color, ms=7)
        x0 = max(0.0, min([case["lower"]] + [c["threshold"] for c in case["criteria"]]) - 0.1)
        ax.set_xlim(x0, 1.0)
        ax.set_ylim(-0.02, 1.02)
        ax.text(0.02, 0.03, case["note"], transform=ax.transAxes, fontsize="small", va="bottom",
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.85})
        ax.set_xlabel("sparsity s (one-shot, no re-fit)")
        ax.set_ylabel("test accuracy")
        ax.set_title(case["name"])
        ax.legend(fontsize="x-small", loc="center left")
        ax.grid(True, alpha=0.3)
    save(fig, path, tight=True)
    return fig


def _l1_axis(ax: Any, cases: list[dict]) -> dict:
    """A categorical x axis of the l1 strengths of ``cases`` on ``ax`` (ticks labelled); returns
    ``{l1: position}``."""
    l1s = sorted({c["l1"] for c in cases})
    ax.set_xticks(range(len(l1s)), [f"{v:g}" for v in l1s])
    return {v: i for i, v in enumerate(l1s)}


def plot_oneshot_study(cases: Any, path: Any = None):
    """The one-shot study (``studies.oneshot``): left, paper s* (open) and one-shot estimate
    (filled) against the measured one-shot threshold, the measurement window as a horizontal
    error bar (``applies`` True in green); right, |error| in points against l1. ``cases``: dicts
    with ``paper``, ``estimate``, ``measured``, ``window``, ``applies``, ``l1``, ``heldout``."""
    cases = [c for c in cases if isinstance(c, dict) and c.get("dense_acc", 1) >= 0.5]
    if not cases:
        raise TypeError("cases must be a non-empty sequence of case dicts")
    fig, (ax, bx) = new_figure((12, 5), 1, 2, dpi=100)
    ax.plot([0, 1], [0, 1], "k-", lw=0.8)
    for c in cases:
        m, (lo, hi) = c["measured"], c["window"]
        err = [[max(m - lo, 0)], [max(hi - m, 0)]]
        col = "tab:green" if c["applies"] else "tab:red"
        ax.errorbar([m], [c["paper"]], xerr=err, fmt="o", mfc="none", color=col, ms=5, lw=0.6)
        ax.errorbar([m], [c["estimate"]], xerr=err, fmt="^" if c["heldout"] else "o",
                    color="tab:blue", ms=4, lw=0.6)
    for lab, kw in (("paper s*, applies", dict(marker="o", mfc="none", color="tab:green")),
                    ("paper s*, does not apply", dict(marker="o", mfc="none", color="tab:red")),
                    ("predict_oneshot (▲ held-out)", dict(marker="o", color="tab:blue"))):
        ax.plot([], [], ls="", label=lab, **kw)
    ax.set(xlabel="measured one-shot threshold (bar: measurement window)",
           ylabel="predicted / estimated")
    titled(ax, "Prediction and estimate vs measurement")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    pos = _l1_axis(bx, cases)
    rng = np.random.default_rng(0)
    for key, col, dx in (("paper", PRED_COLOR, -0.12), ("estimate", "tab:blue", 0.12)):
        xs = [pos[c["l1"]] + dx + rng.uniform(-0.05, 0.05) for c in cases]
        bx.plot(xs, [abs(c[key] - c["measured"]) * 100 for c in cases], "o", color=col, ms=4,
                alpha=0.7, label="paper s*" if key == "paper" else "predict_oneshot")
    bx.set_yscale("symlog", linthresh=1)
    bx.set_ylim(bottom=0)
    bx.axhline(3, color="k", ls=":", lw=0.8)
    bx.set(xlabel="l1 strength of training", ylabel="|error| (points)")
    titled(bx, "Error vs l1")
    bx.legend(fontsize="small")
    bx.grid(True, alpha=0.3)
    save(fig, path)
    return fig


def plot_measurement_floor(cases: Any, path: Any = None):
    """How precisely the one-shot study's measurement is defined (``pt.threshold_spread``, THEORY
    §9). Left: each net's bootstrap error floor of its measured one-shot threshold
    (``pt.find_threshold`` on test accuracy, tolerance 0) against the l1 strength it was trained
    with, the targets' 2 and 5 points dotted. Right: the one-shot estimate's error against that
    measurement against the floor; no estimator can sit below the diagonal on average. Green:
    the paper's prediction applies (``applies`` True). ``cases``: dicts with ``l1``, ``applies``,
    ``estimate``, ``spread`` (as the study records it) and ``dense_acc``."""
    cases = [c for c in cases if isinstance(c, dict) and c.get("dense_acc", 1) >= 0.5 and "spread" in c]
    if not cases:
        raise TypeError("cases must be a non-empty sequence of case dicts with a 'spread'")
    floor = np.array([100 * c["spread"]["test"]["error_floor"]["find_threshold"] for c in cases])
    err = np.array([100 * abs(c["estimate"] - c["spread"]["test"]["measured"]) for c in cases])
    col = ["tab:green" if c["applies"] else "tab:red" for c in cases]
    fig, (ax, bx) = new_figure((12, 5), 1, 2, dpi=100)
    pos = _l1_axis(ax, cases)
    rng = np.random.default_rng(0)
    ax.scatter([pos[c["l1"]] + rng.uniform(-0.15, 0.15) for c in cases], floor, c=col, s=18, alpha=0.8)
    for y, lab in ((2, "median target"), (5, "max target")):
        ax.axhline(y, color="k", ls=":", lw=0.8)
        ax.text(len(pos) - 0.5, y, lab, va="bottom", ha="right", fontsize="small")
    ax.set(xlabel="l1 strength of training", ylabel="error floor of the measurement (points)")
    titled(ax, "Zero-tolerance one-shot threshold: how far it moves with the test set")
    ax.grid(True, alpha=0.3)
    top = max(float(err.max()), float(floor.max()), 1.0) * 1.1
    bx.plot([0, top], [0, top], "k-", lw=0.8, label="error = floor (no estimator below, on average)")
    bx.scatter(floor, err, c=col, s=18, alpha=0.8)
    bx.plot([], [], "o", color="tab:green", label="paper's prediction applies")
    bx.plot([], [], "o", color="tab:red", label="does not apply")
    bx.set_xscale("symlog", linthresh=1)
    bx.set_yscale("symlog", linthresh=1)
    bx.set(xlabel="error floor (points)", ylabel="|predict_oneshot − measured| (points)")
    titled(bx, "Estimate's error against the floor")
    bx.legend(fontsize="small")
    bx.grid(True, alpha=0.3)
    save(fig, path)
    return fig
