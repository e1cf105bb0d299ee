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
        self._resumed: list[Lanczos] = []  # groups of a checkpoint not yet reached (:meth:`load`)

    @property
    def num_probes(self) -> int:
        return sum(g.K for g in self.groups)

    @property
    def products(self) -> int:
        """Column products made so far (a probe is multiplied once per step while active; a
        resumed group run past the current depth counts to the depth)."""
        return int(sum(int(g.lengths.clamp(max=self.depth).sum()) for g in self.groups))

    def state(self) -> dict[str, Any]:
        """Every group's Lanczos state (:meth:`Lanczos.state`) with its size, reached or
        resumed-but-not-yet-reached, for a checkpoint."""
        return {"groups": [{"size": int(g.K), **g.state()} for g in [*self.groups, *self._resumed]]}

    def load(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state`: the saved groups are taken, in order, by the
        :meth:`add_probes` calls whose groups they were (a replay of the same calls reaches
        the same quadratures, bit for bit, and runs only what the saved groups lack);
        ``ValueError`` for a malformed state."""
        if self.groups or self._resumed:
            raise ValueError("GrowingSLQ.load: only before the first add_probes")
        groups = state.get("groups") if isinstance(state, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise ValueError("checkpoint: the grown SLQ state must hold a list of groups")
        lo = 0
        for saved in groups:
            size = saved.get("size")
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"checkpoint: a group's 'size' must be a positive int, got {size!r}")
            group = self._group(lo, lo + size)
            group.load(saved)
            self._resumed.append(group)
            lo += size

    def _group(self, lo: int, hi: int) -> Lanczos:
        """A Lanczos run of probes ``lo..hi-1`` of the seeded draw."""
        Q0 = rademacher(self.op.dim, hi, self.seed, self.op.device)[:, lo:] / math.sqrt(self.op.dim)
        return Lanczos(self.op, Q0, self.max_steps, self.reorth, breakdown_tol(self.op),
                       initial=max(1, min(16, self.max_steps)))

    def add_probes(self, count: int) -> None:
        """``count`` more probes, run in lock-step groups (as many as the basis budget allows,
        :func:`.slq.probe_group_size`) to the current depth."""
        count = check_int(count, "count", minimum=1)
        lo = self.num_probes
        size = probe_group_size(self.op, count, self.max_steps, self.reorth, None)
        for start in range(0, count, size):
            k = min(size, count - start)
            if self._resumed and self._resumed[0].K == k:
                group = self._resumed.pop(0)  # a checkpoint's group: already run this far or more
            else:
                self._resumed.clear()  # grouped otherwise (another memory budget): run afresh
                group = self._group(lo + start, lo + start + k)
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
