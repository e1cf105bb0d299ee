"""Monte-Carlo estimators with standard errors: the statistical dimension of a cone from its
projector, the Gaussian width of a set from its support function (THEORY §5); the small-scale
references for the closed forms (``docs/GEOMETRY.md``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._checks import check_callable, check_int, check_seed
from .projectors import ellipsoid_cone_projector

__all__ = ["MCEstimate", "statistical_dimension_mc", "gaussian_width_mc", "ellipsoid_cone_statdim_mc"]


@dataclass(frozen=True)
class MCEstimate:
    """A Monte-Carlo estimate: sample mean ``value``, its standard error ``stderr`` (sample
    standard deviation / sqrt(num_samples)) and the number of samples."""

    value: float
    stderr: float
    num_samples: int

    def __float__(self) -> float:
        return float(self.value)


def _mc(
    values_of: Callable[[np.ndarray], np.ndarray], dim: int, num_samples: int, seed: int, chunk: int
) -> MCEstimate:
    rng = np.random.default_rng(seed)
    vals = np.empty(num_samples)
    for start in range(0, num_samples, chunk):
        n = min(chunk, num_samples - start)
        vals[start : start + n] = values_of(rng.standard_normal((n, dim)))
    if not np.all(np.isfinite(vals)):
        raise ValueError("the sampled values are not all finite (unbounded set or a failing callable)")
    return MCEstimate(float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(num_samples)), num_samples)


def _batch_apply(f: Callable, G: np.ndarray, batched: bool, name: str, out_shape: tuple) -> np.ndarray:
    if batched:
        out = np.asarray(f(G), dtype=np.float64)
    else:
        out = np.array([np.asarray(f(g), dtype=np.float64) for g in G])
    if out.shape != out_shape:
        raise ValueError(f"{name} returned shape {out.shape}, expected {out_shape}")
    return out


def statistical_dimension_mc(
    project: Callable[[np.ndarray], np.ndarray],
    dim: int,
    num_samples: int = 10_000,
    seed: int = 0,
    batched: bool = False,
) -> MCEstimate:
    """Monte-Carlo statistical dimension ``δ(C) = E ‖Π_C(g)‖²``, ``g ~ N(0, I_dim)``, of a closed
    convex cone given its Euclidean projector (Amelunxen et al. 2014, Def. 2.1).

    ``project`` maps a ``(dim,)`` vector to its projection, or, with ``batched=True``, an
    ``(n, dim)`` array to the row-wise projections (all projectors in this module accept both).
    Returns an :class:`MCEstimate` (mean and standard error over ``num_samples`` draws, seeded).
    """
    check_callable(project, "project")
    dim = check_int(dim, "dim", minimum=1)
    num_samples = check_int(num_samples, "num_samples", minimum=2)
    seed = check_seed(seed)

    def values(G: np.ndarray) -> np.ndarray:
        P = _batch_apply(project, G, bool(batched), "project", G.shape)
        return (P**2).sum(axis=1)

    return _mc(values, dim, num_samples, seed, chunk=4096 if batched else 1024)


def gaussian_width_mc(
    support: Callable[[np.ndarray], Any],
    dim: int,
    num_samples: int = 10_000,
    seed: int = 0,
    batched: bool = False,
) -> MCEstimate:
    """Monte-Carlo Gaussian width ``w(T) = E h_T(g)``, ``h_T(g) = sup_{x∈T} ⟨g, x⟩``, of any set
    ``T ⊂ R^dim`` given its support function (THEORY §5).

    ``support`` maps a ``(dim,)`` vector to a number, or with ``batched=True`` an ``(n, dim)``
    array to ``n`` numbers. Translating ``T`` does not change ``w(T)`` but changes the variance:
    centre ``T`` (e.g. at ``w*``) before sampling. Returns an :class:`MCEstimate`.
    """
    check_callable(support, "support")
    dim = check_int(dim, "dim", minimum=1)
    num_samples = check_int(num_samples, "num_samples", minimum=2)
    seed = check_seed(seed)

    def values(G: np.ndarray) -> np.ndarray:
        return _batch_apply(support, G, bool(batched), "support", (G.shape[0],))

    return _mc(values, dim, num_samples, seed, chunk=4096 if batched else 1024)


def ellipsoid_cone_statdim_mc(
    radii: Any, point: Any, num_samples: int = 2000, seed: int = 0
) -> MCEstimate:
    """Exact-projection Monte Carlo for ``δ(cone{x − p : x ∈ E})``, ``E = {x : Σ x_i²/r_i² ≤ 1}``.

    This is the cone whose normalised statistical dimension :func:`projected_width_sq` (``Φ·D``,
    Larsen et al. 2022) approximates by ``Σ r_i² / (‖p‖² + r_i²)``; compare the two to see the
    bias of that approximation (``docs/GEOMETRY.md``). ``radii`` may contain ``inf`` (zero
    curvature: contributes exactly 1 each) and 0; ``point`` must lie outside ``E``.
    Projection: :func:`ellipsoid_cone_projector`. Cost ~``100·(Newton steps)·num_samples·D``.
    """
    project = ellipsoid_cone_projector(radii, point)
    dim = int(np.size(radii))
    return statistical_dimension_mc(project, dim, num_samples, seed, batched=True)
