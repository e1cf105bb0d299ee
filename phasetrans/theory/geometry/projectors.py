"""Exact Euclidean projectors (act on the last axis; accept one vector or a batch of row vectors):
onto an ellipsoid, a circular cone, the l1 descent cone and the cone an ellipsoid generates from
an outside point. The Monte-Carlo statistical dimensions (:mod:`.montecarlo`) sample them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..._checks import check_float
from ._arrays import as_float_array, as_vector

__all__ = [
    "project_onto_ellipsoid",
    "circular_cone_projector",
    "l1_descent_cone_projector",
    "ellipsoid_cone_projector",
]


def _secular_lambda(y2r2: np.ndarray, r2: np.ndarray, lam0: np.ndarray | None = None) -> np.ndarray:
    """Row-wise root λ > 0 of Σ_i r_i² y_i² / (r_i² + λ)² = 1 (given Σ y_i²/r_i² > 1).

    Safeguarded Newton on ψ(λ) = S(λ)^{-1/2} − 1 (linear for one term), bracket [0, ‖r∘y‖]."""
    n = y2r2.shape[0]
    lo = np.zeros(n)
    hi = np.sqrt(y2r2.sum(axis=1))
    lam = np.zeros(n) if lam0 is None else np.clip(lam0, lo, hi)
    todo = np.ones(n, dtype=bool)
    for _ in range(200):
        idx = np.flatnonzero(todo)
        if idx.size == 0:
            break
        la = lam[idx]
        num = y2r2[idx]
        den = r2[None, :] + la[:, None]
        S = (num / den**2).sum(axis=1)
        dS = -2.0 * (num / den**3).sum(axis=1)
        psi = S**-0.5 - 1.0
        dpsi = -0.5 * S**-1.5 * dS
        lo[idx] = np.where(psi < 0, la, lo[idx])
        hi[idx] = np.where(psi > 0, la, hi[idx])
        new = la - psi / dpsi
        converged = (psi == 0) | (np.abs(new - la) <= 4e-16 * np.abs(la))
        outside = ~((new >= lo[idx]) & (new <= hi[idx]))
        new = np.where(converged, la, np.where(outside, 0.5 * (lo[idx] + hi[idx]), new))
        converged |= hi[idx] - lo[idx] <= 4e-16 * hi[idx]
        lam[idx] = new
        todo[idx] = ~converged
    return lam


def _project_ellipsoid_rows(
    y: np.ndarray, r2: np.ndarray, lam0: np.ndarray | None = None, return_lam: bool = False
) -> Any:
    """Projection of the rows of ``y`` onto {x : Σ x²/r² ≤ 1}, finite r² ≥ 0 (zero = flat axis).

    ``lam0``: optional warm start for the secular root (one per row)."""
    pos = r2 > 0
    x = np.zeros_like(y)
    lam = np.zeros(y.shape[0])
    if np.any(pos):
        yp, rp = y[:, pos], r2[pos]
        q = (yp**2 / rp).sum(axis=1)
        out = yp.copy()
        outside = q > 1.0
        if np.any(outside):
            yo = yp[outside]
            lam[outside] = _secular_lambda(
                rp[None, :] * yo**2, rp, None if lam0 is None else lam0[outside]
            )
            out[outside] = rp[None, :] * yo / (rp[None, :] + lam[outside][:, None])
        x[:, pos] = out
    return (x, lam) if return_lam else x


def _rows(y: Any, dim: int, name: str) -> tuple[np.ndarray, bool]:
    arr = as_float_array(y, name)
    if arr.ndim not in (1, 2) or arr.shape[-1] != dim:
        raise ValueError(f"{name} must have shape ({dim},) or (n, {dim}), got {arr.shape}")
    return np.atleast_2d(arr), arr.ndim == 1


def project_onto_ellipsoid(y: Any, radii: Any) -> np.ndarray:
    """Euclidean projection onto ``E = {x : Σ x_i²/r_i² ≤ 1}`` (rows of ``y`` if 2-D).

    Outside ``E``: ``x_i = r_i² y_i / (r_i² + λ)`` with ``λ > 0`` the root of the secular equation
    ``Σ r_i² y_i² / (r_i² + λ)² = 1`` (safeguarded Newton, to machine precision). Zero radii are
    flat axes; infinite radii are unconstrained axes.
    """
    r = as_vector(radii, "radii", allow_inf=True, nonneg=True)
    Y, single = _rows(y, r.size, "y")
    inf = np.isinf(r)
    x = Y.copy()
    fin = ~inf
    x[:, fin] = _project_ellipsoid_rows(Y[:, fin], r[fin] ** 2)
    return x[0] if single else x


def circular_cone_projector(alpha: float, axis: Any = None) -> Callable[[np.ndarray], np.ndarray]:
    """Projector onto the circular cone ``{x : ⟨x, u⟩ ≥ ‖x‖ cos α}`` (``u = axis/‖axis‖``,
    default the first coordinate vector, any dimension). In the plane of ``u`` and ``g``:
    ``g`` if its angle ``θ ≤ α``, 0 if ``θ ≥ α + π/2``, else ``(⟨g,u⟩cos α + ‖g_⊥‖ sin α)·e_α``
    with ``e_α = cos α u + sin α g_⊥/‖g_⊥‖``. The returned callable accepts ``(D,)`` or ``(n, D)``."""
    alpha = check_float(alpha, "alpha", minimum=0.0, maximum=math.pi / 2)
    u_fixed = None
    if axis is not None:
        u_fixed = as_vector(axis, "axis")
        nu = float(np.linalg.norm(u_fixed))
        if nu == 0:
            raise ValueError("axis must be nonzero")
        u_fixed = u_fixed / nu
    ca, sa = math.cos(alpha), math.sin(alpha)

    def project(g: np.ndarray) -> np.ndarray:
        G = np.atleast_2d(np.asarray(g, dtype=np.float64))
        D = G.shape[1]
        if u_fixed is None:
            u = np.zeros(D)
            u[0] = 1.0
        else:
            if u_fixed.size != D:
                raise ValueError(f"g must have {u_fixed.size} columns, got {D}")
            u = u_fixed
        a = G @ u
        perp = G - a[:, None] * u[None, :]
        rho = np.linalg.norm(perp, axis=1)
        length = np.maximum(a * ca + rho * sa, 0.0)
        safe = np.where(rho > 0, rho, 1.0)
        e = ca * u[None, :] + sa * perp / safe[:, None]
        e = np.where((rho > 0)[:, None], e, u[None, :])
        out = length[:, None] * e
        inside = a >= np.hypot(a, rho) * ca
        out = np.where(inside[:, None], G, out)
        return out[0] if np.ndim(g) == 1 else out

    return project


def l1_descent_cone_projector(x: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Exact projector onto the descent cone ``C = {y : ‖x + t y‖₁ ≤ ‖x‖₁ for some t > 0}``
    (closure) of the l1 norm at ``x``.

    Moreau: ``Π_C(g) = g − Π_{C°}(g)``, ``C° = cone ∂‖x‖₁ = {τ(sign x_S, z) : τ ≥ 0, |z|∞ ≤ 1}``.
    For fixed ``τ`` the nearest point of ``C°`` is ``τ sign(x_i)`` on the support ``S`` and
    ``clip(g_i, ±τ)`` off it, so ``τ`` minimises the convex piecewise quadratic
    ``Σ_S (g_i − τσ_i)² + Σ_{S^c} (|g_i| − τ)_+²``; its derivative is increasing piecewise linear
    and the root is found exactly by sorting. Then ``Π_C(g) = (g_S − τσ, soft(g_{S^c}, τ))``.
    """
    xv = as_vector(x, "x")
    S = xv != 0
    sig = np.sign(xv[S])
    s = int(S.sum())

    def project(g: np.ndarray) -> np.ndarray:
        G = np.atleast_2d(np.asarray(g, dtype=np.float64))
        if G.shape[1] != xv.size:
            raise ValueError(f"g must have {xv.size} columns, got {G.shape[1]}")
        if s == 0:
            out = np.zeros_like(G)
            return out[0] if np.ndim(g) == 1 else out
        c = G[:, S] @ sig
        a = -np.sort(-np.abs(G[:, ~S]), axis=1)  # descending
        m_all = a.shape[1]
        csum = np.concatenate([np.zeros((G.shape[0], 1)), np.cumsum(a, axis=1)], axis=1)
        # G(τ) = sτ − c − Σ_j (a_j − τ)_+ at the breakpoints τ = a_(j), j = 1..m
        j = np.arange(1, m_all + 1)
        G_at = s * a - c[:, None] - (csum[:, :-1] - (j - 1)[None, :] * a)
        m = (G_at > 0).sum(axis=1)  # number of breakpoints where G > 0 = number of a_j > τ*
        tau = (c + csum[np.arange(G.shape[0]), m]) / (s + m)
        tau = np.maximum(tau, 0.0)
        out = np.empty_like(G)
        out[:, S] = G[:, S] - tau[:, None] * sig[None, :]
        off = G[:, ~S]
        out[:, ~S] = np.sign(off) * np.maximum(np.abs(off) - tau[:, None], 0.0)
        return out[0] if np.ndim(g) == 1 else out

    return project


def _ellipsoid_cone_rows(G: np.ndarray, pf: np.ndarray, rf2: np.ndarray, rf: np.ndarray,
                         dist_p: float) -> np.ndarray:
    """Rows of ``G`` projected onto ``cl cone{x − p : x ∈ E}`` over the finite radii (``rf2``
    their squares, ``pf`` the point there, ``dist_p`` its distance to ``E``): see
    :func:`ellipsoid_cone_projector`."""
    out = np.zeros_like(G)
    slope0 = 2.0 * (G @ pf - np.linalg.norm(G * rf[None, :], axis=1))
    active = slope0 < 0
    if not np.any(active):
        return out
    Ga = G[active]
    m = Ga.shape[0]
    a = np.zeros(m)
    fa = slope0[active]
    b = np.linalg.norm(Ga, axis=1) / dist_p * (1.0 + 1e-9) + 1e-300
    lam = np.zeros(m)

    def slope_at(t: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, lam[rows] = _project_ellipsoid_rows(
            Ga[rows] / t[:, None] + pf[None, :], rf2, lam[rows], return_lam=True
        )
        diff = pf[None, :] - xs
        return 2.0 * ((Ga[rows] + t[:, None] * diff) * diff).sum(axis=1), xs

    everyone = np.arange(m)
    fb, xs_b = slope_at(b, everyone)
    t_out, x_out = b.copy(), xs_b
    side = np.zeros(m, dtype=np.int8)
    todo = fb > 0
    # Illinois (modified regula falsi) on φ'(t), bracket [a, b] with φ'(a) < 0 ≤ φ'(b)
    for _ in range(200):
        rows = np.flatnonzero(todo)
        if rows.size == 0:
            break
        A, B, FA, FB = a[rows], b[rows], fa[rows], fb[rows]
        c = (A * FB - B * FA) / (FB - FA)
        bad = ~((c > A) & (c < B))
        c = np.where(bad, 0.5 * (A + B), c)
        fc, xs = slope_at(c, rows)
        t_out[rows], x_out[rows] = c, xs
        left = fc < 0
        sd = side[rows]
        a[rows] = np.where(left, c, A)
        fa[rows] = np.where(left, fc, np.where(sd == 1, 0.5 * FA, FA))
        b[rows] = np.where(left, B, c)
        fb[rows] = np.where(left, np.where(sd == -1, 0.5 * FB, FB), fc)
        side[rows] = np.where(left, -1, 1)
        done = (fc == 0) | (b[rows] - a[rows] <= 1e-14 * b[rows])
        todo[rows] = ~done
    out[active] = t_out[:, None] * (x_out - pf[None, :])
    return out


def ellipsoid_cone_projector(radii: Any, point: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Exact projector onto ``C = cl cone{x − p : x ∈ E}``, ``E = {x : Σ x_i²/r_i² ≤ 1}``, ``p ∉ E``.

    ``Π_C(g) = t*(x*(t*) − p)``, where ``t*`` minimises the convex function
    ``φ(t) = dist²(g, t(E − p)) = t² dist²(g/t + p, E)`` over ``t ≥ 0`` and
    ``x*(t) = Π_E(g/t + p)`` (secular equation, :func:`project_onto_ellipsoid`). ``φ'(t) =
    2⟨g + t(p − x*), p − x*⟩`` (envelope theorem) is bisected on ``[0, ‖g‖/dist(p, E)]`` to machine
    precision; ``φ'(0+) = 2(⟨g,p⟩ − ‖diag(r)g‖) ≥ 0`` means ``g ∈ C°`` (``Π_C g = 0``).
    Infinite radii split off: those coordinates are a subspace contained in ``C``.
    """
    r = as_vector(radii, "radii", allow_inf=True, nonneg=True)
    p = as_vector(point, "point")
    if p.size != r.size:
        raise ValueError(f"point must have {r.size} entries (one per radius), got {p.size}")
    fin = ~np.isinf(r)
    rf2, pf = r[fin] ** 2, p[fin]
    xp = _project_ellipsoid_rows(pf[None, :], rf2)[0] if rf2.size else pf * 0
    dist_p = float(np.linalg.norm(pf - xp))
    if rf2.size == 0 or dist_p <= 1e-12 * max(1.0, float(np.linalg.norm(pf))):
        raise ValueError(
            "point must lie outside the ellipsoid (Σ p_i²/r_i² > 1 over finite radii); "
            "from a point inside, the cone is all of R^D"
        )
    rf = np.sqrt(rf2)

    def project(g: np.ndarray) -> np.ndarray:
        G = np.atleast_2d(np.asarray(g, dtype=np.float64))
        if G.shape[1] != r.size:
            raise ValueError(f"g must have {r.size} columns, got {G.shape[1]}")
        out = G.copy()
        out[:, fin] = _ellipsoid_cone_rows(G[:, fin], pf, rf2, rf, dist_p)
        return out[0] if np.ndim(g) == 1 else out

    return project
