"""Extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation.

Ritz pairs of the Krylov space of one Rademacher vector, extended until converged; errors of
eigenvalues ``O(residual² / gap)`` (Golub & Meurant 2010; Parlett, *The Symmetric Eigenvalue
Problem*, 1998).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from .._checks import check_choice, check_float, check_int, check_seed
from .lanczos import Lanczos, breakdown_tol, tridiag_eigh
from .operator import Operator, apply, as_operator, check_ranks_agree_on, guard
from .probes import rademacher

__all__ = ["top_eigenvalues", "Eigen", "Which"]

Which = Literal["LA", "SA"]


class Eigen(NamedTuple):
    """Ritz pairs: ``values`` (k,), ``vectors`` (dim, k) orthonormal, ``residuals`` (k,) with
    ``residuals[i] = ‖H v_i − θ_i v_i‖``, all float64.

    ``values`` are descending for ``which="LA"`` (largest first) and ascending for ``which="SA"``
    (most negative first); ``vectors[:, i]`` belongs to ``values[i]``.
    """

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor


def top_eigenvalues(
    H: Any,
    k: int = 1,
    seed: int = 0,
    which: Which = "LA",
    num_steps: int | None = None,
    tol: float = 1e-10,
    max_steps: int | None = None,
) -> Eigen:
    """The ``k`` largest (``which="LA"``) or most negative (``"SA"``) eigenpairs of ``H``.

    Lanczos from one Rademacher vector (seeded by ``seed``) with full reorthogonalisation, in
    float64. Starting with ``num_steps`` steps (default ``min(dim, max(2k + 20, 30))``), the Krylov
    space is extended until the ``k`` wanted Ritz pairs ``(θ, v = V_m y)`` converge:
    ``‖Hv − θv‖ ≤ tol' · max(|θ|, ‖T‖)`` with ``tol' = max(tol, √dim · eps(H.dtype))`` (the
    accuracy a float32 operator can deliver), checked first with the Lanczos estimate
    ``β_m |e_mᵀ y|`` and then with true residuals (one more product). Stops at ``max_steps``
    (default ``dim``; the basis costs ``8 · steps · dim`` bytes) with a ``RuntimeWarning`` listing
    the residuals if not converged. An invariant Krylov subspace restarts with a fresh random
    vector, so repeated eigenvalues are found. Eigenvalue errors are ``O(residual² / gap)``.
    Returns :class:`Eigen` (float64, on the CPU): ``values`` descending for ``"LA"``, ascending
    for ``"SA"``.
    """
    op = as_operator(H)
    k = check_int(k, "k", minimum=1, maximum=op.dim)
    seed = check_seed(seed)
    which = check_choice(which, "which", ("LA", "SA"))
    tol = check_float(tol, "tol", minimum=0.0, strict_minimum=True)
    if max_steps is None:
        max_steps = op.dim
    max_steps = check_int(max_steps, "max_steps", minimum=k)
    max_steps = min(max_steps, op.dim)
    if num_steps is None:
        num_steps = min(max_steps, max(2 * k + 20, 30))
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    num_steps = min(num_steps, max_steps)
    tol_eff = max(tol, math.sqrt(op.dim) * torch.finfo(op.dtype).eps)

    check_ranks_agree_on(op, "top_eigenvalues", k=k, seed=seed, which=which, tol=tol,
                         max_steps=max_steps, num_steps=num_steps)
    with guard(op):
        q0 = rademacher(op.dim, 1, seed, op.device)
        lz = Lanczos(op, q0, max_steps, "full", breakdown_tol(op), restart_seed=seed,
                     initial=num_steps)
        lz.run(num_steps)
        while True:
            result = _converged_pairs(op, lz, k, which, tol_eff, max_steps)
            if result is not None:
                values, vectors, residuals = result
                break
            m = int(lz.lengths[0])  # the Krylov dimension checked
            lz.run(m + max(5, m // 10))
    return Eigen(values.cpu(), vectors.cpu(), residuals)


def _converged_pairs(op: Operator, lz: Lanczos, k: int, which: Which, tol_eff: float,
                     max_steps: int):
    """The wanted Ritz pairs ``(values, vectors, residuals)`` of the current Krylov space when
    they have converged (``‖Hv − θv‖ ≤ tol_eff · ‖T‖``: first the Lanczos estimate
    ``β_m |e_mᵀ y|``, then the true residuals, one product), or when the space cannot grow (then
    with a ``RuntimeWarning``); ``None`` to extend it."""
    a, b = lz.tridiagonal(0)
    theta, Yt = tridiag_eigh(a, b)
    m = len(theta)
    sel = np.arange(m)[::-1][:k] if which == "LA" else np.arange(min(k, m))
    norm_T = float(np.abs(theta).max())
    bound = tol_eff * norm_T
    estimate = np.abs(float(lz.last_beta[0]) * Yt[-1, sel])
    if not ((len(sel) == k and np.all(estimate <= bound)) or lz.done):
        return None
    Y = torch.from_numpy(np.ascontiguousarray(Yt[:, sel])).to(op.device)
    vectors = lz.basis[0, :m].T @ Y
    values = torch.from_numpy(np.ascontiguousarray(theta[sel])).to(op.device)
    residuals = torch.linalg.vector_norm(
        apply(op, vectors, where="top_eigenvalues: residual check") - vectors * values, dim=0
    ).cpu()
    if bool((residuals <= bound).all()) and len(sel) == k:
        return values, vectors, residuals
    if lz.done:
        warnings.warn(
            f"top_eigenvalues: {k} Ritz pairs not converged after {m} Lanczos steps "
            f"(max_steps={max_steps}): residuals {residuals.tolist()} vs tolerance "
            f"{bound:.3g}; raise max_steps or tol",
            RuntimeWarning,
            stacklevel=3,
        )
        return values, vectors, residuals
    return None
