"""How precisely an evaluation set can measure the one-shot threshold (THEORY §9).

The measured one-shot threshold is the largest sparsity ``s`` whose pruned model ``w^(s)`` still
*holds* on an evaluation set: ``acc(w^(s)) >= acc(w*) − tolerance`` (``strict``: ``>``). On a
grid ``s_k = k·step`` two rules read the same accuracy curve:

- ``first_failure``: the last grid point before the first one that fails (a conservative scan);
- ``last_holding``: the largest grid point that holds (the reference code's rule over its grid);

and :func:`~phasetrans.find_threshold` reads a third, ``find_threshold``: its bisection and local
scans on the ``resolution`` grid, which land somewhere between the two. Every value between the
first two (the *measurement window*) is an outcome of the protocol. And the curve itself is a
sample: another evaluation set of the same size gives another threshold. The bootstrap (Efron,
1979) resamples the ``n`` evaluation samples with replacement — the dense and pruned models are
scored on the *same* resample, as the protocol pairs them — and recomputes every rule (the
search's visits scored once per sparsity and reused); their spread is the measurement's own
uncertainty.

**A floor for every estimator.** Let ``M, M'`` be the thresholds measured on two independent
evaluation sets and ``ŝ`` any estimate that does not see them. By the triangle inequality
``|M − M'| ≤ |ŝ − M| + |ŝ − M'|``, so ``E|ŝ − M| ≥ ½ E|M − M'|``: no estimator (a theory, a
training-set measurement, another evaluation set) has a smaller expected error against this
measurement than half its Gini mean difference, here from the bootstrap draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from .._batches import FixedOrder, as_batches
from .._checks import (
    check_bool,
    check_choice,
    check_float,
    check_fraction,
    check_int,
    check_model,
    preserve_model,
)
from .._progress import progress_bar, resolve_progress
from ..evaluate import evaluate_correct
from ..params import ParamSelection
from .criteria import CriterionLike, resolve_criterion
from .masks import pruned
from .threshold import MAX_EVALUATIONS, SCAN_WINDOW, _bisect_then_scan

__all__ = ["ThresholdSpread", "threshold_spread", "threshold_rules", "gini_mean_difference"]

#: the threshold rules of a measurement (module docstring)
RULES = ("find_threshold", "first_failure", "last_holding")


def threshold_rules(sparsity: np.ndarray, holds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first_failure, last_holding)`` of each row of ``holds`` (``(..., G)`` bools over the
    grid ``sparsity``; the dense point ``sparsity[0] = 0`` counts as holding): the last grid
    point before the first failing one (``sparsity[-1]`` when none fails), and the largest
    holding grid point."""
    holds = np.array(holds, dtype=bool, copy=True)
    holds[..., 0] = True
    fails = ~holds
    any_fail = fails.any(axis=-1)
    first_bad = np.where(any_fail, fails.argmax(axis=-1), holds.shape[-1])
    first_failure = sparsity[first_bad - 1]
    last_holding = sparsity[holds.shape[-1] - 1 - holds[..., ::-1].argmax(axis=-1)]
    return first_failure, last_holding


def gini_mean_difference(x: np.ndarray) -> float:
    """``mean_{i≠j} |x_i − x_j|`` in ``O(B log B)``: with ``x`` sorted,
    ``Σ_{i<j} (x_j − x_i) = Σ_j (2j − B + 1) x_j`` (0-based)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    b = x.size
    if b < 2:
        return 0.0
    return float(2.0 * np.dot(2.0 * np.arange(b) - b + 1.0, x) / (b * (b - 1)))


@dataclass(frozen=True, eq=False)
class ThresholdSpread:
    """Result of :func:`threshold_spread`: the one-shot threshold measured on an evaluation set
    and how far it moves when that set is resampled.

    ``measured``: :func:`~phasetrans.find_threshold`'s answer on the set itself; ``window``:
    ``(first_failure, last_holding)`` on it; ``sparsity`` / ``accuracy``: the grid and the set's
    accuracy curve; ``baseline``: the dense accuracy. Per rule of :data:`RULES`: ``draws`` (one
    value per bootstrap resample), ``intervals`` (central ``level`` percentile interval) and
    ``error_floor`` (``½ E|M − M'|`` over pairs of draws: no estimate that does not see the
    evaluation set has a smaller expected absolute error against that measurement, module
    docstring). Sparsities are fractions (×100 for points).
    """

    sparsity: np.ndarray
    accuracy: np.ndarray
    baseline: float
    tolerance: float
    strict: bool
    resolution: float
    n_samples: int
    measured: float
    window: tuple[float, float]
    draws: dict
    intervals: dict
    error_floor: dict
    level: float
    seed: int

    def to_dict(self, draws: bool = False) -> dict:
        """JSON-ready fields (lists, floats); the bootstrap draws only with ``draws=True``."""
        d = {"sparsity": self.sparsity.tolist(), "accuracy": self.accuracy.tolist(),
             "baseline": self.baseline, "tolerance": self.tolerance, "strict": self.strict,
             "resolution": self.resolution, "n_samples": self.n_samples, "measured": self.measured,
             "window": list(self.window), "level": self.level, "seed": self.seed,
             "resamples": int(next(iter(self.draws.values())).size),
             "intervals": {k: list(v) for k, v in self.intervals.items()},
             "error_floor": dict(self.error_floor)}
        if draws:
            d["draws"] = {k: v.tolist() for k, v in self.draws.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ThresholdSpread:
        """The result of :meth:`to_dict` with ``draws=True`` (``to_dict(draws=True)`` of it equals ``d``)."""
        if not isinstance(d, dict):
            raise TypeError(f"d must be a dict (ThresholdSpread.to_dict(draws=True)), got {type(d).__name__}")
        missing = sorted({"sparsity", "accuracy", "baseline", "tolerance", "strict", "resolution", "n_samples",
                          "measured", "window", "draws", "intervals", "error_floor", "level", "seed"} - d.keys())
        if missing:
            raise ValueError(f"d is missing keys {missing} (not a ThresholdSpread.to_dict(draws=True))")

        def frozen(values: Any) -> np.ndarray:
            a = np.array(values, dtype=np.float64)
            a.setflags(write=False)
            return a

        return cls(sparsity=frozen(d["sparsity"]), accuracy=frozen(d["accuracy"]), baseline=float(d["baseline"]),
                   tolerance=float(d["tolerance"]), strict=bool(d["strict"]), resolution=float(d["resolution"]),
                   n_samples=int(d["n_samples"]), measured=float(d["measured"]),
                   window=tuple(float(v) for v in d["window"]),
                   draws={k: frozen(v) for k, v in d["draws"].items()},
                   intervals={k: tuple(float(x) for x in v) for k, v in d["intervals"].items()},
                   error_floor={k: float(v) for k, v in d["error_floor"].items()}, level=float(d["level"]),
                   seed=int(d["seed"]))

    def best_coverage(self, half_width: float, rule: str = "find_threshold") -> float:
        """``max_s P(|s − M| ≤ half_width)`` over the bootstrap draws ``M`` of ``rule``: how often
        the best fixed estimate (one that knew this distribution) lands within ``half_width`` of
        the measurement on another evaluation set of this size (0.05: five points)."""
        half_width = check_float(half_width, "half_width", minimum=0.0)
        rule = check_choice(rule, "rule", RULES)
        m = np.sort(self.draws[rule])
        inside = np.searchsorted(m, m + 2 * half_width + 1e-12, side="right") - np.arange(m.size)
        return float(inside.max() / m.size)

    def summary(self) -> str:
        """One line: the measured value, its bootstrap interval and error floor (points)."""
        lo, hi = self.intervals["find_threshold"]
        return (f"over test sets of this size ({self.n_samples} samples, "
                f"{next(iter(self.draws.values())).size} bootstrap resamples) the measured threshold lands in "
                f"[{lo:.3f}, {hi:.3f}] ({100 * self.level:.0f}%); error floor "
                f"{100 * self.error_floor['find_threshold']:.2f} points: no prediction can be expected closer "
                f"(window [{self.window[0]:.3f}, {self.window[1]:.3f}])")


class _Scores:
    """Per-sample correctness of the pruned model at each sparsity, computed once (a pruned
    forward pass over the evaluation set) and reused by every resample."""

    def __init__(self, model: nn.Module, batches: list, prune_kwargs: dict, bar: Any):
        self.model, self.batches, self.prune_kwargs, self.bar = model, batches, prune_kwargs, bar
        self.cache: dict[float, np.ndarray] = {}

    def __call__(self, sparsity: float) -> np.ndarray:
        if sparsity not in self.cache:
            with pruned(self.model, sparsity, **self.prune_kwargs):
                self.cache[sparsity] = evaluate_correct(self.model, self.batches)
            self.bar.update(1)
        return self.cache[sparsity]


class _WeightedSearch:
    """:func:`~phasetrans.find_threshold`'s grid (``M``, ``metrics``, ``evaluations``,
    ``holds``) with the accuracy of one resample: sample weights ``counts / n``."""

    def __init__(self, scores: _Scores, counts: np.ndarray, M: int, tolerance: float, strict: bool):
        self.scores, self.counts, self.M, self.tolerance, self.strict = scores, counts, M, tolerance, strict
        self.n = counts.sum()
        self.baseline = self.accuracy(0)
        self.metrics = {0: self.baseline}
        self.evaluations = 1  # find_threshold counts the dense evaluation

    def accuracy(self, j: int) -> float:
        return float(self.counts @ self.scores(j / self.M)) / self.n

    def holds(self, j: int) -> bool:
        if j not in self.metrics:
            self.metrics[j] = self.accuracy(j)
            self.evaluations += 1
        bar = self.baseline - self.tolerance
        return self.metrics[j] > bar if self.strict else self.metrics[j] >= bar


def _search(scores: _Scores, counts: np.ndarray, M: int, tolerance: float, strict: bool) -> float:
    """:func:`~phasetrans.find_threshold`'s answer (default ``window`` and ``max_evaluations``)
    for the accuracy weighted by ``counts``."""
    best = _bisect_then_scan(_WeightedSearch(scores, counts, M, tolerance, strict), SCAN_WINDOW,
                             MAX_EVALUATIONS)
    return 0.0 if best is None else best / M


def _grid_rules(sparsity: np.ndarray, correct: np.ndarray, counts: np.ndarray, tolerance: float,
                strict: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both grid rules for each row of resample ``counts`` (``(b, n)``) on ``correct``
    (``(G, n)`` bools), the dense point of the same resample as the baseline."""
    acc = counts @ correct.T.astype(np.float64) / counts.sum(axis=1, keepdims=True)  # (b, G)
    bar = acc[:, :1] - tolerance
    holds = acc > bar if strict else acc >= bar - 1e-12
    return threshold_rules(sparsity, holds)


def _resample_counts(n: int, resamples: int, seed: int):
    """Bootstrap resamples as multinomial counts ``(b, n)``, in chunks of ~16 M counts."""
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 24) // n)
    for start in range(0, resamples, chunk):
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, resamples - start))


def _in_memory(data: Any, batch_fn: Callable | None) -> list:
    """``data``'s ``(inputs, targets)`` batches read once, in one fixed order, and kept: the
    evaluation set is scored hundreds of times (a DataLoader's per-sample collation would
    otherwise dominate)."""
    batches = as_batches(data, "data", batch_fn)
    with FixedOrder(batches)():
        kept = [tuple(batch) for batch in batches]
    if not kept:
        raise ValueError("data: no batches to evaluate")
    return kept


def _check(tolerance, strict, step, resolution, resamples, level, seed, min_per_layer):
    tolerance = check_float(tolerance, "tolerance", minimum=0.0, maximum=1.0)
    strict = check_bool(strict, "strict")
    step = check_float(step, "step", minimum=0.0, strict_minimum=True)
    if not step <= 0.5:
        raise ValueError(f"step must be in (0, 0.5], got {step}")
    resolution = check_float(resolution, "resolution", minimum=1e-6, maximum=0.5)
    resamples = check_int(resamples, "resamples", minimum=2)
    level = check_float(level, "level", minimum=0.0, strict_minimum=True)
    if not level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    seed = check_int(seed, "seed", minimum=0)
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    return tolerance, strict, step, resolution, resamples, level, seed, min_per_layer


def threshold_spread(model: nn.Module, data: Any, tolerance: float = 0.0, strict: bool = False,
                     step: float = 0.005, resolution: float = 1e-3, resamples: int = 1000,
                     level: float = 0.9, seed: int = 0, params: ParamSelection = None,
                     min_per_layer: float = 0.0, batch_fn=None, criterion: CriterionLike = "magnitude",
                     criterion_data: Any = None, loss_fn: Callable | None = None,
                     criterion_options: dict | None = None, progress: bool | None = None) -> ThresholdSpread:
    """The one-shot pruning threshold of ``model`` on the evaluation ``data``, with its bootstrap
    spread and the error floor it sets for any estimator (module docstring, THEORY §9).

    Scores every sample of ``data`` at each grid sparsity ``k·step`` (``⌈1/step⌉ + 1`` forward
    passes) and at the sparsities :func:`~phasetrans.find_threshold` visits on the ``resolution``
    grid for the set and for each of ``resamples`` bootstrap resamples (each visited once: a few
    dozen to a few hundred passes), then reads every rule of :data:`RULES` on every resample.
    ``tolerance`` is in accuracy units (0.01 = one point) and ``strict`` compares with ``>``, as
    in :func:`~phasetrans.find_threshold`. ``params`` / ``min_per_layer`` select and protect
    weights as in :func:`~phasetrans.pruned`. ``criterion`` (with ``criterion_data``,
    ``loss_fn``, ``criterion_options``: the data and loss a criterion reads, e.g. the training set
    for ``"fisher_taylor"``): what to prune, prepared once, as in
    :func:`~phasetrans.find_threshold`. ``batch_fn`` as in :func:`~phasetrans.evaluate_accuracy`.
    ``data`` is read once, in one fixed order, and its batches kept in memory. Needs every
    evaluation sample on one process. The model comes back bit-for-bit.

    Example: ``sp = pt.threshold_spread(model, test)``; ``sp.measured``, ``sp.window``,
    ``sp.intervals["find_threshold"]``, ``sp.error_floor["find_threshold"]`` (fractions: ×100 for
    points).
    """
    check_model(model)
    tolerance, strict, step, resolution, resamples, level, seed, min_per_layer = _check(
        tolerance, strict, step, resolution, resamples, level, seed, min_per_layer)
    crit = resolve_criterion(criterion, model, criterion_data, loss_fn, params, criterion_options)
    prune_kwargs = {"min_per_layer": min_per_layer, "params": params,
                    "criterion": "magnitude" if crit is None else crit}
    sparsity = np.round(np.minimum(np.arange(int(np.ceil(1.0 / step - 1e-9)) + 1) * step, 1.0), 12)
    M = int(np.ceil(1.0 / resolution - 1e-9))
    bar = progress_bar(resolve_progress(progress), None, "threshold spread", "pass")
    with preserve_model(model), bar:
        scores = _Scores(model, _in_memory(data, batch_fn), prune_kwargs, bar)
        correct = np.stack([scores(float(s)) for s in sparsity])
        n = correct.shape[1]
        accuracy = correct.mean(axis=1)
        holds = accuracy > accuracy[0] - tolerance if strict else accuracy >= accuracy[0] - tolerance - 1e-12
        window = tuple(float(v) for v in threshold_rules(sparsity, holds))
        measured = _search(scores, np.ones(n, dtype=np.int64), M, tolerance, strict)
        parts: dict[str, list] = {r: [] for r in RULES}
        for counts in _resample_counts(n, resamples, seed):
            first, last = _grid_rules(sparsity, correct, counts, tolerance, strict)
            parts["first_failure"].append(first)
            parts["last_holding"].append(last)
            parts["find_threshold"].append(np.array([_search(scores, c, M, tolerance, strict) for c in counts]))
    draws = {r: np.concatenate(parts[r]) for r in RULES}
    q = (100 * (1 - level) / 2, 100 * (1 + level) / 2)
    for a in (sparsity, accuracy, *draws.values()):
        a.setflags(write=False)
    return ThresholdSpread(
        sparsity=sparsity, accuracy=accuracy, baseline=float(accuracy[0]), tolerance=tolerance,
        strict=strict, resolution=1.0 / M, n_samples=n, measured=measured, window=window, draws=draws,
        intervals={r: tuple(float(v) for v in np.percentile(d, q)) for r, d in draws.items()},
        error_floor={r: 0.5 * gini_mean_difference(d) for r, d in draws.items()}, level=level, seed=seed,
    )
