"""Stochastic Lanczos quadrature that grows on demand: more probes, more steps, one quadrature
for any depth reached so far (the driver of an adaptive budget).

The first ``m`` coefficients ``α_0..α_{m-1}``, ``β_0..β_{m-2}`` of a longer Lanczos run are those
of an ``m``-step run, so the Gauss rule of every depth ``m`` already run is read off for free
(Golub & Meurant 2010); probe ``i`` is column ``i`` of the seeded Rademacher draw whatever the
count (:func:`.probes.rademacher`), so ``K`` probes grown here are those of
``slq(num_probes=K, seed)`` and their quadrature at depth ``m`` is ``slq(num_steps=m)``'s.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._checks import check_choice, check_int, check_seed
from .density import SpectralDensity
from .lanczos import Lanczos, Reorth, breakdown_tol
from .operator import as_operator, guard
from .probes import rademacher
from .slq import gauss_quadrature, probe_group_size

__all__ = ["GrowingSLQ"]


class GrowingSLQ:
    """SLQ of ``H`` (anything :func:`as_operator` accepts) whose probes and Lanczos steps grow.

    ``add_probes(n)`` starts ``n`` more probes (the next columns of the Rademacher draw seeded
    with ``seed``) and runs them to the current depth; ``advance(m)`` runs every probe to ``m``
    steps (at most ``max_steps``, or ``dim``); ``density(m)`` is the quadrature at depth ``m ≤
    depth``, equal to ``slq(H, num_steps=m, num_probes=num_probes, seed=seed, reorth=reorth)``
    to rounding (the same recurrence, stopped earlier). ``products``: the column products made
    (one per active probe per step). Memory: the stored basis grows with the depth (``reorth``
    ``"full"``/``"partial"``: ``depth · dim`` float64 per probe).
    """

    def __init__(self, H: Any, max_steps: int, seed: int = 0, reorth: Reorth = "full"):
        self.op = as_operator(H)
        self.max_steps = min(check_int(max_steps, "max_steps", minimum=1), self.op.dim)
        self.seed = check_seed(seed)
        self.reorth = check_choice(reorth, "reorth", ("full", "partial", "none"))
        self.groups: list[Lanczos] = []
        self.depth = 0

    @property
    def num_probes(self) -> int:
        return sum(g.K for g in self.groups)

    @property
    def products(self) -> int:
        """Column products made so far (a probe is multiplied once per step while active)."""
        return int(sum(int(g.lengths.sum()) for g in self.groups))

    def add_probes(self, count: int) -> None:
        """``count`` more probes, run in lock-step groups (as many as the basis budget allows,
        :func:`.slq.probe_group_size`) to the current depth."""
        count = check_int(count, "count", minimum=1)
        lo = self.num_probes
        hi = lo + count
        Q0 = rademacher(self.op.dim, hi, self.seed, self.op.device)[:, lo:] / math.sqrt(self.op.dim)
        size = probe_group_size(self.op, count, self.max_steps, self.reorth, None)
        for start in range(0, count, size):
            group = Lanczos(self.op, Q0[:, start : start + size], self.max_steps, self.reorth,
                            breakdown_tol(self.op), initial=max(1, min(16, self.max_steps)))
            with guard(self.op):
                group.run(self.depth)
            self.groups.append(group)

    def advance(self, steps: int) -> None:
        """Every probe to ``min(steps, max_steps)`` Lanczos steps (broken-down probes stop)."""
        steps = min(check_int(steps, "steps", minimum=1), self.max_steps)
        with guard(self.op):
            for group in self.groups:
                group.run(steps)
        self.depth = max(self.depth, steps)

    def density(self, steps: int | None = None) -> SpectralDensity:
        """The quadrature of every probe at depth ``steps`` (default: the current depth)."""
        if not self.groups or self.depth == 0:
            raise ValueError("GrowingSLQ.density: add probes and advance first")
        m = self.depth if steps is None else check_int(steps, "steps", minimum=1)
        if m > self.depth:
            raise ValueError(f"steps must be <= the depth run so far ({self.depth}), got {m}")
        alphas = torch.cat([g.alphas[:, :m] for g in self.groups])
        betas = torch.cat([g.betas[:, :m] for g in self.groups])
        lengths = torch.cat([g.lengths for g in self.groups]).clamp(max=m)
        return gauss_quadrature(alphas, betas, lengths, m, self.op.dim)
