"""The Donoho–Tanner phase transition of l1 recovery (basis pursuit from Gaussian measurements),
measured, with its 50% point, against the kinematic formula (Amelunxen et al. 2014, Thm II)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from ..._checks import check_float, check_int, check_seed
from ._arrays import as_float_array, as_vector
from .statdims import l1_descent_cone_statdim
from .window import kinematic_window

__all__ = ["transition_midpoint", "RecoveryTransition", "l1_recovery_transition"]


def transition_midpoint(ks: Any, successes: Any, num_trials: Any) -> float:
    """The ``k`` at which the success probability crosses 1/2: maximum-likelihood logistic fit
    ``P(success | k) = 1 / (1 + exp(−(k − k50)/w))`` to binomial counts (robust to
    non-monotone noise). ``num_trials`` is a number or one count per ``k``."""
    k = as_vector(ks, "ks")
    y = as_vector(successes, "successes", nonneg=True)
    n = np.broadcast_to(as_float_array(num_trials, "num_trials"), k.shape).astype(float)
    if y.shape != k.shape:
        raise ValueError("successes must have one entry per k")
    if np.any(n < 1) or np.any(y > n):
        raise ValueError("num_trials must be >= 1 and >= successes")
    p = y / n
    if np.all(p >= 0.5) or np.all(p <= 0.5):
        raise ValueError("the success probability does not cross 1/2 over ks: widen the range")
    spread = max(float(np.ptp(k)), 1.0)

    def nll(theta: np.ndarray) -> float:
        z = (k - theta[0]) / math.exp(theta[1])
        return float(np.sum(n * np.logaddexp(0.0, -z) + (n - y) * z))

    cross = np.flatnonzero(np.diff(np.sign(p - 0.5)) != 0)
    k0 = float(k[cross[0]]) if cross.size else float(np.median(k))
    best = optimize.minimize(nll, np.array([k0, math.log(spread / 10)]), method="Nelder-Mead",
                             options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    return float(best.x[0])


@dataclass(frozen=True)
class RecoveryTransition:
    """Result of :func:`l1_recovery_transition`: successes out of ``num_trials`` per ``k``."""

    d: int
    s: int
    ks: np.ndarray
    successes: np.ndarray
    num_trials: int

    @property
    def probability(self) -> np.ndarray:
        return self.successes / self.num_trials

    def midpoint(self) -> float:
        """50% point in ``k`` (:func:`transition_midpoint`)."""
        return transition_midpoint(self.ks, self.successes, self.num_trials)

    def predicted(self) -> float:
        """``l1_descent_cone_statdim(d, s)``: where the kinematic formula puts the 50% point."""
        return l1_descent_cone_statdim(self.d, self.s)

    def window(self, eta: float = 0.01) -> float:
        """Half-width ``a_η sqrt(d)`` in ``k`` of the kinematic window."""
        return kinematic_window(self.d, eta) * self.d


def l1_recovery_transition(
    d: int,
    s: int,
    ks: Sequence[int],
    num_trials: int = 20,
    seed: int = 0,
    tol: float = 1e-5,
) -> RecoveryTransition:
    """Donoho–Tanner phase transition: basis pursuit ``min ‖x‖₁ s.t. Ax = Ax₀`` (cvxpy LP) from
    ``k`` Gaussian measurements ``A ∈ R^{k×d}`` of an ``s``-sparse ``x₀`` (random support,
    Gaussian entries); success when ``‖x̂ − x₀‖ ≤ tol ‖x₀‖``. By the kinematic formula
    (Amelunxen et al. 2014, Thm II) success flips from ≤ η to ≥ 1 − η as ``k`` crosses
    ``δ(D(‖·‖₁, x₀)) ± a_η sqrt(d)`` (:func:`l1_descent_cone_statdim`). Seeded, reproducible.
    """
    import cvxpy as cp

    d = check_int(d, "d", minimum=1)
    s = check_int(s, "s", minimum=1, maximum=d)
    num_trials = check_int(num_trials, "num_trials", minimum=1)
    seed = check_seed(seed)
    tol = check_float(tol, "tol", minimum=0.0, strict_minimum=True)
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise TypeError(f"ks must be a sequence of integers, got {type(ks).__name__}")
    k_list = [check_int(k, "ks[i]", minimum=1, maximum=d) for k in ks]
    if not k_list:
        raise ValueError("ks must be non-empty")
    rng = np.random.default_rng(seed)
    solver = "HIGHS" if "HIGHS" in cp.installed_solvers() else None
    successes = np.zeros(len(k_list), dtype=np.int64)
    for i, k in enumerate(k_list):
        A = cp.Parameter((k, d))
        b = cp.Parameter(k)
        x = cp.Variable(d)
        prob = cp.Problem(cp.Minimize(cp.norm1(x)), [A @ x == b])
        for _ in range(num_trials):
            x0 = np.zeros(d)
            x0[rng.choice(d, size=s, replace=False)] = rng.standard_normal(s)
            Am = rng.standard_normal((k, d))
            A.value, b.value = Am, Am @ x0
            prob.solve(solver=solver)
            if x.value is not None and np.linalg.norm(x.value - x0) <= tol * np.linalg.norm(x0):
                successes[i] += 1
    return RecoveryTransition(d, s, np.array(k_list), successes, num_trials)
