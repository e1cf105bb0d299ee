"""Convex geometry: Gaussian widths and statistical dimensions (THEORY §2, §5).

References: Amelunxen, Lotz, McCoy, Tropp, "Living on the edge: phase transitions in convex
programs with random data" (Information and Inference, 2014); Larsen, Fort, Becker, Ganguli,
"How many degrees of freedom do we need to train deep networks" (ICLR 2022); Zhang, Zhang, Sun,
Liu, "How sparse can we prune a deep network" (NeurIPS 2024).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._checks import check_float, check_int

__all__ = ["projected_width_sq", "kinematic_window"]


def _as_float_array(x: Any, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like of real numbers, got {type(x).__name__}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return arr


def projected_width_sq(eigenvalues: Any, weights: Any = None, eps: float = 1.0, R: Any = 1.0) -> Any:
    """The Φ·D sum: squared Gaussian width of the projected loss sublevel ellipsoid (Larsen et al.)::

        Σ_i w_i r_i² / (R² + r_i²) = Σ_i w_i / (1 + |λ_i| R² / (2 eps)),   r_i² = 2 eps / |λ_i|

    ``eigenvalues``: Hessian eigenvalues (or SLQ nodes), any shape; ``weights``: same shape,
    default all ones (then the sum over all ``D`` eigenvalues is ``Φ(R)·D``); for SLQ output pass
    ``weights * D / num_probes``. A zero eigenvalue (infinite radius) contributes its full weight.
    Vectorised over ``R`` (scalar or array; the result has ``R``'s shape).
    """
    lam = np.abs(_as_float_array(eigenvalues, "eigenvalues")).reshape(-1)
    if weights is None:
        w = np.ones_like(lam)
    else:
        w = _as_float_array(weights, "weights").reshape(-1)
        if w.shape != lam.shape:
            raise ValueError(
                f"weights must have the same number of entries as eigenvalues, got {w.size} and {lam.size}"
            )
        if np.any(w < 0):
            raise ValueError("weights must be non-negative")
    eps = check_float(eps, "eps", minimum=0.0, strict_minimum=True)
    R_arr = _as_float_array(R, "R")
    if np.any(R_arr < 0):
        raise ValueError("R must be non-negative")
    scalar = R_arr.ndim == 0
    r2 = np.atleast_1d(R_arr).reshape(-1, 1) ** 2
    values = (w[None, :] / (1.0 + lam[None, :] * r2 / (2.0 * eps))).sum(axis=1)
    values = values.reshape(np.atleast_1d(R_arr).shape)
    return float(values[0]) if scalar else values


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
