"""The result of stochastic Lanczos quadrature, and scalar estimates with their error.

:class:`SpectralDensity` holds, per probe, the Gauss quadrature rule of the spectral measure
``μ_q = Σ_i (q·u_i)² δ_{λ_i}`` (Golub & Meurant 2010); its views (``expect``, ``trace``,
``density``) average them over the probes (Ubaru, Chen & Saad 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from .._checks import check_callable, check_float, check_int

__all__ = ["Estimate", "SpectralDensity"]

_F64 = torch.float64


class Estimate(NamedTuple):
    """A scalar estimate with its standard error (``nan`` when not available)."""

    value: float
    stderr: float

    def __repr__(self) -> str:
        return f"Estimate(value={self.value:.6g}, stderr={self.stderr:.3g})"


def _as_grid(grid: Any) -> torch.Tensor:
    if isinstance(grid, np.ndarray):
        grid = torch.from_numpy(grid)
    elif isinstance(grid, (list, tuple, float, int)):
        grid = torch.tensor(grid, dtype=_F64)
    if not isinstance(grid, torch.Tensor):
        raise TypeError(f"grid must be a tensor, array or list of numbers, got {type(grid).__name__}")
    grid = grid.detach().to(device="cpu", dtype=_F64)
    if not torch.isfinite(grid).all():
        raise ValueError("grid must be finite")
    return grid


class SpectralDensity:
    """Result of :func:`slq`: Gauss quadrature rules of the spectral measure seen by each probe.

    For probe ``k`` (unit vector ``q_k``) and node ``j``: ``nodes[k, j] = θ_jk`` (Ritz values,
    ascending) and ``weights[k, j] = τ_jk`` (squared first components of the tridiagonal
    eigenvectors), so that ``Σ_j τ_jk θ_jk^p = q_kᵀ H^p q_k`` exactly for ``p < 2·length_k``
    (Golub & Meurant). Both float64, shape ``(num_probes, num_steps)``; each weights row sums to 1.

    Padding: a probe whose Lanczos run broke down after ``lengths[k] < num_steps`` steps (``dim <
    num_steps`` or an invariant subspace) has weight 0 in its remaining columns and its nodes
    there repeat its last (largest) node, so the padding changes no estimate.
    """

    def __init__(
        self,
        nodes: torch.Tensor,
        weights: torch.Tensor,
        dim: int,
        lengths: torch.Tensor | None = None,
    ):
        nodes = torch.as_tensor(nodes, dtype=_F64).cpu()
        weights = torch.as_tensor(weights, dtype=_F64).cpu()
        if nodes.dim() != 2 or nodes.shape != weights.shape or nodes.numel() == 0:
            raise ValueError(
                f"nodes and weights must be non-empty 2-D and of one shape, got "
                f"{tuple(nodes.shape)} and {tuple(weights.shape)}"
            )
        if not (torch.isfinite(nodes).all() and torch.isfinite(weights).all()):
            raise ValueError("nodes and weights must be finite")
        if bool((weights < 0).any()) or not bool((weights.sum(1) > 0).all()):
            raise ValueError("weights must be non-negative with a positive sum in every row (probe)")
        self.nodes = nodes
        self.weights = weights
        self.dim = check_int(dim, "dim", minimum=1)
        if lengths is None:
            lengths = torch.full((nodes.shape[0],), nodes.shape[1], dtype=torch.int64)
        lengths = torch.as_tensor(lengths).cpu()
        if (
            lengths.shape != (nodes.shape[0],)
            or lengths.is_floating_point()
            or bool((lengths < 1).any())
            or bool((lengths > nodes.shape[1]).any())
        ):
            raise ValueError(
                f"lengths must hold one integer in [1, {nodes.shape[1]}] per probe "
                f"({nodes.shape[0]}), got {lengths.tolist()}"
            )
        self.lengths = lengths.to(torch.int64)

    @property
    def num_probes(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.nodes.shape[1])

    def expect(self, f: Callable[[torch.Tensor], torch.Tensor]) -> Estimate:
        """Estimate of ``(1/D) tr f(H)``: mean over probes of ``Σ_j τ_jk f(θ_jk)``, standard error
        = standard deviation over probes / sqrt(K) (``nan`` for one probe). ``f`` is applied to a
        float64 tensor of nodes, elementwise; padded nodes (weight 0) are ignored."""
        check_callable(f, "f")
        values = torch.as_tensor(f(self.nodes.clone()), dtype=_F64)
        if values.shape != self.nodes.shape:
            raise ValueError(
                f"f must act elementwise: got shape {tuple(values.shape)} for nodes of shape "
                f"{tuple(self.nodes.shape)}"
            )
        per_probe = torch.where(self.weights > 0, self.weights * values, 0.0).sum(1)
        stderr = (
            float(per_probe.std(correction=1)) / math.sqrt(self.num_probes)
            if self.num_probes > 1
            else math.nan
        )
        return Estimate(float(per_probe.mean()), stderr)

    def trace(self) -> Estimate:
        """Estimate of ``tr H = D · (1/D) tr H``."""
        e = self.expect(lambda x: x)
        return Estimate(self.dim * e.value, self.dim * e.stderr)

    def default_bandwidth(self) -> float:
        """``0.01 · (θ_max − θ_min)`` over the nodes with positive weight (``1e-3 · max(|θ|, 1)``
        when all nodes coincide)."""
        live = self.nodes[self.weights > 0]
        spread = float(live.max() - live.min())
        if spread > 0:
            return 0.01 * spread
        return 1e-3 * max(float(live.abs().max()), 1.0)

    def density(self, grid: Any, bandwidth: float | None = None) -> torch.Tensor:
        """Smoothed spectral density on ``grid`` (a view of the quadrature, never the stored result):
        ``φ(t) = (1/K) Σ_k Σ_j τ_jk N(t; θ_jk, σ²)``, Gaussian kernel of width ``σ = bandwidth``
        (default :meth:`default_bandwidth`). Integrates to 1; float64, shape of ``grid``."""
        grid = _as_grid(grid)
        if bandwidth is None:
            bandwidth = self.default_bandwidth()
        sigma = check_float(bandwidth, "bandwidth", minimum=0.0, strict_minimum=True)
        t = grid.reshape(-1, 1)
        mask = self.weights.flatten() > 0
        theta = self.nodes.flatten()[mask]
        tau = self.weights.flatten()[mask] / self.num_probes
        out = torch.zeros(t.shape[0], dtype=_F64)
        for start in range(0, t.shape[0], 4096):
            z = (t[start : start + 4096] - theta) / sigma
            out[start : start + 4096] = (torch.exp(-0.5 * z * z) * tau).sum(1)
        return (out / (sigma * math.sqrt(2 * math.pi))).reshape(grid.shape)

    def plot(
        self,
        ax: Any = None,
        grid: Any = None,
        bandwidth: float | None = None,
        log: bool = True,
        num_points: int = 1000,
        **kwargs: Any,
    ):
        """Plot the smoothed density over the signed spectrum; returns the matplotlib axes.

        ``log=True`` uses a log-scale density axis (floored at 1e-12 of the peak); ``grid``
        defaults to ``num_points`` points over ``[θ_min − 5σ, θ_max + 5σ]``; ``kwargs`` go to
        ``ax.plot``. Drawn by :func:`phasetrans.plots.plot_spectrum` (the density line only).
        """
        from ..report.plots import plot_spectrum

        if not isinstance(log, bool):
            raise TypeError(f"log must be a bool, got {type(log).__name__}")
        num_points = check_int(num_points, "num_points", minimum=2)
        if bandwidth is None:
            bandwidth = self.default_bandwidth()
        sigma = check_float(bandwidth, "bandwidth", minimum=0.0, strict_minimum=True)
        if grid is None:
            live = self.nodes[self.weights > 0]
            grid = torch.linspace(
                float(live.min()) - 5 * sigma, float(live.max()) + 5 * sigma, num_points, dtype=_F64
            )
        grid = _as_grid(grid)
        fig = plot_spectrum(self, ax=ax, grid=grid, bandwidth=sigma, log=log, marks=False,
                            pyplot=True, **kwargs)
        return ax if ax is not None else fig.axes[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (lists of floats); inverse :meth:`from_dict`."""
        return {
            "nodes": self.nodes.tolist(),
            "weights": self.weights.tolist(),
            "dim": self.dim,
            "lengths": self.lengths.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpectralDensity:
        """The density of :meth:`to_dict`, or of what the tool wrote around it: a dict with the
        density under ``"spectrum"`` (``spectrum.json`` of ``phasetrans spectrum``,
        ``Prediction.to_dict()``, ``prediction.json``; ``dim`` taken from the outer dict when the
        inner one lacks it)."""
        if not isinstance(d, dict):
            raise TypeError(f"d must be a dict, got {type(d).__name__}")
        if "nodes" not in d and isinstance(d.get("spectrum"), dict):
            d = {"dim": d.get("dim"), **d["spectrum"]} if "dim" in d else d["spectrum"]
        missing = {"nodes", "weights", "dim"} - d.keys()
        if missing:
            raise ValueError(f"d is missing keys {sorted(missing)}")
        arrays = {}
        for key, dtype in (("nodes", _F64), ("weights", _F64), ("lengths", torch.int64)):
            if key == "lengths" and d.get(key) is None:
                arrays[key] = None
                continue
            try:
                arrays[key] = torch.tensor(d[key], dtype=dtype)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"d[{key!r}] must be a nested list of numbers: {exc}") from None
        return cls(arrays["nodes"], arrays["weights"], d["dim"], arrays["lengths"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpectralDensity):
            return NotImplemented
        return (
            self.dim == other.dim
            and torch.equal(self.nodes, other.nodes)
            and torch.equal(self.weights, other.weights)
            and torch.equal(self.lengths, other.lengths)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        live = self.nodes[self.weights > 0]
        return (
            f"SpectralDensity(dim={self.dim}, num_probes={self.num_probes}, "
            f"num_steps={self.num_steps}, nodes in [{float(live.min()):.4g}, "
            f"{float(live.max()):.4g}])"
        )
