"""M-FAC: the matrix-free inverse of a damped empirical Fisher built from ``m`` gradients.

Frantar, Kurtic, Alistarh, "M-FAC: Efficient matrix-free approximations of second-order
information", NeurIPS 2021 (reference code github.com/IST-DASLab/M-FAC, ``prun.py``, the static
algorithm ``HInvFastSwap``). For gradients ``g_1 … g_m ∈ R^d`` and damping ``λ > 0``

    F = λI + (1/m) Σ_i g_i g_iᵀ,   F_0 = λI,   F_i = F_{i-1} + (1/m) g_i g_iᵀ,

and by Sherman–Morrison (the paper's recursive Woodbury construction)

    F_i⁻¹ = F_{i-1}⁻¹ − v_i v_iᵀ / (m + g_iᵀ v_i),   v_i = F_{i-1}⁻¹ g_i,

so with ``d_i = m + g_iᵀ v_i`` and the ``v_i`` computed once (``O(d m²)``):

    F⁻¹ x = x/λ − Σ_i v_i (v_iᵀ x) / d_i          (O(d m) per product)
    [F⁻¹]_qq = 1/λ − Σ_i v_i[q]² / d_i               (the diagonal, O(d m))
    v_i = g_i/λ − Σ_{j<i} v_j (v_jᵀ g_i) / d_j.

Exact in exact arithmetic (no approximation besides the empirical Fisher itself); the full
(unblocked) variant is implemented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..._checks import check_float

__all__ = ["MFACInverse"]


@dataclass(frozen=True, eq=False)
class MFACInverse:
    """``F⁻¹`` for ``F = λI + (1/m) Σ g_i g_iᵀ`` in M-FAC's form: ``basis`` rows ``v_i``,
    ``denominators`` ``d_i``, ``damp`` ``λ``. Build with :meth:`from_gradients`."""

    damp: float
    basis: torch.Tensor
    denominators: torch.Tensor

    @classmethod
    def from_gradients(cls, gradients: Any, damp: float = 1e-5) -> MFACInverse:
        """From the ``(m, d)`` matrix of gradients (rows ``g_i``) and ``damp = λ > 0``."""
        if not isinstance(gradients, torch.Tensor) or not gradients.is_floating_point():
            raise TypeError(
                f"gradients must be a floating (m, d) tensor, got {type(gradients).__name__}"
            )
        if gradients.dim() != 2 or gradients.shape[0] == 0 or gradients.shape[1] == 0:
            raise ValueError(f"gradients must be a non-empty (m, d) matrix, got {tuple(gradients.shape)}")
        if not bool(torch.isfinite(gradients).all()):
            raise ValueError("gradients contain inf or NaN")
        damp = check_float(damp, "damp", minimum=0.0, strict_minimum=True)
        m = gradients.shape[0]
        basis = torch.empty_like(gradients)
        denominators = torch.empty(m, dtype=gradients.dtype, device=gradients.device)
        for i in range(m):
            g = gradients[i]
            v = g / damp
            if i:
                v = v - ((basis[:i] @ g) / denominators[:i]) @ basis[:i]
            basis[i] = v
            denominators[i] = m + g @ v
        return cls(damp, basis, denominators)

    @property
    def dim(self) -> int:
        """``d``, the number of weights."""
        return int(self.basis.shape[1])

    @property
    def count(self) -> int:
        """``m``, the number of gradients."""
        return int(self.basis.shape[0])

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``F⁻¹ x`` for ``x`` of shape ``(d,)`` or ``(d, k)`` (``O(d m)`` per column)."""
        if not isinstance(x, torch.Tensor) or x.shape[:1] != (self.dim,) or x.dim() > 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape ({self.dim},) or ({self.dim}, k), got {shape}")
        x = x.to(self.basis.dtype)
        coef = (self.basis @ x) / (
            self.denominators if x.dim() == 1 else self.denominators[:, None]
        )
        return x / self.damp - self.basis.T @ coef

    def diagonal(self) -> torch.Tensor:
        """``diag(F⁻¹)``: ``1/λ − Σ_i v_i² / d_i``."""
        return 1.0 / self.damp - (self.basis.square() / self.denominators[:, None]).sum(0)

    def submatrix(self, index: torch.Tensor) -> torch.Tensor:
        """``[F⁻¹]_QQ`` for the flat indices ``Q`` (``O(m |Q|²)``)."""
        v = self.basis[:, index]
        eye = torch.eye(v.shape[1], dtype=v.dtype, device=v.device)
        return eye / self.damp - v.T @ (v / self.denominators[:, None])
