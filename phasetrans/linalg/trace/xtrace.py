"""The XTrace trace estimator (exchangeable: every test vector is used for both parts).

E. N. Epperly, J. A. Tropp, R. J. Webber, "XTrace: making the most of every sample in stochastic
trace estimation", SIAM J. Matrix Anal. Appl. 45(1), 2024.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..density import Estimate
from ..operator import Operator, apply, guard
from ..probes import rademacher
from .arguments import check_trace_arguments

__all__ = ["xtrace", "xtrace_estimates"]

_F64 = torch.float64


def xtrace(H: Any, num_matvecs: int = 100, seed: int = 0, block_size: int | None = None) -> Estimate:
    """The mean over the ``m = num_matvecs // 2`` Rademacher test vectors of the leave-one-out
    estimates ``tr(Q_iᵀHQ_i) + ω_iᵀ(I − Q_iQ_iᵀ)H(I − Q_iQ_iᵀ)ω_i``, ``Q_i = orth(H Ω_{−i})``
    (:func:`xtrace_estimates`); stderr = their std / sqrt(m) (its built-in error estimate).
    Products ``block_size`` columns at a time (default: all at once, two data passes)."""
    op, num_matvecs, seed, block_size = check_trace_arguments(H, num_matvecs, seed, block_size,
                                                               4, "xtrace")
    with guard(op):
        m = num_matvecs // 2
        est = xtrace_estimates(op, rademacher(op.dim, m, seed, op.device, "num_matvecs"), block_size)
        return Estimate(float(est.mean()), float(est.std(correction=1)) / math.sqrt(m))


def xtrace_estimates(op: Operator, Omega: torch.Tensor, block_size: int | None) -> torch.Tensor:
    """The ``m`` leave-one-out estimates of XTrace (Epperly, Tropp & Webber 2024).

    ``t_i = tr(Q_iᵀ H Q_i) + ω_iᵀ (I − Q_i Q_iᵀ) H (I − Q_i Q_iᵀ) ω_i`` with ``Q_i`` an
    orthonormal basis of ``range(H Ω_{−i})``. With ``Y = HΩ = Q C`` (``Q`` orthonormal, rank ``r``)
    each ``Q_i = Q U_i`` lies in ``range(Q)``, so only ``H Q`` is needed (``m + r`` products); for
    ``r = m``, ``U_i U_iᵀ = I − s_i s_iᵀ`` with ``s_i ∝ C^{−T} e_i`` (their rank-one down-date).
    """
    m = Omega.shape[1]
    Y = apply(op, Omega, block_size, where="trace: xtrace sketch products")
    Q0, R0 = torch.linalg.qr(Y)
    U, sig, Vt = torch.linalg.svd(R0)
    eps = max(torch.finfo(op.dtype).eps, torch.finfo(_F64).eps)
    thresh = float(sig.max()) * 10 * eps * math.sqrt(max(m, 1)) if sig.numel() else 0.0
    r = int((sig > thresh).sum())
    full = r == m and R0.shape[0] == m
    if full:
        Q, C = Q0, R0
    else:
        Q, C = Q0 @ U[:, :r], sig[:r, None] * Vt[:r]
    Z = apply(op, Q, block_size, where="trace: xtrace basis products") if r > 0 else torch.zeros_like(Q)
    Hm = Q.T @ Z
    Hm = 0.5 * (Hm + Hm.T)
    W = Q.T @ Omega  # (r, m)
    T = Z.T @ Omega  # (r, m)
    d = (Omega * Y).sum(0)
    trH = torch.trace(Hm)
    if full:
        S = torch.linalg.solve_triangular(C, torch.eye(m, dtype=_F64, device=C.device), upper=True).T
        S = S / torch.linalg.vector_norm(S, dim=0)
        MW = W - S * (S * W).sum(0)
        tr_i = trH - (S * (Hm @ S)).sum(0)
    else:
        MW = torch.empty_like(W)
        tr_i = torch.empty(m, dtype=_F64, device=W.device)
        for i in range(m):
            Ci = torch.cat([C[:, :i], C[:, i + 1 :]], 1)
            Ui, si, _ = torch.linalg.svd(Ci, full_matrices=False)
            Ui = Ui[:, si > thresh]
            MW[:, i] = Ui @ (Ui.T @ W[:, i])
            tr_i[i] = torch.trace(Ui.T @ Hm @ Ui)
    quad = d - (T * MW).sum(0) - (C * MW).sum(0) + (MW * (Hm @ MW)).sum(0)
    return tr_i + quad
