"""The kinematic window: how sharp a phase transition is (Amelunxen, Lotz, McCoy, Tropp 2014)."""

from __future__ import annotations

import math

from ..._checks import check_float, check_int

__all__ = ["kinematic_window"]


def kinematic_window(D: int, eta: float = 0.01) -> float:
    """Half-width of the phase-transition window in sparsity (approximate kinematic formula)::

        a_η / sqrt(D),   a_η = sqrt(8 log(4/η))

    Amelunxen et al. (2014), Theorem I: the transition of a random ``k``-dimensional subspace
    meeting a cone of statistical dimension ``δ`` happens within ``k + δ = D ± a_η sqrt(D)``, with
    failure probability at most ``η``.
    """
    D = check_int(D, "D", minimum=1)
    eta = check_float(eta, "eta", minimum=0.0, maximum=1.0, strict_minimum=True)
    return math.sqrt(8.0 * math.log(4.0 / eta)) / math.sqrt(D)
