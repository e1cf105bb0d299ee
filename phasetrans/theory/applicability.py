"""Does the paper's prediction describe one-shot pruning of *this* network? (THEORY §7)

The prediction ``s*`` (root of ``s = Φ(R(s))``, Zhang, Zhang, Sun, Liu, NeurIPS 2024) is a
statement about the sublevel set ``S(ε) = {w : L(w) ≤ L(w*) + ε}``: some ``s*``-sparse point lies
in it. The one-shot measurement uses one particular point, the magnitude-pruned ``w^(s*)``.
The two agree when ``w^(s*)`` itself is (to second order) still in ``S(ε)``. Along the actual
pruning direction ``δ(s) = w^(s) − w*`` (``−w*_i`` on the ``⌈sD⌉`` smallest ``|w*_i|``, else 0)::

    ΔL₂(s) = gᵀδ(s) + ½ δ(s)ᵀ H δ(s),        g = ∇L(w*), H = ∇²L(w*)

- first order: at a stationary point of ``L + λ‖w‖₁`` (l1 training, LOMP) ``g_i = −λ sign(w_i)``
  on the non-zero weights, so ``gᵀδ(s) = λ ‖w*_P‖₁`` (the l1 mass pruned, times λ);
- second order: the curvature *along the magnitude direction*, not the random direction the
  width formula Φ assumes (small weights sit in flat directions when l1 put them there).

The signal is ``ratio = ΔL₂(s*)/ε``; ``applies = ratio ≤ max_ratio`` (calibrated on the study,
docs/ONESHOT.md: ``max_ratio = 1.5``). Cost: one gradient pass and one Hessian column. Reported
with it: the near-zero spike mass of ``|w|`` and the l1 strength the gradient implies
(``λ̂ = median over kept weights of −g_i sign(w_i)``), which say *why* it fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._checks import check_float
from ..params import pruned_count

__all__ = [
    "MAX_RATIO",
    "Applicability",
    "assess_applicability",
    "implied_l1",
    "pruning_directions",
    "quadratic_path_losses",
    "spike_mass",
]

#: ``applies`` when ``ΔL₂(s*)/ε ≤ MAX_RATIO`` (calibrated on the study, docs/ONESHOT.md).
MAX_RATIO = 1.5


def _flat(w: Any) -> torch.Tensor:
    return torch.as_tensor(w).detach().reshape(-1)


def pruning_directions(weights: Any, sparsities: Any) -> torch.Tensor:
    """``V[:, k] = δ(s_k) = w^(s_k) − w*`` (shape ``(D, K)``, dtype of ``weights``): ``−w*_i`` on
    the ``⌈s_k D⌉`` smallest ``|w*_i|`` (ties by flat index, as the magnitude masks), else 0."""
    w = _flat(weights)
    D = w.numel()
    order = torch.argsort(w.abs(), stable=True)
    counts = [pruned_count(float(s), D) for s in np.atleast_1d(np.asarray(sparsities, dtype=np.float64))]
    V = torch.zeros(D, len(counts), dtype=w.dtype, device=w.device)
    for j, k in enumerate(counts):
        idx = order[:k]
        V[idx, j] = -w[idx]
    return V


def quadratic_path_losses(gradient: Any, H: Any, weights: Any, sparsities: Any) -> tuple[np.ndarray, np.ndarray]:
    """First- and second-order loss change along the pruning path, ``(gᵀδ_k, ½ δ_kᵀHδ_k)`` for
    every ``s_k``, from ONE product ``H @ [δ_1 … δ_K]`` (``H``: anything with ``@`` on a
    ``(D, K)`` block, e.g. a ``HessianOperator`` or a dense matrix). Sum them for ``ΔL₂``; on an
    exactly quadratic loss ``L(w* + δ) − L(w*) = gᵀδ + ½δᵀHδ`` with no remainder."""
    V = pruning_directions(weights, sparsities)
    dtype = getattr(H, "dtype", V.dtype)
    HV = torch.as_tensor(H @ V.to(dtype if isinstance(dtype, torch.dtype) else V.dtype))
    V64, HV64 = V.to(torch.float64).cpu(), HV.to(torch.float64).cpu()
    g64 = _flat(gradient).to(torch.float64).cpu()
    first = (V64.T @ g64).numpy()
    second = 0.5 * (V64 * HV64).sum(0).numpy()
    return first, second


def spike_mass(weights: Any, rel: float = 1e-2) -> float:
    """Fraction of weights with ``|w_i| ≤ rel · RMS(w)``: the near-zero spike l1 training leaves
    (≈ 0.01 without l1, > 0.9 in the paper's regime)."""
    w = _flat(weights).to(torch.float64)
    rms = float(w.pow(2).mean().sqrt()) if w.numel() else 0.0
    return float((w.abs() <= rel * rms).double().mean()) if rms > 0 else 1.0


def implied_l1(gradient: Any, weights: Any, sparsity: float) -> float:
    """``λ̂ = median over the kept weights of −g_i sign(w_i)``: at a stationary point of
    ``L + λ‖w‖₁`` this is λ (the l1 strength the network was trained with, recovered from the
    gradient; ≈ 0 without l1). Kept = all but the ``⌈sD⌉`` smallest."""
    w, g = _flat(weights).to(torch.float64).cpu(), _flat(gradient).to(torch.float64).cpu()
    k = pruned_count(float(sparsity), w.numel())
    kept = torch.argsort(w.abs(), stable=True)[k:]
    kept = kept[w[kept] != 0]
    return float(torch.median(-g[kept] * torch.sign(w[kept]))) if kept.numel() else 0.0


@dataclass(frozen=True)
class Applicability:
    """The applicability test at the paper's ``s*``: ``applies`` (``ratio ≤ max_ratio``),
    ``ratio = ΔL₂(s*)/ε``, ``first_order = gᵀδ``, ``second_order = ½δᵀHδ``, ``spike_mass``,
    ``implied_l1``, ``warnings`` (plain sentences: why not, what to use instead)."""

    applies: bool
    ratio: float
    first_order: float
    second_order: float
    eps: float
    sparsity: float
    spike_mass: float
    implied_l1: float
    max_ratio: float = MAX_RATIO
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"applies": self.applies, "ratio": self.ratio, "first_order": self.first_order,
                "second_order": self.second_order, "eps": self.eps, "sparsity": self.sparsity,
                "spike_mass": self.spike_mass, "implied_l1": self.implied_l1,
                "max_ratio": self.max_ratio, "warnings": list(self.warnings)}


def _warnings(applies: bool, ratio: float, sparsity: float, spike: float, lam: float) -> tuple[str, ...]:
    if applies:
        return ()
    out = [
        f"The paper's prediction does not describe one-shot pruning of this network: pruning to "
        f"s* = {sparsity:.3f} raises the training loss by about {ratio:.1f} ε (second-order model "
        f"along the pruning direction), so the pruned network leaves the sublevel set S(ε) the "
        f"prediction is about.",
        "Read s* as an existence limit (prune, then re-fit on the kept weights); for the sparsity "
        "of pruning without fine-tuning use pt.predict_oneshot (training data only) or measure it "
        "with pt.find_threshold.",
    ]
    if spike < sparsity - 0.05:
        out.append(
            f"Only {100 * spike:.0f}% of the weights sit near zero but s* prunes {100 * sparsity:.0f}%: "
            f"the network was not trained into the paper's regime (strong l1; implied l1 strength "
            f"{lam:.2g}).")
    return tuple(out)


def assess_applicability(first_order: float, second_order: float, eps: float, sparsity: float,
                         spike: float, lam: float, max_ratio: float = MAX_RATIO) -> Applicability:
    """:class:`Applicability` from the two terms of ``ΔL₂(s*)`` and ε (see the module)."""
    eps = check_float(eps, "eps", minimum=0.0, strict_minimum=True)
    max_ratio = check_float(max_ratio, "max_ratio", minimum=0.0, strict_minimum=True)
    ratio = (float(first_order) + float(second_order)) / eps
    applies = bool(math.isfinite(ratio) and ratio <= max_ratio)
    return Applicability(applies, ratio, float(first_order), float(second_order), eps, float(sparsity),
                         float(spike), float(lam), max_ratio, _warnings(applies, ratio, sparsity, spike, lam))
