"""``Φ(R)``: the normalised squared Gaussian width of the projected loss sublevel set seen from a
point at distance ``R`` (Larsen, Fort, Becker, Ganguli, ICLR 2022; Zhang et al., NeurIPS 2024)::

    Φ(R) = p0 + (1 − p0) · (1/K) Σ_k Σ_j τ_jk / (1 + |θ_jk| R² / (2ε))   (SLQ nodes θ, weights τ)

with the policy for negative eigenvalues (``negative``) and the mass ``p0`` of exactly flat
directions (``zero_mass``) applied here, once, for the solver, the bootstrap and the reference
pipeline alike.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .._checks import check_choice, check_float
from .geometry import projected_width_sq
from .spectrum import parse_spectrum, to_numpy

__all__ = [
    "NEGATIVE_POLICIES",
    "Negative",
    "Phi",
    "apply_negative_policy",
    "check_eps",
    "check_negative",
    "check_zero_mass",
    "width_fraction",
]

#: What to do with negative eigenvalues: use ``|λ|`` (the reference code), drop them and
#: renormalise over ``λ > 0``, or count ``λ ≤ 0`` as flat (infinite radius, contribution 1).
Negative = Literal["abs", "drop", "flat"]
NEGATIVE_POLICIES: tuple[Negative, ...] = ("abs", "drop", "flat")


def check_eps(eps: Any) -> float:
    """ε > 0, a finite number."""
    return check_float(eps, "eps", minimum=0.0, strict_minimum=True)


def check_zero_mass(zero_mass: Any, allow_estimate: bool) -> float | Literal["estimate"]:
    """``p0`` in [0, 1), or ``"estimate"`` where the Hessian is at hand (``allow_estimate``)."""
    if isinstance(zero_mass, str):
        if zero_mass != "estimate":
            raise ValueError(f"zero_mass must be a number in [0, 1) or 'estimate', got {zero_mass!r}")
        if not allow_estimate:
            raise ValueError(
                "zero_mass='estimate' needs the Hessian: use predict_sparsity(..., "
                "zero_mass='estimate'), or estimate_zero_mass(H) and pass the number"
            )
        return zero_mass
    p0 = check_float(zero_mass, "zero_mass", minimum=0.0)
    if not p0 < 1.0:
        raise ValueError(f"zero_mass must be in [0, 1), got {p0}")
    return p0


def check_negative(negative: Any) -> Negative:
    """One of :data:`NEGATIVE_POLICIES`."""
    return check_choice(negative, "negative", NEGATIVE_POLICIES)  # type: ignore[return-value]


def apply_negative_policy(
    nodes: np.ndarray, masses: np.ndarray, negative: Negative
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes/masses such that ``Σ m / (1 + |x| R²/2ε)`` is the policy's quadrature."""
    if negative == "abs":
        return nodes, masses
    if negative == "flat":
        return np.where(nodes > 0, nodes, 0.0), masses
    keep = nodes > 0
    total = masses[keep].sum()
    if not total > 0:  # nothing positive: every direction flat, Φ ≡ 1
        return np.zeros(1), np.ones(1)
    return nodes[keep], masses[keep] / total


class Phi:
    """Φ(R) = p0 + (1 − p0) · Σ m_i / (1 + |x_i| R²/(2ε)) via ``geometry.projected_width_sq``."""

    def __init__(
        self, nodes: np.ndarray, masses: np.ndarray, eps: float, p0: float, negative: Negative
    ):
        self.nodes, self.masses = apply_negative_policy(nodes, masses, negative)
        self.eps, self.p0 = eps, p0

    def __call__(self, R: Any) -> Any:
        R_arr = np.asarray(R, dtype=np.float64)
        if R_arr.ndim == 0:
            q = projected_width_sq(self.nodes, self.masses, self.eps, float(R_arr))
            return self.p0 + (1.0 - self.p0) * q
        flat = R_arr.reshape(-1)
        step = max(1, int(2e7 // max(1, self.nodes.size)))
        q = np.concatenate([
            np.atleast_1d(projected_width_sq(self.nodes, self.masses, self.eps, flat[i : i + step]))
            for i in range(0, flat.size, step)
        ])
        return (self.p0 + (1.0 - self.p0) * q).reshape(R_arr.shape)

    def mean_curvature(self) -> float:
        """``(1 − p0) Σ m_i |x_i|``: Tr(H)/D as the policy sees it (for the Jensen bound)."""
        return (1.0 - self.p0) * float(np.sum(self.masses * np.abs(self.nodes)))


def width_fraction(
    spectrum: Any, eps: float, R: Any, negative: Negative = "abs", zero_mass: float = 0.0
) -> Any:
    """``Φ(R)``, the normalised squared width of the projected loss sublevel set (Larsen et al.)::

        Φ(R) = p0 + (1 − p0) · (1/K) Σ_k Σ_j τ_jk / (1 + |θ_jk| R² / (2ε))

    ``spectrum``: a ``SpectralDensity`` (SLQ nodes and weights, used directly), a 1-D array of
    eigenvalues (each weighted 1/D) or a ``(nodes, masses)`` pair. ``negative``: ``"abs"``
    (use |λ|), ``"drop"`` (renormalise over λ > 0) or ``"flat"`` (λ ≤ 0 contributes 1).
    ``zero_mass`` p0 in [0, 1). ``R`` a number or an array (result of the same shape).
    """
    eps = check_eps(eps)
    negative = check_negative(negative)
    p0 = check_zero_mass(zero_mass, allow_estimate=False)
    spec = parse_spectrum(spectrum, None)
    R_arr = to_numpy(R, "R")
    if np.any(R_arr < 0):
        raise ValueError("R must be non-negative")
    nodes, masses = spec.pooled()
    out = Phi(nodes, masses, eps, float(p0), negative)(R_arr)
    return float(out) if np.ndim(out) == 0 else out
