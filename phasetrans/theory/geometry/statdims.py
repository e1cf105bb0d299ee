"""Closed-form statistical dimensions of cones: the circular cone (exactly) and the l1 descent
cone (the Donoho–Tanner bound), Amelunxen, Lotz, McCoy, Tropp (2014)."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from ..._checks import check_float, check_int

__all__ = ["circular_cone_statdim", "l1_descent_cone_statdim"]


def _log_sine_power_total(m: float) -> float:
    """log ∫_0^π sin^m θ dθ = log(√π Γ((m+1)/2) / Γ(m/2 + 1))."""
    return 0.5 * math.log(math.pi) + special.gammaln((m + 1) / 2) - special.gammaln(m / 2 + 1)


def _sine_power_cdf(m: float, theta: float) -> float:
    """∫_0^θ sin^m / ∫_0^π sin^m for θ ∈ [0, π] (regularised incomplete beta in sin²θ)."""
    if theta <= math.pi / 2:
        return 0.5 * float(special.betainc((m + 1) / 2, 0.5, math.sin(theta) ** 2))
    return 1.0 - 0.5 * float(special.betainc((m + 1) / 2, 0.5, math.sin(math.pi - theta) ** 2))


def circular_cone_statdim(D: int, alpha: float) -> float:
    """Statistical dimension of the circular cone ``{x : x_1 ≥ ‖x‖ cos α}`` in ``R^D``, exactly.

    With ``θ`` the angle of ``g`` to the axis (density ∝ sin^{D−2}θ on [0, π], independent of
    ``‖g‖``), ``‖Π(g)‖² = ‖g‖² c(θ)``, ``c = 1`` on ``[0, α]``, ``cos²(θ−α)`` on ``[α, α+π/2]``,
    0 beyond, so ``δ = D·E c(θ)``; expanding ``cos²(θ−α)`` leaves integrals of ``sin^m θ``
    (regularised incomplete beta functions) and ``∫ sin^{D−1}θ cos θ = sin^Dθ / D``. Equals
    Σ_k k v_k with the intrinsic volumes of Amelunxen et al. (2014), Prop. 3.4 / §D.4, and is
    ``D sin²α + cos 2α + O(1)``-close to their approximation. ``D ≥ 2``, ``0 ≤ α ≤ π/2``.
    """
    D = check_int(D, "D", minimum=2)
    alpha = check_float(alpha, "alpha", minimum=0.0, maximum=math.pi / 2)
    beta = alpha + math.pi / 2
    ca, sa = math.cos(alpha), math.sin(alpha)
    m0, m1 = D - 2, D
    mass_in = _sine_power_cdf(m0, alpha)
    band0 = _sine_power_cdf(m0, beta) - _sine_power_cdf(m0, alpha)
    band1 = _sine_power_cdf(m1, beta) - _sine_power_cdf(m1, alpha)
    ratio = (D - 1) / D  # ∫sin^D / ∫sin^{D-2}
    cos2_part = band0 - ratio * band1  # ∫ sin^{D-2} cos² / ∫ sin^{D-2}
    sin2_part = ratio * band1
    # 2 sinα cosα ∫_α^β sin^{D-1} cos = 2 sinα cosα (cos^D α − sin^D α) / D, normalised
    cross = 0.0
    if 0.0 < alpha < math.pi / 2:
        logn = _log_sine_power_total(m0)
        cross = (
            2.0 * sa * ca * (math.exp(D * math.log(ca) - logn) - math.exp(D * math.log(sa) - logn)) / D
        )
    value = mass_in + ca**2 * cos2_part + sa**2 * sin2_part + cross
    return D * value


def _l1_dJ(tau: float, d: int, s: int) -> float:
    q = special.ndtr(-tau)
    phi = math.exp(-0.5 * tau * tau) / math.sqrt(2 * math.pi)
    return 2.0 * s * tau + 4.0 * (d - s) * (tau * q - phi)


def _l1_J(tau: float, d: int, s: int) -> float:
    q = special.ndtr(-tau)
    phi = math.exp(-0.5 * tau * tau) / math.sqrt(2 * math.pi)
    return s * (1.0 + tau * tau) + 2.0 * (d - s) * ((1.0 + tau * tau) * q - tau * phi)


def l1_descent_cone_statdim(d: int, s: int) -> float:
    """Amelunxen et al. (2014, Prop. 4.5) bound for the l1 descent cone at an ``s``-sparse point::

        inf_{τ≥0} J(τ),  J(τ) = s(1+τ²) + (d−s) sqrt(2/π) ∫_τ^∞ (u−τ)² e^{−u²/2} du
                              = s(1+τ²) + 2(d−s)[(1+τ²) Q(τ) − τ φ(τ)]

    (``Q`` the Gaussian upper tail, ``φ`` the density). ``J`` is strictly convex; its minimiser
    solves ``sτ = 2(d−s)(φ(τ) − τQ(τ))`` (Brent, to machine precision). This is the Donoho–Tanner
    l1-recovery threshold: the exact statistical dimension ``δ`` satisfies
    ``inf J − 2 sqrt(d/s) ≤ δ ≤ inf J``. ``s`` = number of nonzeros, ``0 ≤ s ≤ d``.
    """
    d = check_int(d, "d", minimum=1)
    s = check_int(s, "s", minimum=0, maximum=d)
    if s == 0:
        return 0.0
    if s == d:
        return float(d)
    hi = 1.0
    while _l1_dJ(hi, d, s) <= 0:
        hi *= 2.0
    tau = optimize.brentq(_l1_dJ, 0.0, hi, args=(d, s), xtol=1e-15, rtol=4 * np.finfo(float).eps)
    return float(_l1_J(tau, d, s))
