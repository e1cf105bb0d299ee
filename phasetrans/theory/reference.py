"""The published pipeline, emulated: a separate code path on purpose (QiaozheZhang/Global-One-shot-
Pruning, the reference code of Zhang, Zhang, Sun, Liu, NeurIPS 2024, ``density_plot.py`` and
``cal_rate.py``), so that the exact solve (:mod:`.critical`) can be compared with what the paper
computed: a grid-smoothed density, Φ at integer radii and a grid of 1000 sparsities instead of the
exact root. ``critical_sparsity(..., reference_emulation=True)`` runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .magnitude import MagnitudeCurve
from .spectrum import Spectrum
from .width import Negative, Phi

__all__ = ["ReferenceSolution", "reference_density", "reference_pipeline"]


@dataclass(frozen=True)
class ReferenceSolution:
    """What the published pipeline answers: the ratio ``sparsity`` it picks, its pruning distance
    ``radius``, its Φ curve at the integer radii ``radii`` (``phi``; ``magnitude_sparsity`` the
    magnitude curve read at those radii) and ``details`` (the rounded radius, the grids)."""

    sparsity: float
    radius: float
    radii: np.ndarray
    phi: np.ndarray
    magnitude_sparsity: np.ndarray
    details: dict = field(default_factory=dict)


def reference_density(spec: Spectrum, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference ``density_generate``: every probe's nodes smoothed by a Gaussian of variance
    ``1e-10 · max(1, λmax − λmin)`` onto ``num_bins`` grid points over
    ``[mean_k min θ − 0.01, mean_k max θ + 0.01]``, averaged over probes. The kernel is narrower
    than the grid step, so a node's mass lands on the grid only through the one or two grid
    points near it, reweighted by where it falls (and vanishes when none is within ~38 σ)."""
    mins, maxs = [], []
    for k in range(spec.num_probes):
        live = spec.nodes[k][spec.masses[k] > 0]
        mins.append(live.min())
        maxs.append(live.max())
    lmax = float(np.mean(maxs)) + 0.01
    lmin = float(np.mean(mins)) - 0.01
    grid = np.linspace(lmin, lmax, num_bins)
    var = 1e-10 * max(1.0, lmax - lmin)
    dx = grid[1] - grid[0]
    reach = math.sqrt(2.0 * 750.0 * var)  # exp underflows to 0 beyond this in float64
    density = np.zeros(num_bins)
    norm = 1.0 / math.sqrt(2.0 * math.pi * var)
    for k in range(spec.num_probes):
        for theta, tau in zip(spec.nodes[k], spec.masses[k]):
            if tau == 0:
                continue
            i0 = max(0, int(math.floor((theta - reach - lmin) / dx)))
            i1 = min(num_bins, int(math.ceil((theta + reach - lmin) / dx)) + 1)
            if i1 <= i0:
                continue
            x = grid[i0:i1]
            density[i0:i1] += tau * np.exp(-((x - theta) ** 2) / (2.0 * var)) * norm
    density /= spec.num_probes
    total = density.sum() * dx
    if total > 0:
        density = density / total
    return grid, density


def _reference_phi(spec: Spectrum, eps: float, p0: float, negative: Negative,
                   num_bins: int) -> tuple[Phi, bool, int]:
    """Steps (1)–(2) of :func:`reference_pipeline`: Φ of the grid-smoothed density (exact
    eigenvalues: no smoothing needed), zero-density grid points dropped, the zero mass ``p0`` as
    a node at 1e-30; returns ``(Φ, smoothed, grid points kept)``."""
    if spec.kind == "eigenvalues":
        grid, density = spec.nodes[0], spec.masses[0]  # exact eigenvalues: no smoothing needed
        smoothed = False
    else:
        grid, density = reference_density(spec, num_bins)
        smoothed = True
    keep = density > 0
    grid, density = grid[keep], density[keep]
    if p0 > 0:
        grid = np.append(grid, 1e-30)
        density = np.append(density, p0 / (1.0 - p0) * density.sum())
    return Phi(grid, density / density.sum(), eps, 0.0, negative), smoothed, int(grid.size)


def _ratio_counts(mag: MagnitudeCurve, ratios: np.ndarray) -> np.ndarray:
    """Step (3) of :func:`reference_pipeline`: how many weights the reference prunes at each ratio
    ``s``: every ``|w| ≤`` the ``max(1, ⌈sD⌉)``-th smallest magnitude (ties pruned together)."""
    sorted_abs = mag.sorted_abs
    D = mag.dim
    counts = np.empty(ratios.size, dtype=np.int64)
    for i, s in enumerate(ratios):
        n = max(1, int(np.ceil(s * float(D))))
        threshold = sorted_abs[n - 1]
        counts[i] = int(torch.searchsorted(sorted_abs, threshold.reshape(1), right=True).item())
    return counts


def reference_pipeline(mag: MagnitudeCurve, spec: Spectrum, eps: float, p0: float,
                       negative: Negative, num_ratios: int = 1000,
                       num_bins: int = 100_000) -> ReferenceSolution:
    """The published pipeline (QiaozheZhang/Global-One-shot-Pruning: ``density_plot.py``,
    ``cal_rate.py``): (1) grid-smoothed density (:func:`reference_density`), grid points of zero
    density dropped, a node at 1e-30 of mass ``p0/(1 − p0)`` of the rest appended; (2) Φ at the
    integers ``R = 0, 1, …``; (3) for the ratios ``s_i = i/1000`` (``i < 1000``): prune every
    ``|w| ≤`` the ``max(1, ⌈s_i D⌉)``-th smallest magnitude, take ``R_i`` rounded to an integer,
    and return the ``s_i`` minimising ``|Φ(round(R_i)) − s_i|``.

    ``mag`` must keep its sorted magnitudes (``MagnitudeCurve(..., keep_sorted=True)``)."""
    phi, smoothed, grid_points = _reference_phi(spec, eps, p0, negative, num_bins)
    ratios = np.arange(num_ratios) / num_ratios
    R = mag.radius_at_count(_ratio_counts(mag, ratios))
    R_int = np.round(R).astype(np.int64)
    gw = np.asarray(phi(np.arange(int(R_int.max()) + 1, dtype=np.float64)))
    gaps = np.abs(gw[R_int] - ratios)
    i = int(np.argmin(gaps))
    radii = np.arange(gw.size, dtype=np.float64)
    return ReferenceSolution(
        sparsity=float(ratios[i]), radius=float(R[i]), radii=radii, phi=gw,
        magnitude_sparsity=np.asarray(mag.sparsity_at_radius(radii)),
        details={"rounded_radius": int(R_int[i]), "num_ratios": num_ratios,
                 "num_bins": num_bins if smoothed else None, "grid_points_kept": grid_points,
                 "ratios": ratios, "ratio_radii": R, "ratio_phi": gw[R_int]},
    )
