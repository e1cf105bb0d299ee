"""The l1-penalised quadratic sublevel set ``{w : ½(w−w*)ᵀH(w−w*) + l1‖w‖₁ ≤ level}``: its
support function by conic programs (cvxpy) and its Gaussian width by Monte Carlo (THEORY §5;
Zhang et al., NeurIPS 2024, train with this l1 penalty)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..._checks import check_float, check_int, check_seed
from ._arrays import as_float_array, as_vector
from .montecarlo import MCEstimate, gaussian_width_mc

__all__ = ["l1_quadratic_support", "l1_quadratic_width"]


def _psd_factor(H: Any, name: str = "H") -> tuple[np.ndarray, np.ndarray]:
    Hm = as_float_array(H, name)
    if Hm.ndim != 2 or Hm.shape[0] != Hm.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {Hm.shape}")
    if not np.allclose(Hm, Hm.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(Hm).max(initial=0)))):
        raise ValueError(f"{name} must be symmetric")
    Hs = 0.5 * (Hm + Hm.T)
    lam, Q = np.linalg.eigh(Hs)
    tol = 1e-10 * max(1.0, float(np.abs(lam).max(initial=0.0)))
    if lam.size and lam.min() < -tol:
        raise ValueError(
            f"{name} must be positive semidefinite (the sublevel set is convex only then); "
            f"smallest eigenvalue {lam.min():.3e}"
        )
    return np.clip(lam, 0.0, None), Q


_MAX_CVXPY_DIM = 3000


def l1_quadratic_support(
    H: Any, w_star: Any, l1: float, level: float
) -> Callable[[np.ndarray], float]:
    """Centred support function ``g ↦ sup { ⟨g, w − w*⟩ : ½(w−w*)ᵀH(w−w*) + l1‖w‖₁ ≤ level }``.

    One second-order-cone program per call (cvxpy, compiled once with a parameter ``g``; Clarabel
    if installed). ``H`` must be symmetric positive semidefinite (else the set need not be
    convex); raises ``ValueError`` when the set is empty (``level`` below the minimum of the
    objective, found by a conic program) or unbounded (``l1 = 0`` and ``H`` singular), and for
    ``D > 3000`` (use :func:`ellipsoid_width` / :func:`projected_width_sq` at that scale).
    THEORY §5; Zhang et al. (NeurIPS 2024) train with this l1 penalty.
    """
    import cvxpy as cp

    shape = np.shape(H)
    if len(shape) == 2 and shape[0] > _MAX_CVXPY_DIM:
        raise ValueError(
            f"H has dimension {shape[0]} > {_MAX_CVXPY_DIM}: one conic program per sample is too "
            "slow; use geometry.ellipsoid_width or geometry.projected_width_sq (closed forms) at "
            "this scale"
        )
    lam, Q = _psd_factor(H)
    D = lam.size
    w0 = as_vector(w_star, "w_star")
    if w0.size != D:
        raise ValueError(f"w_star must have {D} entries (H is {D}×{D}), got {w0.size}")
    l1 = check_float(l1, "l1", minimum=0.0)
    level = check_float(level, "level")
    tol = 1e-10 * max(1.0, float(lam.max(initial=0.0)))
    if l1 == 0.0 and lam.min() <= tol:
        raise ValueError("the set is unbounded (l1 = 0 and H is singular): its width is infinite")
    L = Q * np.sqrt(lam)[None, :]  # H = L Lᵀ
    # Clarabel (interior point) at its default tolerances (1e-8): tighter ones are flagged inaccurate
    opts: dict[str, Any] = {"solver": "CLARABEL"} if "CLARABEL" in cp.installed_solvers() else {}

    # minimum of the objective over w
    w = cp.Variable(D)
    obj = 0.5 * cp.sum_squares(L.T @ (w - w0)) + l1 * cp.norm1(w)
    fmin_prob = cp.Problem(cp.Minimize(obj))
    fmin_prob.solve(**opts)
    fmin = float(fmin_prob.value)
    if level < fmin - 1e-7 * max(1.0, abs(fmin)):
        raise ValueError(
            f"level={level} is below the minimum {fmin:.6g} of ½(w−w*)ᵀH(w−w*) + l1‖w‖₁: the set is empty"
        )

    v = cp.Variable(D)
    gpar = cp.Parameter(D)
    cons = [0.5 * cp.sum_squares(L.T @ v) + l1 * cp.norm1(w0 + v) <= level]
    prob = cp.Problem(cp.Maximize(gpar @ v), cons)

    def support(g: np.ndarray) -> float:
        gv = np.asarray(g, dtype=np.float64).reshape(-1)
        if gv.size != D:
            raise ValueError(f"g must have {D} entries, got {gv.size}")
        gpar.value = gv
        prob.solve(**opts)
        if prob.status not in ("optimal", "optimal_inaccurate"):
            raise ValueError(f"the conic program for the support function failed: status {prob.status}")
        return float(prob.value)

    support.fmin = fmin  # type: ignore[attr-defined]
    return support


def l1_quadratic_width(
    H: Any, w_star: Any, l1: float, level: float, num_samples: int = 200, seed: int = 0
) -> MCEstimate:
    """Gaussian width of ``{w : ½(w−w*)ᵀH(w−w*) + l1‖w‖₁ ≤ level}`` by Monte Carlo over exact
    conic programs (:func:`l1_quadratic_support`, centred at ``w*`` for lower variance).

    Limits: ``l1 = 0`` gives the ellipsoid with radii ``sqrt(2 level / λ_i)``
    (:func:`ellipsoid_width`); ``H = 0`` the cross-polytope ``‖w‖₁ ≤ level/l1``, width
    ``(level/l1) E‖g‖_∞``. ``D ≤ 3000``; ``H`` PSD. THEORY §5.
    """
    num_samples = check_int(num_samples, "num_samples", minimum=2)
    seed = check_seed(seed)
    support = l1_quadratic_support(H, w_star, l1, level)
    D = int(np.shape(H)[0])
    return gaussian_width_mc(support, D, num_samples, seed)
