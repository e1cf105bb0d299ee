"""How precisely an evaluation set can measure the one-shot threshold (THEORY §9).

The measured one-shot threshold is the largest sparsity ``s`` whose pruned model ``w^(s)`` still
*holds* on an evaluation set: ``acc(w^(s)) >= acc(w*) − tolerance`` (``strict``: ``>``). On a
grid ``s_k = k·step`` two rules read the same accuracy curve:

- ``first_failure``: the last grid point before the first one that fails (a conservative scan);
- ``last_holding``: the largest grid point that holds (where a bisection may land when the curve
  is not monotone).

Every value between them (the *measurement window*) is an outcome of the protocol. And the curve
itself is a sample: another evaluation set of the same size gives another threshold. The
bootstrap (Efron, 1979) resamples the ``n`` evaluation samples with replacement — the dense and
pruned models are scored on the *same* resample, as the protocol pairs them — and recomputes
both rules; their spread is the measurement's own uncertainty.

**A floor for every estimator.** Let ``M, M'`` be the thresholds measured on two independent
evaluation sets and ``ŝ`` any estimate that does not see them. By the triangle inequality
``|M − M'| ≤ |ŝ − M| + |ŝ − M'|``, so ``E|ŝ − M| ≥ ½ E|M − M'|``: no estimator (a theory, a
training-set measurement, another evaluation set) has a smaller expected error against this
measurement than half its Gini mean difference, here from the bootstrap draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from .._checks import check_bool, check_float, check_fraction, check_int, check_model, preserve_model
from .._progress import progress_bar, resolve_progress
from ..evaluate import evaluate_correct
from ..params import ParamSelection
from .masks import pruned

__all__ = ["ThresholdSpread", "threshold_spread", "threshold_rules", "gini_mean_difference"]

RULES = ("first_failure", "last_holding")


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

    ``sparsity`` / ``accuracy``: the grid and the evaluation set's accuracy curve;
    ``baseline``: the dense accuracy; ``window``: ``(first_failure, last_holding)`` on the set
    itself; ``*_draws``: the two rules on each bootstrap resample; ``*_interval``: their central
    ``level`` percentile intervals; ``error_floor``: per rule, ``½ E|M − M'|`` over pairs of draws
    — no estimate that does not see the evaluation set has a smaller expected absolute error
    against the measurement (module docstring). Sparsities are fractions (×100 for points).
    """

    sparsity: np.ndarray
    accuracy: np.ndarray
    baseline: float
    tolerance: float
    strict: bool
    n_samples: int
    window: tuple[float, float]
    first_failure_draws: np.ndarray
    last_holding_draws: np.ndarray
    level: float
    first_failure_interval: tuple[float, float]
    last_holding_interval: tuple[float, float]
    error_floor: dict
    seed: int

    def to_dict(self, draws: bool = False) -> dict:
        """JSON-ready fields (lists, floats); the bootstrap draws only with ``draws=True``."""
        d = {"sparsity": self.sparsity.tolist(), "accuracy": self.accuracy.tolist(),
             "baseline": self.baseline, "tolerance": self.tolerance, "strict": self.strict,
             "n_samples": self.n_samples, "window": list(self.window), "level": self.level,
             "resamples": int(self.first_failure_draws.size), "seed": self.seed,
             "first_failure_interval": list(self.first_failure_interval),
             "last_holding_interval": list(self.last_holding_interval),
             "error_floor": dict(self.error_floor)}
        if draws:
            d["first_failure_draws"] = self.first_failure_draws.tolist()
            d["last_holding_draws"] = self.last_holding_draws.tolist()
        return d


def _bootstrap_rules(sparsity: np.ndarray, correct: np.ndarray, tolerance: float, strict: bool,
                     resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Both rules on ``resamples`` bootstrap resamples of the columns of ``correct`` (``(G, n)``
    bools): resample counts ``c ~ Multinomial(n, 1/n)``, accuracies ``c @ correctᵀ / n``, the
    dense point of the same resample as the baseline. Chunked to ~16 M counts at a time."""
    g, n = correct.shape
    rng = np.random.default_rng(seed)
    scores = correct.T.astype(np.float64)  # (n, G)
    first, last = np.empty(resamples), np.empty(resamples)
    chunk = max(1, (1 << 24) // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start)
        acc = counts @ scores / n  # (b, G)
        bar = acc[:, :1] - tolerance
        holds = acc > bar if strict else acc >= bar - 1e-12
        first[start:stop], last[start:stop] = threshold_rules(sparsity, holds)
    return first, last


def _check(tolerance, strict, step, resamples, level, seed, min_per_layer):
    tolerance = check_float(tolerance, "tolerance", minimum=0.0, maximum=1.0)
    strict = check_bool(strict, "strict")
    step = check_float(step, "step", minimum=0.0, strict_minimum=True)
    if not step <= 0.5:
        raise ValueError(f"step must be in (0, 0.5], got {step}")
    resamples = check_int(resamples, "resamples", minimum=2)
    level = check_float(level, "level", minimum=0.0, strict_minimum=True)
    if not level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    seed = check_int(seed, "seed", minimum=0)
    min_per_layer = check_fraction(min_per_layer, "min_per_layer")
    return tolerance, strict, step, resamples, level, seed, min_per_layer


def threshold_spread(model: nn.Module, data: Any, tolerance: float = 0.0, strict: bool = False,
                     step: float = 0.005, resamples: int = 1000, level: float = 0.9, seed: int = 0,
                     params: ParamSelection = None, min_per_layer: float = 0.0, batch_fn=None,
                     progress: bool | None = None) -> ThresholdSpread:
    """The one-shot magnitude-pruning threshold of ``model`` on the evaluation ``data``, with
    its bootstrap spread and the error floor it sets for any estimator (module docstring,
    THEORY §9).

    Scores every sample of ``data`` at each grid sparsity ``k·step`` (``⌈1/step⌉ + 1`` forward
    passes over ``data``, ``1/step`` of them pruned), then recomputes both threshold rules on
    ``resamples`` bootstrap resamples of the samples (no further passes). ``tolerance`` is in
    accuracy units (0.01 = one point), as in :func:`find_threshold`; ``strict`` compares with
    ``>``. ``params`` / ``min_per_layer`` select and protect weights as in
    :func:`~phasetrans.pruned`. ``batch_fn`` as in :func:`~phasetrans.evaluate_accuracy`.
    Needs every evaluation sample on one process. The model comes back bit-for-bit.

    Example: ``sp = pt.threshold_spread(model, test)``; ``sp.window``, ``sp.last_holding_interval``,
    ``sp.error_floor["last_holding"]`` (a fraction: ×100 for points).
    """
    check_model(model)
    tolerance, strict, step, resamples, level, seed, min_per_layer = _check(
        tolerance, strict, step, resamples, level, seed, min_per_layer)
    count = int(np.ceil(1.0 / step - 1e-9))
    sparsity = np.round(np.minimum(np.arange(count + 1) * step, 1.0), 12)
    bar = progress_bar(resolve_progress(progress), len(sparsity), "threshold spread", "pass")
    rows = []
    with preserve_model(model), bar:
        for s in sparsity:
            with pruned(model, float(s), min_per_layer=min_per_layer, params=params):
                rows.append(evaluate_correct(model, data, batch_fn=batch_fn))
            bar.update(1)
    correct = np.stack(rows)
    n = correct.shape[1]
    accuracy = correct.mean(axis=1)
    baseline = float(accuracy[0])
    holds = accuracy > baseline - tolerance if strict else accuracy >= baseline - tolerance - 1e-12
    window = tuple(float(v) for v in threshold_rules(sparsity, holds))
    first, last = _bootstrap_rules(sparsity, correct, tolerance, strict, resamples, seed)
    q = (100 * (1 - level) / 2, 100 * (1 + level) / 2)
    for a in (sparsity, accuracy, first, last):
        a.setflags(write=False)
    return ThresholdSpread(
        sparsity=sparsity, accuracy=accuracy, baseline=baseline, tolerance=tolerance, strict=strict,
        n_samples=n, window=window, first_failure_draws=first, last_holding_draws=last, level=level,
        first_failure_interval=tuple(float(v) for v in np.percentile(first, q)),
        last_holding_interval=tuple(float(v) for v in np.percentile(last, q)),
        error_floor={"first_failure": 0.5 * gini_mean_difference(first),
                     "last_holding": 0.5 * gini_mean_difference(last)},
        seed=seed,
    )
