"""Exact truths for quadratic losses: what the validation study measures the predictor against.

For ``L(w) = ½ (w − w*)ᵀ H (w − w*)`` with ``H`` symmetric positive semi-definite, magnitude
pruning of ``w*`` has closed forms (Zhang, Zhang, Sun & Liu, NeurIPS 2024, THEORY §4):

- one-shot: ``L(w^(k)) = ½ d_kᵀ H d_k`` with ``d_k`` the ``k`` smallest entries of ``w*``
  (:func:`quadratic_oneshot_losses`, all ``k`` at once);
- re-fit on a support ``S`` (pruned set ``P``): ``min {L(v) : v_P = 0} = ½ w*_Pᵀ (H/H_SS) w*_P``,
  the Schur complement (:func:`schur_refit_loss`);
- the thresholds over the nested magnitude supports (:func:`quadratic_thresholds`), and for tiny
  ``D`` the best over *all* supports by brute force (:func:`brute_force_refit_threshold`).

:func:`make_quadratic` builds test problems: a chosen spectrum, a Haar-random rotation and
planted weights (l1-like or Gaussian).
"""

from __future__ import annotations

import itertools

import numpy as np

from .._bisect import last_true
from .._checks import check_choice, check_float, check_int, check_seed

__all__ = [
    "make_quadratic",
    "magnitude_order",
    "quadratic_oneshot_losses",
    "schur_refit_loss",
    "quadratic_thresholds",
    "brute_force_refit_threshold",
]


def make_quadratic(dim: int, weights: str = "l1like", spectrum: str = "powerlaw", seed: int = 0,
                   big_fraction: float = 0.15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, w*, eigenvalues)``: ``H = Q diag(λ) Qᵀ`` (``Q`` Haar-random) and planted weights.

    ``spectrum``: ``"powerlaw"`` ``λ_i = 10 i^-1``; ``"bulk"`` 10 % outliers uniform in [1, 100]
    and a bulk at 1e-3 (the shape of trained-network spectra). ``weights``: ``"l1like"`` (a
    ``big_fraction`` of entries N(0, 1), the rest Laplace of scale 1e-3: what l1 training leaves)
    or ``"gauss"`` (dense N(0, 1))."""
    dim = check_int(dim, "dim", minimum=1)
    check_choice(weights, "weights", ("l1like", "gauss"))
    check_choice(spectrum, "spectrum", ("powerlaw", "bulk"))
    seed = check_seed(seed)
    big_fraction = check_float(big_fraction, "big_fraction", minimum=0.0, maximum=1.0)
    rng = np.random.default_rng(seed)
    if spectrum == "powerlaw":
        lam = 10.0 / np.arange(1, dim + 1, dtype=np.float64)
    else:  # "bulk"
        lam = np.full(dim, 1e-3)
        lam[: max(1, dim // 10)] = rng.uniform(1.0, 100.0, max(1, dim // 10))
    Q, R = np.linalg.qr(rng.standard_normal((dim, dim)))
    Q = Q * np.sign(np.diag(R))
    H = (Q * lam) @ Q.T
    H = 0.5 * (H + H.T)
    if weights == "l1like":
        w = rng.laplace(0.0, 1e-3, dim)
        big = rng.permutation(dim)[: max(1, round(big_fraction * dim))]
        w[big] = rng.standard_normal(big.size)
    else:  # "gauss"
        w = rng.standard_normal(dim)
    return H, w, np.sort(lam)


def _check_problem(H: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``H`` a finite ``(D, D)`` array and ``w`` a finite vector of length ``D``."""
    if not isinstance(H, np.ndarray) or H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise TypeError(f"H must be a square 2-D numpy array, got {type(H).__name__} "
                        f"{getattr(H, 'shape', '')}")
    if not isinstance(w, np.ndarray) or w.ndim != 1 or w.size != H.shape[0]:
        raise TypeError(f"w must be a 1-D numpy array of length {H.shape[0]} (the size of H), got "
                        f"{type(w).__name__} {getattr(w, 'shape', '')}")
    if not (np.isfinite(H).all() and np.isfinite(w).all()):
        raise ValueError("H and w must be finite")
    return H, w


def magnitude_order(w: np.ndarray) -> np.ndarray:
    """Indices of ``w`` by increasing ``|w|`` (stable: ties keep index order)."""
    return np.argsort(np.abs(w), kind="stable")  # smallest first: pruned first


def quadratic_oneshot_losses(H: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``L(w^(k))`` for ``k = 0..D`` pruned (magnitude order): ``½ d_kᵀ H d_k``, ``d_k`` the
    ``k`` smallest entries of ``w*`` (exact, all ``k`` at once by prefix sums)."""
    H, w = _check_problem(H, w)
    order = magnitude_order(w)
    wp = w[order]
    P = H[np.ix_(order, order)] * np.outer(wp, wp)
    # S_k = S_{k-1} + 2 Σ_{j<k} P_kj + P_kk  (k 1-based)
    row = np.tril(P, -1).sum(axis=1) * 2.0 + np.diag(P)
    return 0.5 * np.concatenate([[0.0], np.cumsum(row)])


def schur_refit_loss(H: np.ndarray, w: np.ndarray, keep: np.ndarray) -> float:
    """``min {L(v) : v_P = 0} = ½ w*_Pᵀ (H_PP − H_PS H_SS⁻¹ H_SP) w*_P`` (``keep`` = the support
    ``S`` as a boolean mask, ``P`` its complement)."""
    H, w = _check_problem(H, w)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != w.shape:
        raise ValueError(f"keep must be a boolean mask of shape {w.shape} (like w), got {keep.shape}")
    P = ~keep
    if not P.any():
        return 0.0
    wP = w[P]
    HPP = H[np.ix_(P, P)]
    if not keep.any():
        return float(0.5 * wP @ HPP @ wP)
    HSS = H[np.ix_(keep, keep)]
    HSP = H[np.ix_(keep, P)]
    x = np.linalg.solve(HSS, HSP @ wP)
    return float(0.5 * (wP @ HPP @ wP - (HSP @ wP) @ x))


def _largest_holding(holds, D: int) -> int:
    """Largest ``k`` in [0, D] with ``holds(k)`` for a monotone predicate true at 0 (bisection)."""
    return D if holds(D) else last_true(holds, 0, D)


def quadratic_thresholds(H: np.ndarray, w: np.ndarray, eps: float) -> dict:
    """Exact thresholds over the magnitude supports of ``w*``:

    - ``oneshot``: largest ``k/D`` with ``L(w^(j)) ≤ ε`` for all ``j ≤ k`` (first crossing);
      ``oneshot_last``: largest ``k/D`` with ``L(w^(k)) ≤ ε`` (they differ only if the one-shot
      loss is not monotone along the magnitude path);
    - ``refit``: largest ``k/D`` with ``min_{v: v_P=0} L(v) ≤ ε`` on the magnitude support
      (monotone: the supports are nested), by bisection on ``k`` with :func:`schur_refit_loss`.
    """
    H, w = _check_problem(H, w)
    eps = check_float(eps, "eps", minimum=0.0)
    D = w.size
    losses = quadratic_oneshot_losses(H, w)
    ok = losses <= eps
    first_fail = int(np.argmin(ok)) if not ok.all() else D + 1
    k_one = first_fail - 1
    k_last = int(np.nonzero(ok)[0].max())
    order = magnitude_order(w)

    def refit_holds(k: int) -> bool:
        keep = np.ones(D, dtype=bool)
        keep[order[:k]] = False
        return schur_refit_loss(H, w, keep) <= eps

    k_ref = _largest_holding(refit_holds, D)
    return {"oneshot": k_one / D, "oneshot_last": k_last / D, "refit": k_ref / D,
            "oneshot_count": k_one, "refit_count": k_ref, "oneshot_losses": losses}


def brute_force_refit_threshold(H: np.ndarray, w: np.ndarray, eps: float) -> dict:
    """Brute force for tiny ``D`` (≤ 14): for every ``k``, the minimum re-fit loss over ALL
    supports with ``k`` pruned (``C(D, k)`` of them), each minimised directly by least squares
    on ``H^{1/2}`` (a path independent of the Schur formula). Returns the largest ``k/D`` with
    ``min ≤ ε`` (``best``), the per-``k`` minima, the magnitude-support losses by least squares,
    and whether the magnitude support attains the minimum at each ``k``."""
    H, w = _check_problem(H, w)
    eps = check_float(eps, "eps", minimum=0.0)
    D = w.size
    if D > 14:
        raise ValueError(f"brute force over all supports needs D <= 14, got {D}")
    lam, V = np.linalg.eigh(H)
    A = (V * np.sqrt(np.clip(lam, 0, None))) @ V.T  # H^{1/2}
    b = A @ w

    def lsq_loss(keep_idx: tuple[int, ...]) -> float:
        if not keep_idx:
            return float(0.5 * b @ b)
        cols = A[:, list(keep_idx)]
        x, *_ = np.linalg.lstsq(cols, b, rcond=None)
        r = cols @ x - b
        return float(0.5 * r @ r)

    order = magnitude_order(w)
    best_loss, mag_loss, mag_optimal = [], [], []
    for k in range(D + 1):
        m = min(lsq_loss(tuple(sorted(set(range(D)) - set(P)))) for P in itertools.combinations(range(D), k))
        keep_mag = tuple(sorted(order[k:].tolist()))
        ml = lsq_loss(keep_mag)
        best_loss.append(m)
        mag_loss.append(ml)
        mag_optimal.append(bool(ml <= m * (1 + 1e-9) + 1e-15))
    best_ok = np.asarray(best_loss) <= eps
    k_best = int(np.nonzero(best_ok)[0].max())
    mag_ok = np.asarray(mag_loss) <= eps
    k_mag = int(np.nonzero(mag_ok)[0].max())
    return {"best": k_best / D, "magnitude": k_mag / D, "best_loss": best_loss,
            "magnitude_loss": mag_loss, "magnitude_optimal": mag_optimal}
