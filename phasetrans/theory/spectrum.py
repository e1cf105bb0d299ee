"""The Hessian spectrum as a quadrature: nodes and masses per probe, parsed from an SLQ
``SpectralDensity``, all ``D`` exact eigenvalues, or a ``(nodes, masses)`` pair (THEORY §2).

With SLQ (``K`` probes, ``m`` Lanczos steps) the Ritz values ``θ_jk`` with weights ``τ_jk`` give
``(1/K) Σ_k Σ_j τ_jk f(θ_jk) ≈ (1/D) Tr f(H)``; with exact eigenvalues every ``λ_i`` has mass ``1/D``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["Spectrum", "SpectrumKind", "parse_spectrum", "to_numpy"]

#: Where a :class:`Spectrum` came from.
SpectrumKind = Literal["slq", "eigenvalues", "density"]


def to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 array: ``TypeError`` if not real numbers, ``ValueError`` if not finite."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor")
        x = x.detach().cpu().to(torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like of real numbers, got {type(x).__name__}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return arr


@dataclass(frozen=True)
class Spectrum:
    """Per-probe quadrature: ``nodes``/``masses`` of shape (K, m), each mass row summing to 1."""

    nodes: np.ndarray
    masses: np.ndarray
    kind: SpectrumKind
    dim: int | None
    source: Any = None

    @property
    def num_probes(self) -> int:
        return int(self.nodes.shape[0])

    def pooled(self, probes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All probes' nodes and masses in one quadrature (masses divided by the probe count), or
        those of the probe indices ``probes`` (with repeats: a bootstrap resample)."""
        nodes, masses = (self.nodes, self.masses) if probes is None else (
            self.nodes[probes], self.masses[probes]
        )
        return nodes.reshape(-1), masses.reshape(-1) / nodes.shape[0]


def parse_spectrum(spectrum: Any, dim: int | None) -> Spectrum:
    """The per-probe quadrature of ``spectrum``, checked against ``D = dim`` (``None``: unchecked).

    A ``SpectralDensity`` (SLQ ``nodes``/``weights`` of shape (K, m), each row summing to 1; its
    ``dim`` must be ``D``), a ``(nodes, masses)`` pair (a discrete density, masses normalised) or
    a 1-D array of all ``D`` eigenvalues (each weighted ``1/D``).
    """
    if hasattr(spectrum, "nodes") and hasattr(spectrum, "weights"):
        nodes = to_numpy(spectrum.nodes, "spectrum.nodes")
        weights = to_numpy(spectrum.weights, "spectrum.weights")
        if nodes.shape != weights.shape or nodes.ndim not in (1, 2):
            raise ValueError(
                "spectrum.nodes and spectrum.weights must have the same shape (num_probes, "
                f"num_steps), got {nodes.shape} and {weights.shape}"
            )
        if nodes.ndim == 1:
            nodes, weights = nodes[None, :], weights[None, :]
        if nodes.size == 0:
            raise ValueError("spectrum must be non-empty, got no nodes")
        if np.any(weights < -1e-12):
            raise ValueError("spectrum.weights must be non-negative")
        weights = np.clip(weights, 0.0, None)
        sums = weights.sum(axis=1)
        if np.any(np.abs(sums - 1.0) > 1e-6):
            raise ValueError(
                f"each row of spectrum.weights must sum to 1 (SLQ quadrature), got sums {sums}"
            )
        sdim = getattr(spectrum, "dim", None)
        if sdim is not None and dim is not None and int(sdim) != dim:
            raise ValueError(
                f"spectrum.dim={int(sdim)} does not match the number of weights D={dim}; the "
                f"spectrum must be of the Hessian with respect to exactly these weights"
            )
        return Spectrum(nodes, weights / sums[:, None], "slq", int(sdim) if sdim is not None else dim,
                         spectrum)
    if isinstance(spectrum, tuple) and len(spectrum) == 2:
        nodes = to_numpy(spectrum[0], "spectrum nodes").reshape(-1)
        masses = to_numpy(spectrum[1], "spectrum masses").reshape(-1)
        if nodes.shape != masses.shape or nodes.size == 0:
            raise ValueError(
                "spectrum as a (nodes, masses) pair needs two non-empty arrays of equal length, "
                f"got {nodes.size} and {masses.size}"
            )
        if np.any(masses < 0) or not masses.sum() > 0:
            raise ValueError("spectrum masses must be non-negative with a positive sum")
        return Spectrum(nodes[None, :], (masses / masses.sum())[None, :], "density", dim, spectrum)
    if isinstance(spectrum, (torch.Tensor, np.ndarray, list)):
        eig = to_numpy(spectrum, "spectrum")
        if eig.ndim != 1:
            raise ValueError(
                f"spectrum as eigenvalues must be a 1-D array (all D eigenvalues), got shape {eig.shape}"
            )
        if eig.size == 0:
            raise ValueError("spectrum must be non-empty, got 0 eigenvalues")
        if dim is not None and eig.size != dim:
            raise ValueError(
                f"spectrum has {eig.size} eigenvalues but there are D={dim} weights; pass all D "
                f"eigenvalues (each weighted 1/D), a SpectralDensity, or a (nodes, masses) pair"
            )
        return Spectrum(eig[None, :], np.full((1, eig.size), 1.0 / eig.size), "eigenvalues",
                         eig.size, spectrum)
    raise TypeError(
        "spectrum must be a SpectralDensity (from slq), a 1-D array of all D eigenvalues, or a "
        f"(nodes, masses) pair, got {type(spectrum).__name__}"
    )
