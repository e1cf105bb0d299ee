"""An adaptive SLQ budget for the critical sparsity: probes and Lanczos steps are added only until
the predicted ``s*`` is settled to a tolerance.

The error of ``s*`` from SLQ has two parts (Ubaru, Chen & Saad 2017): the probe average (a Monte
Carlo error over ``K`` probes, estimated by the bootstrap over probes, as
:func:`.critical.bootstrap_uncertainty`) and the depth ``m`` of each Gauss rule (a quadrature
error that decays with ``m``, estimated by how far ``s*`` moves over earlier depths, which costs
nothing: the rule of every depth run so far is read off the same recurrence). The rule::

    settled  ⇔  σ_boot(K, m) + max_{m' ∈ C, m/1.5 ≤ m' < m} |s*(K, m) − s*(K, m')| ≤ max(tolerance, 1/D)

checked at the depths ``C = {10, 20, 30, …, 180}`` (``check_every`` steps): the depth part is the
largest move of ``s*`` over the last third of the recurrence, not the move between two
depths, because ``s*(m)`` is not monotone in ``m`` (with ``negative="abs"`` the Ritz values
that cross zero change ``Φ`` by jumps) and a single earlier depth can agree by chance. ``K``
doubles from ``min_probes`` (2, 4, 8, 10): the probe part is small on trained networks (one
probe's ``s*`` scatters by 0.014–0.04 point at D ≈ 10⁴, docs/BENCHMARKS.md §0.1), so the budget
goes into depth. While not settled it deepens when the depth change is the larger
part (or the probes are at their cap), and adds probes otherwise, but only while that can still
settle it (no probes are added against a depth change above the tolerance); it stops unsettled
at ``max_steps``, ``max_probes`` or ``max_products`` column products (default 800: never more
than the fixed 80 × 10). With a fixed ``num_steps`` (or ``num_probes``) only the other one grows.
``s*`` moves in steps of ``1/D`` (one weight), so no tolerance below ``1/D`` is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import check_float, check_int
from .._io import check_path
from ..distributed import run_on_main_process
from ..linalg._checkpoint import grown_meta, load_grown_checkpoint, save_grown_checkpoint
from ..linalg.density import SpectralDensity
from ..linalg.growing_slq import GrowingSLQ
from .critical import exact_root
from .magnitude import MagnitudeCurve
from .spectrum import parse_spectrum
from .width import Negative, Phi

__all__ = ["BudgetRecord", "adaptive_spectrum", "depth_checks", "depth_window"]

#: the depth part compares ``s*(m)`` with every checked depth in ``[m / DEPTH_WINDOW, m)``
DEPTH_WINDOW = 1.5

#: resamples of the probes in the stop rule (the reported uncertainty uses ``bootstrap``)
RULE_RESAMPLES = 50


def depth_checks(first: int, last: int, every: int) -> list[int]:
    """Depths ``first, first + every, ...`` up to and including ``last``."""
    out = list(range(min(first, last), last, every))
    return out + [last] if not out or out[-1] != last else out


def depth_window(checks: list[int], level: int) -> list[int]:
    """The earlier checked depths the depth part compares with: ``m / DEPTH_WINDOW ≤ m' < m``."""
    m = checks[level]
    return [d for d in checks[:level] if d * DEPTH_WINDOW >= m]


@dataclass(frozen=True)
class BudgetRecord:
    """What the adaptive budget did: ``num_probes`` × ``num_steps`` reached, ``products`` (column
    products), ``sparsity`` ``s*`` at the end, ``bootstrap_std`` and ``depth_change`` (the two
    parts of the rule), ``settled`` (rule met within the caps), ``history`` (one row per check:
    probes, steps, products, s*, σ_boot, depth change)."""

    num_probes: int
    num_steps: int
    products: int
    sparsity: float
    bootstrap_std: float
    depth_change: float
    tolerance: float
    settled: bool
    history: list = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"num_probes": self.num_probes, "num_steps": self.num_steps,
                "products": self.products, "sparsity": self.sparsity,
                "bootstrap_std": self.bootstrap_std, "depth_change": self.depth_change,
                "tolerance": self.tolerance, "settled": self.settled, "history": self.history}


def _root(mag: MagnitudeCurve, density: SpectralDensity, eps: float, p0: float,
          negative: Negative, probes: np.ndarray | None = None) -> float:
    spec = parse_spectrum(density, mag.dim)
    nodes, masses = spec.pooled(probes)
    return exact_root(mag, Phi(nodes, masses, eps, p0, negative))[0]


def _bootstrap_std(mag: MagnitudeCurve, density: SpectralDensity, eps: float, p0: float,
                   negative: Negative, seed: int) -> float:
    K = density.num_probes
    rng = np.random.default_rng(seed)
    values = [_root(mag, density, eps, p0, negative, rng.integers(0, K, size=K))
              for _ in range(RULE_RESAMPLES)]
    return float(np.std(values, ddof=1))


def adaptive_spectrum(
    H: Any, mag: MagnitudeCurve, eps: float, *, negative: Negative = "abs", zero_mass: float = 0.0,
    tolerance: float = 1e-3, num_steps: int | None = None, num_probes: int | None = None,
    max_steps: int = 180, max_probes: int = 10, min_probes: int = 2, first_depth: int = 10,
    check_every: int = 10, max_products: int = 800, seed: int = 0, checkpoint: Any = None,
) -> tuple[SpectralDensity, BudgetRecord]:
    """The SLQ spectrum of ``H`` grown until ``s*`` (root of ``s = Φ(R(s))`` with the magnitude
    curve ``mag``) is settled to ``tolerance`` (module docstring: bootstrap std over probes plus
    the largest move over the checked depths of the last third). ``num_steps`` / ``num_probes`` fix that dimension (only
    the other grows); ``max_*`` cap the growth (``max_products``: probes × depth). Returns the spectrum and a :class:`BudgetRecord`.

    ``checkpoint``: a file path; the grown Lanczos state is written (atomically) after every
    growth step (probes added or depth advanced), and an interrupted call with the same
    arguments, weights and data resumes from it: the decisions are replayed on the saved
    coefficients, bit for bit, and only the rest is run (at most one growth step is lost)."""
    tolerance = check_float(tolerance, "tolerance", minimum=0.0, strict_minimum=True)
    max_steps = check_int(num_steps if num_steps is not None else max_steps, "max_steps", minimum=1)
    max_products = check_int(max_products, "max_products", minimum=1)
    max_probes = check_int(num_probes if num_probes is not None else max_probes, "max_probes",
                           minimum=1)
    probes = num_probes if num_probes is not None else min(check_int(min_probes, "min_probes",
                                                                     minimum=2), max_probes)
    run = GrowingSLQ(H, max_steps=max_steps, seed=seed)
    goal = max(tolerance, 1.0 / mag.dim)  # s* moves in steps of one weight
    last = run.max_steps
    every = check_int(check_every, "check_every", minimum=1)
    depths = [last] if num_steps is not None else depth_checks(first_depth, last, every)
    grow = _Growth(run, checkpoint, {
        "tolerance": float(tolerance), "max_steps": max_steps, "max_probes": max_probes,
        "min_probes": probes, "first_depth": depths[0], "check_every": every,
        "max_products": max_products, "seed": seed, "eps": float(eps), "zero_mass": float(zero_mass),
        "negative": str(negative), "fixed_steps": num_steps is not None,
        "fixed_probes": num_probes is not None, "reorth": run.reorth})
    grow.add_probes(probes)
    grow.advance(depths[0])
    level, history = 0, []
    while True:
        density = run.density()
        s = _root(mag, density, eps, zero_mass, negative)
        window = depth_window(depths, level)
        change = max((abs(s - _root(mag, run.density(m), eps, zero_mass, negative)) for m in window),
                     default=np.inf)
        if num_steps is not None or (run.depth >= last and level == 0) or _all_broken(run):
            change = 0.0  # a fixed depth, all of dim at once, or exact rules: no depth error
        can_deepen = (level + 1 < len(depths) and not _all_broken(run)
                      and run.num_probes * depths[level + 1] <= max_products)
        wider = min(2 * run.num_probes, max_probes)
        can_widen = run.num_probes < max_probes and wider * run.depth <= max_products
        if change > goal and can_deepen:  # not settled whatever the probes say: deepen
            history.append({"probes": run.num_probes, "steps": run.depth,
                            "products": run.products, "sparsity": s, "bootstrap_std": None,
                            "depth_change": float(change)})
            level += 1
            grow.advance(depths[level])
            continue
        std = _bootstrap_std(mag, density, eps, zero_mass, negative, seed) \
            if run.num_probes >= 2 else (0.0 if num_probes is not None else np.inf)
        history.append({"probes": run.num_probes, "steps": run.depth, "products": run.products,
                        "sparsity": s, "bootstrap_std": std, "depth_change": float(change)})
        settled = std + change <= goal
        can_widen = can_widen and change < goal  # more probes cannot undo a depth change
        if settled or not (can_deepen or can_widen):
            break
        if can_deepen and (change >= std or not can_widen):
            level += 1
            grow.advance(depths[level])
        else:
            grow.add_probes(wider - run.num_probes)
    record = BudgetRecord(run.num_probes, run.depth, run.products, float(s), float(std),
                          float(change), tolerance, bool(settled), history)
    return density, record


class _Growth:
    """The growth steps of ``run``, each followed by a checkpoint write when ``path`` is given
    (resumed from it first: :meth:`GrowingSLQ.load`)."""

    def __init__(self, run: GrowingSLQ, path: Any, settings: dict[str, Any]):
        self.run, self.path = run, path
        if path is None:
            return
        self.path = check_path(path, "checkpoint")
        self.meta = grown_meta(run.op, settings)
        state = run_on_main_process(lambda: load_grown_checkpoint(self.path, self.meta))
        if state is not None:
            run.load(state)

    def _save(self) -> None:
        if self.path is not None:
            save_grown_checkpoint(self.path, self.meta, self.run.state())

    def add_probes(self, count: int) -> None:
        self.run.add_probes(count)
        self._save()

    def advance(self, steps: int) -> None:
        self.run.advance(steps)
        self._save()


def _all_broken(run: GrowingSLQ) -> bool:
    """Every probe broke down before the current depth (its Krylov space is invariant, its rule
    exact): deeper steps add nothing."""
    return all(bool((g.lengths < run.depth).all()) for g in run.groups)
