"""Predicting the critical sparsity of one-shot magnitude pruning (THEORY §1–3).

The prediction is the root ``s*`` of ::

    s = Φ(R(s)),
    R(s) = sqrt( sum of the ⌈sD⌉ smallest w_i² )                 (exact, from the sorted weights)
    Φ(R) = p0 + (1 − p0) · (1/K) Σ_k Σ_j τ_jk / (1 + |θ_jk| R² / (2ε))   (SLQ nodes θ, weights τ)

(with exact eigenvalues every ``λ_i`` has weight ``1/D``). ``s ↦ s`` increases and
``s ↦ Φ(R(s))`` does not, so the root is unique; it is found by bisection on the *number* of
pruned weights, which makes it exact (no grid of ratios, no rounding of ``R``).

References
- Zhang, Zhang, Sun, Liu, "How Sparse Can We Prune A Deep Network: A Fundamental Limit
  Perspective", NeurIPS 2024, arXiv:2306.05857 (reference code QiaozheZhang/Global-One-shot-Pruning).
- Larsen, Fort, Becker, Ganguli, "How many degrees of freedom do we need to train deep networks:
  a loss landscape perspective", ICLR 2022 (the projected-width formula Φ).
- Amelunxen, Lotz, McCoy, Tropp, "Living on the edge: phase transitions in convex programs with
  random data", Information and Inference 2014 (the kinematic window).
"""

from __future__ import annotations

import json
import math
import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ._bisect import last_true
from ._checks import check_choice, check_float, check_int, check_model, check_seed, preserve_model
from ._io import to_jsonable
from .geometry import kinematic_window, projected_width_sq
from .params import select_parameters
from .pruning import pruned_count

__all__ = [
    "MagnitudeCurve",
    "Curve",
    "Prediction",
    "ZeroMassEstimate",
    "critical_sparsity",
    "predict_sparsity",
    "width_fraction",
    "estimate_zero_mass",
    "batch_loss_std",
]

NEGATIVE_POLICIES = ("abs", "drop", "flat")
_CHUNK = 1 << 22  # elements per float64 cumsum chunk


# ------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------
def _check_eps(eps: Any) -> float:
    return check_float(eps, "eps", minimum=0.0, strict_minimum=True)


def _check_eta(eta: Any) -> float:
    eta = check_float(eta, "eta", minimum=0.0, strict_minimum=True)
    if not eta < 1.0:
        raise ValueError(f"eta must be in (0, 1), got {eta}")
    return eta


def _check_zero_mass(zero_mass: Any, allow_estimate: bool) -> float | str:
    if isinstance(zero_mass, str):
        if zero_mass != "estimate":
            raise ValueError(f"zero_mass must be a number in [0, 1) or 'estimate', got {zero_mass!r}")
        if not allow_estimate:
            raise ValueError(
                "zero_mass='estimate' needs the Hessian: use predict_sparsity(..., "
                "zero_mass='estimate'), or estimate_zero_mass(H) and pass the number"
            )
        return zero_mass
    p0 = check_float(zero_mass, "zero_mass", minimum=0.0)
    if not p0 < 1.0:
        raise ValueError(f"zero_mass must be in [0, 1), got {p0}")
    return p0


def _check_negative(negative: Any) -> str:
    return check_choice(negative, "negative", NEGATIVE_POLICIES)


# ------------------------------------------------------------------------------------------
# R(s): the magnitude curve
# ------------------------------------------------------------------------------------------
def _weights_tensor(weights: Any, params: Any = None) -> torch.Tensor:
    """Flat detached view (tensor/array) or copy (model: the concatenation) of the weights."""
    if isinstance(weights, nn.Module):
        names = select_parameters(weights, params)
        named = dict(weights.named_parameters())
        tensors = [named[n].detach().reshape(-1) for n in names]
        device = tensors[0].device
        dtype = tensors[0].dtype
        for t in tensors[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        flat = torch.cat([t.to(device=device, dtype=dtype) for t in tensors])
    else:
        if params is not None:
            raise ValueError("params is only meaningful when weights is an nn.Module")
        if isinstance(weights, np.ndarray):
            if weights.dtype == object or not np.issubdtype(weights.dtype, np.number):
                raise TypeError(f"weights must be a real numeric array, got dtype {weights.dtype}")
            flat = torch.from_numpy(np.ascontiguousarray(weights)).reshape(-1)
        elif isinstance(weights, torch.Tensor):
            flat = weights.detach().reshape(-1)
        else:
            raise TypeError(
                "weights must be a torch.Tensor, a numpy array or an nn.Module, got "
                f"{type(weights).__name__}"
            )
        if flat.is_complex() or flat.dtype == torch.bool:
            raise TypeError(f"weights must be real numbers, got dtype {flat.dtype}")
        if not flat.is_floating_point():
            flat = flat.to(torch.float64)
    if flat.numel() == 0:
        raise ValueError("weights must be non-empty, got 0 entries")
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("weights must be finite, got NaN or inf entries")
    return flat


class MagnitudeCurve:
    """``R(s)``: distance from ``w*`` to its global one-shot magnitude pruning at sparsity ``s``::

        R(s) = sqrt( Σ_{i ≤ k} w_(i)² ),   k = ⌈sD⌉ (``pruning.pruned_count``), |w_(1)| ≤ |w_(2)| ≤ …

    Built once: ``|w|`` is sorted in the weights' dtype on their device, then squared (exactly:
    the square of a float32 is a float64) and summed cumulatively in float64, chunk by chunk.
    Memory: one copy of ``|w|`` in the weights' dtype (sorted in place with NumPy on the CPU;
    ``torch.sort`` on other devices, which also allocates int64 indices), freed after unless
    ``keep_sorted``, plus the float64 cumulative sums, ``8(D+1)`` bytes (0.8 GB for 10^8
    weights). Every later ``R(s)`` is one index into the cumulative sums.
    """

    def __init__(self, weights: Any, params: Any = None, keep_sorted: bool = False):
        flat = _weights_tensor(weights, params)
        self.dim = int(flat.numel())
        self.device = flat.device
        sorted_abs = flat.abs_() if isinstance(weights, nn.Module) else flat.abs()  # a copy
        if sorted_abs.device.type == "cpu" and sorted_abs.dtype in (
            torch.float16, torch.float32, torch.float64
        ):
            sorted_abs.numpy().sort()  # in place, no index array
        else:
            sorted_abs = torch.sort(sorted_abs).values
        del flat
        cum = torch.empty(self.dim + 1, dtype=torch.float64, device=self.device)
        cum[0] = 0.0
        carry = torch.zeros((), dtype=torch.float64, device=self.device)
        for start in range(0, self.dim, _CHUNK):
            stop = min(self.dim, start + _CHUNK)
            part = sorted_abs[start:stop].to(torch.float64)
            part = torch.cumsum(part * part, dim=0)
            part += carry
            cum[start + 1 : stop + 1] = part
            carry = part[-1]
        self.cumulative = cum
        self._cum_np = cum.numpy() if cum.device.type == "cpu" else None
        self.sorted_abs = sorted_abs if keep_sorted else None

    # -- R at a number of pruned weights / at a sparsity ----------------------------------
    def radius_at_count(self, k: Any) -> Any:
        """``sqrt`` of the sum of the ``k`` smallest squares (``k`` an int or an int array)."""
        if isinstance(k, numbers.Integral):
            if self._cum_np is not None:
                return math.sqrt(self._cum_np[int(k)])
            return math.sqrt(float(self.cumulative[int(k)].item()))
        k = np.asarray(k, dtype=np.int64)
        if self._cum_np is not None:
            return np.sqrt(self._cum_np[k])
        idx = torch.as_tensor(k, device=self.device)
        return np.sqrt(self.cumulative[idx].cpu().numpy())

    def count(self, sparsity: float) -> int:
        """Number of weights pruned at ``sparsity`` (the shared rule ``pruning.pruned_count``)."""
        return pruned_count(sparsity, self.dim)

    def radius(self, sparsity: Any) -> Any:
        """``R(s)`` for a sparsity in [0, 1] (a number, or an array of them)."""
        if np.ndim(sparsity) == 0:
            return self.radius_at_count(self.count(float(sparsity)))
        counts = np.array([self.count(float(s)) for s in np.asarray(sparsity).reshape(-1)])
        return self.radius_at_count(counts).reshape(np.shape(sparsity))

    def sparsity_at_radius(self, R: Any) -> Any:
        """The magnitude curve read the other way: the largest ``k/D`` with ``R_k ≤ R``."""
        R_arr = np.asarray(R, dtype=np.float64)
        cum = self._cum_np if self._cum_np is not None else self.cumulative.cpu().numpy()
        k = np.searchsorted(cum, R_arr**2, side="right") - 1
        out = np.clip(k, 0, self.dim) / self.dim
        return float(out) if out.ndim == 0 else out

    @property
    def norm(self) -> float:
        """``‖w*‖ = R(1)``."""
        return self.radius_at_count(self.dim)

    def __repr__(self) -> str:
        return f"MagnitudeCurve(dim={self.dim}, norm={self.norm:.6g})"


# ------------------------------------------------------------------------------------------
# the spectrum and Φ(R)
# ------------------------------------------------------------------------------------------
def _to_numpy(x: Any, name: str) -> np.ndarray:
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


@dataclass
class _Spectrum:
    """Per-probe quadrature: ``nodes``/``masses`` of shape (K, m), each mass row summing to 1."""

    nodes: np.ndarray
    masses: np.ndarray
    kind: str  # "slq" | "eigenvalues" | "density"
    dim: int | None
    source: Any = None

    @property
    def num_probes(self) -> int:
        return int(self.nodes.shape[0])

    def pooled(self, probes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        nodes, masses = (self.nodes, self.masses) if probes is None else (
            self.nodes[probes], self.masses[probes]
        )
        return nodes.reshape(-1), masses.reshape(-1) / nodes.shape[0]


def _parse_spectrum(spectrum: Any, dim: int | None) -> _Spectrum:
    if hasattr(spectrum, "nodes") and hasattr(spectrum, "weights"):
        nodes = _to_numpy(spectrum.nodes, "spectrum.nodes")
        weights = _to_numpy(spectrum.weights, "spectrum.weights")
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
        return _Spectrum(nodes, weights / sums[:, None], "slq", int(sdim) if sdim is not None else dim,
                         spectrum)
    if isinstance(spectrum, tuple) and len(spectrum) == 2:
        nodes = _to_numpy(spectrum[0], "spectrum nodes").reshape(-1)
        masses = _to_numpy(spectrum[1], "spectrum masses").reshape(-1)
        if nodes.shape != masses.shape or nodes.size == 0:
            raise ValueError(
                "spectrum as a (nodes, masses) pair needs two non-empty arrays of equal length, "
                f"got {nodes.size} and {masses.size}"
            )
        if np.any(masses < 0) or not masses.sum() > 0:
            raise ValueError("spectrum masses must be non-negative with a positive sum")
        return _Spectrum(nodes[None, :], (masses / masses.sum())[None, :], "density", dim, spectrum)
    if isinstance(spectrum, (torch.Tensor, np.ndarray, list)):
        eig = _to_numpy(spectrum, "spectrum")
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
        return _Spectrum(eig[None, :], np.full((1, eig.size), 1.0 / eig.size), "eigenvalues",
                         eig.size, spectrum)
    raise TypeError(
        "spectrum must be a SpectralDensity (from slq), a 1-D array of all D eigenvalues, or a "
        f"(nodes, masses) pair, got {type(spectrum).__name__}"
    )


def _apply_policy(nodes: np.ndarray, masses: np.ndarray, negative: str) -> tuple[np.ndarray, np.ndarray]:
    """Nodes/masses such that ``Σ m / (1 + |x| R²/2ε)`` is the policy's quadrature."""
    if negative == "abs":
        return nodes, masses
    if negative == "flat":
        return np.where(nodes > 0, nodes, 0.0), masses
    keep = nodes > 0
    total = masses[keep].sum()
    if not total > 0:  # nothing positive: every direction flat, Φ ≡ 1
        return np.zeros(1), np.ones(1)
    return nodes[keep], masses[keep] / total


class _Phi:
    """Φ(R) = p0 + (1 − p0) · Σ m_i / (1 + |x_i| R²/(2ε)) via ``geometry.projected_width_sq``."""

    def __init__(self, nodes: np.ndarray, masses: np.ndarray, eps: float, p0: float, negative: str):
        self.nodes, self.masses = _apply_policy(nodes, masses, negative)
        self.eps, self.p0 = eps, p0

    def __call__(self, R: Any) -> Any:
        R_arr = np.asarray(R, dtype=np.float64)
        if R_arr.ndim == 0:
            q = projected_width_sq(self.nodes, self.masses, self.eps, float(R_arr))
            return self.p0 + (1.0 - self.p0) * q
        flat = R_arr.reshape(-1)
        step = max(1, int(2e7 // max(1, self.nodes.size)))
        q = np.concatenate([
            np.atleast_1d(projected_width_sq(self.nodes, self.masses, self.eps, flat[i : i + step]))
            for i in range(0, flat.size, step)
        ])
        return (self.p0 + (1.0 - self.p0) * q).reshape(R_arr.shape)

    def mean_curvature(self) -> float:
        """``(1 − p0) Σ m_i |x_i|``: Tr(H)/D as the policy sees it (for the Jensen bound)."""
        return (1.0 - self.p0) * float(np.sum(self.masses * np.abs(self.nodes)))


def width_fraction(spectrum: Any, eps: float, R: Any, negative: str = "abs", zero_mass: float = 0.0) -> Any:
    """``Φ(R)``, the normalised squared width of the projected loss sublevel set (Larsen et al.)::

        Φ(R) = p0 + (1 − p0) · (1/K) Σ_k Σ_j τ_jk / (1 + |θ_jk| R² / (2ε))

    ``spectrum``: a ``SpectralDensity`` (SLQ nodes and weights, used directly), a 1-D array of
    eigenvalues (each weighted 1/D) or a ``(nodes, masses)`` pair. ``negative``: ``"abs"``
    (use |λ|), ``"drop"`` (renormalise over λ > 0) or ``"flat"`` (λ ≤ 0 contributes 1).
    ``zero_mass`` p0 in [0, 1). ``R`` a number or an array (result of the same shape).
    """
    eps = _check_eps(eps)
    negative = _check_negative(negative)
    p0 = _check_zero_mass(zero_mass, allow_estimate=False)
    spec = _parse_spectrum(spectrum, None)
    R_arr = _to_numpy(R, "R")
    if np.any(R_arr < 0):
        raise ValueError("R must be non-negative")
    nodes, masses = spec.pooled()
    out = _Phi(nodes, masses, eps, float(p0), negative)(R_arr)
    return float(out) if np.ndim(out) == 0 else out


# ------------------------------------------------------------------------------------------
# the exact solve
# ------------------------------------------------------------------------------------------
def _solve(mag: MagnitudeCurve, phi: _Phi) -> tuple[float, int]:
    """Exact root of ``s = Φ(R(s))``; returns ``(s*, k)`` with ``R_k`` the radius at the crossing.

    With ``k = ⌈sD⌉``, ``R`` is constant (``R_k``) on ``s ∈ ((k−1)/D, k/D]``, so
    ``g(s) = s − Φ(R(s))`` is continuous and increasing on each such interval and jumps *up*
    between them (``R`` grows, ``Φ`` falls): ``g`` is strictly increasing, ``g(0) = −Φ(0) = −1 < 0``
    and ``g(1) = 1 − Φ(R(1)) ≥ 0`` (Φ ≤ 1). Bisection on the integer ``k ∈ [1, D]`` finds the
    smallest ``k`` with ``k/D ≥ Φ(R_k)`` (monotone in ``k``, exactly also in floating point);
    the sign change is then at ``s* = max((k−1)/D, Φ(R_k))``: at ``Φ(R_k)`` if that lies inside
    the step, else at the jump ``(k−1)/D``. ``log2(D) + 2`` evaluations of Φ.
    """
    D = mag.dim
    # g(0) < 0 and g(1) ≥ 0: k is one past the last count with g(k/D) < 0 (`not >=`, as NaN was)
    k = last_true(lambda j: not (j / D - phi(mag.radius_at_count(j)) >= 0), 0, D) + 1
    phi_k = float(phi(mag.radius_at_count(k)))
    s = min(k / D, max((k - 1) / D, phi_k))
    return s, k


# ------------------------------------------------------------------------------------------
# the result
# ------------------------------------------------------------------------------------------
@dataclass
class Curve:
    """The paper's figure on one grid of radii: ``phi`` = Φ(R), ``sparsity`` = s(R), the
    magnitude curve read as a function of ``R`` (largest sparsity whose pruning distance is ≤ R)."""

    radius: np.ndarray
    phi: np.ndarray
    sparsity: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {"radius": _floats(self.radius), "phi": _floats(self.phi),
                "sparsity": _floats(self.sparsity)}


def _floats(a: Any) -> list:
    return [to_jsonable(float(x)) for x in np.asarray(a, dtype=np.float64).reshape(-1)]


@dataclass
class Prediction:
    """A predicted critical sparsity ``s*`` (root of ``s = Φ(R(s))``) and what it was made of.

    - ``sparsity`` ``s*``, ``kept_fraction`` ``1 − s*``; ``num_pruned`` ``⌈s*D⌉``.
    - ``lower``/``upper``: the kinematic window ``s* ∓ sqrt(8 log(4/η))/sqrt(D)`` clipped to
      [0, 1] (Amelunxen et al. 2014) — the sharpness of the transition, not an error bar.
    - ``radius``: ``R(s*)``, the distance pruned at ``s*`` (``num_pruned`` weights). When ``s*``
      falls on a step of ``R(s)`` the crossing happens as ``R`` jumps to the next value,
      ``details["crossing_radius"]``. ``eps``, ``dim``, ``eta``, ``negative``, ``zero_mass``.
    - ``trace`` (estimate of Tr H used), ``trace_source``, ``trace_bound_sparsity``: the Jensen
      bound ``1 − s* ≤ R²Tr(H)/(R²Tr(H) + 2εD)``, i.e. ``s* ≥ 2εD/(R²Tr + 2εD)`` at the crossing
      radius; guaranteed when
      the trace comes from the spectrum itself (``trace_source="spectrum"``).
    - ``uncertainty``: bootstrap over SLQ probes (``std``, 90% ``interval``), or ``None``.
    - ``curve`` (:class:`Curve`), ``spectrum`` (what was passed), ``timings`` (seconds),
      ``method`` (``"exact"`` or ``"reference_emulation"``), ``details``.
    """

    sparsity: float
    lower: float
    upper: float
    radius: float
    eps: float
    dim: int
    eta: float
    negative: str
    zero_mass: float
    num_pruned: int
    trace: float | None
    trace_source: str
    trace_bound_sparsity: float | None
    curve: Curve
    spectrum: Any = None
    spectrum_kind: str = ""
    eps_source: str = "user"
    uncertainty: dict | None = None
    timings: dict = field(default_factory=dict)
    method: str = "exact"
    details: dict = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float:
        return 1.0 - self.sparsity

    @property
    def window(self) -> float:
        """Half-width of the kinematic window (before clipping)."""
        return kinematic_window(self.dim, self.eta)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (non-finite numbers become ``None``)."""
        spec: dict[str, Any] = {"kind": self.spectrum_kind}
        s = self.spectrum
        if s is not None:
            try:
                parsed = _parse_spectrum(s, None)
                nodes, masses = parsed.pooled()
                spec.update(num_probes=parsed.num_probes, num_nodes=int(nodes.size),
                            min=float(nodes.min()), max=float(nodes.max()),
                            mean=float(np.sum(nodes * masses)))
                if parsed.kind != "eigenvalues":
                    spec.update(nodes=parsed.nodes, weights=parsed.masses)
            except (TypeError, ValueError):  # pragma: no cover - stored spectra were validated
                pass
        out = {
            "sparsity": self.sparsity, "kept_fraction": self.kept_fraction,
            "lower": self.lower, "upper": self.upper, "radius": self.radius, "eps": self.eps,
            "eps_source": self.eps_source, "dim": self.dim, "eta": self.eta,
            "negative": self.negative, "zero_mass": self.zero_mass, "num_pruned": self.num_pruned,
            "trace": self.trace, "trace_source": self.trace_source,
            "trace_bound_sparsity": self.trace_bound_sparsity, "method": self.method,
            "uncertainty": self.uncertainty, "timings": self.timings,
            "curve": self.curve.to_dict(), "spectrum": spec, "details": self.details,
        }
        return to_jsonable(out)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __repr__(self) -> str:
        unc = ""
        if self.uncertainty:
            unc = f" ± {self.uncertainty['std']:.4f} (SLQ probes)"
        return (
            f"Prediction(sparsity={self.sparsity:.4f}{unc}, kept_fraction={self.kept_fraction:.4f}, "
            f"window=[{self.lower:.4f}, {self.upper:.4f}], radius={self.radius:.6g}, "
            f"eps={self.eps:.4g}, dim={self.dim}, negative={self.negative!r}, "
            f"zero_mass={self.zero_mass:.4g}, method={self.method!r})"
        )

    def plot(self, ax: Any = None, path: Any = None):
        """The paper's figure: Φ(R) and the magnitude curve s(R) with their crossing; with two
        axes (or ``ax=None``, a new figure) also the spectrum (quadrature masses vs. nodes).

        ``ax``: ``None``, one Axes (crossing only), or a pair of Axes; a str/path given as
        ``ax`` is taken as ``path``. ``path``: save the figure there. Returns the figure.
        """
        import os

        if isinstance(ax, (str, os.PathLike)):
            ax, path = None, ax
        import matplotlib

        if ax is None:
            if path is not None:
                from matplotlib.figure import Figure

                fig = Figure(figsize=(10, 4))
            else:
                import matplotlib.pyplot as plt

                fig = plt.figure(figsize=(10, 4))
            ax0, ax1 = fig.subplots(1, 2)
        elif isinstance(ax, (list, tuple, np.ndarray)):
            ax0, ax1 = list(np.ravel(ax))[:2]
            fig = ax0.figure
        elif isinstance(ax, matplotlib.axes.Axes):
            ax0, ax1 = ax, None
            fig = ax0.figure
        else:
            raise TypeError(f"ax must be None, a matplotlib Axes, a pair of Axes or a path, got {type(ax).__name__}")
        c = self.curve
        ax0.plot(c.radius, c.phi, label="Φ(R) (theory)", color="tab:green")
        ax0.step(c.radius, c.sparsity, where="post", label="s(R) (magnitude pruning)", color="tab:blue")
        ax0.plot([self.radius], [self.sparsity], "o", color="tab:red",
                 label=f"s* = {self.sparsity:.4f}")
        ax0.axhspan(self.lower, self.upper, color="tab:red", alpha=0.1)
        ax0.set_xlabel("R = ‖w* − w^(s)‖")
        ax0.set_ylabel("sparsity")
        ax0.set_title(f"critical sparsity ({self.method})")
        ax0.legend(loc="best", fontsize="small")
        ax0.grid(True, alpha=0.3)
        if ax1 is not None and self.spectrum is not None:
            spec = _parse_spectrum(self.spectrum, None)
            nodes, masses = spec.pooled()
            if spec.kind == "eigenvalues":
                ax1.hist(nodes, bins=min(100, max(10, nodes.size // 10)), log=True, color="tab:gray")
                ax1.set_ylabel("count")
            else:
                keep = masses > 0
                ax1.semilogy(nodes[keep], masses[keep], ".", color="tab:gray")
                ax1.set_ylabel("quadrature mass")
            ax1.set_xlabel("eigenvalue")
            ax1.set_title(f"Hessian spectrum ({spec.kind})")
            ax1.grid(True, alpha=0.3)
        if path is not None:
            from ._io import check_path
            from .plots import save_figure_atomic

            save_figure_atomic(fig, check_path(path, "path"), bbox_inches="tight", format="png")
        return fig


# ------------------------------------------------------------------------------------------
# critical_sparsity
# ------------------------------------------------------------------------------------------
def _curve(mag: MagnitudeCurve, phi: _Phi, extra_R: list[float], num: int = 400) -> Curve:
    R_max = mag.norm
    s_grid = np.linspace(0.0, 1.0, num + 1)
    R = np.concatenate([np.linspace(0.0, R_max, num + 1), mag.radius(s_grid), np.asarray(extra_R)])
    R = np.unique(R)
    return Curve(R, np.asarray(phi(R), dtype=np.float64), np.asarray(mag.sparsity_at_radius(R)))


def _bootstrap(mag: MagnitudeCurve, spec: _Spectrum, eps: float, p0: float, negative: str,
               num: int, seed: int) -> dict | None:
    if num <= 0 or spec.kind != "slq" or spec.num_probes < 2:
        return None
    rng = np.random.default_rng(seed)
    K = spec.num_probes
    values = np.empty(num)
    for b in range(num):
        probes = rng.integers(0, K, size=K)
        nodes, masses = spec.pooled(probes)
        values[b] = _solve(mag, _Phi(nodes, masses, eps, p0, negative))[0]
    lo, hi = np.quantile(values, [0.05, 0.95])
    return {"std": float(values.std(ddof=1)), "interval": [float(lo), float(hi)], "level": 0.9,
            "num_resamples": int(num), "method": "bootstrap over SLQ probes", "seed": int(seed)}


def critical_sparsity(
    weights: Any,
    spectrum: Any,
    eps: float,
    eta: float = 0.01,
    negative: str = "abs",
    zero_mass: float = 0.0,
    trace: Any = None,
    params: Any = None,
    bootstrap: int = 200,
    seed: int = 0,
    reference_emulation: bool = False,
) -> Prediction:
    """Predicted critical sparsity: the root ``s*`` of ``s = Φ(R(s))`` (Zhang et al. 2024, §3)::

        R(s) = sqrt(Σ of the ⌈sD⌉ smallest w_i²),
        Φ(R) = p0 + (1 − p0) · (1/K) Σ_k Σ_j τ_jk / (1 + |θ_jk| R²/(2ε))

    solved exactly (bisection on the number of pruned weights; see ``_solve``).

    Parameters
    ----------
    weights : Tensor | ndarray | nn.Module
        The trained prunable weights ``w*`` (any shape), or a model: its prunable weights, or
        the ``params`` selection (``None`` | ``"all"`` | names). The model is not changed.
    spectrum : SpectralDensity | 1-D array | (nodes, masses)
        SLQ output (nodes and weights used directly; ``spectrum.dim`` must equal ``D``), or all
        ``D`` Hessian eigenvalues (each weighted ``1/D``; the length must be ``D``), or a
        discrete density as a ``(nodes, masses)`` pair.
    eps : float > 0
        Loss tolerance ε.
    eta : float in (0, 1)
        Tolerance of the kinematic window ``± sqrt(8 log(4/η))/sqrt(D)``.
    negative : "abs" | "drop" | "flat"
        Negative eigenvalues: use |λ| (the reference code), drop and renormalise over λ > 0,
        or count λ ≤ 0 as flat (infinite radius, contribution 1).
    zero_mass : float in [0, 1)
        Mass ``p0`` of exactly flat directions added to Φ (see :func:`estimate_zero_mass`).
    trace : float, optional
        Estimate of Tr(H) for the Jensen bound; default: ``D (1 − p0) Σ m |θ|`` from the
        spectrum under the ``negative`` policy (then the bound provably holds).
    bootstrap : int
        Resamples of the SLQ probes for ``uncertainty`` (0: none; needs ≥ 2 probes).
    reference_emulation : bool
        Reproduce the published pipeline instead (see ``_reference_emulation``); the exact
        answer is kept in ``details["exact_sparsity"]``.
    """
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    eps = _check_eps(eps)
    eta = _check_eta(eta)
    negative = _check_negative(negative)
    p0 = float(_check_zero_mass(zero_mass, allow_estimate=False))
    bootstrap = check_int(bootstrap, "bootstrap", minimum=0)
    seed = check_seed(seed)
    if not isinstance(reference_emulation, bool):
        raise TypeError(f"reference_emulation must be a bool, got {type(reference_emulation).__name__}")
    if trace is not None:
        trace = check_float(trace, "trace")
    if isinstance(weights, nn.Module):
        with preserve_model(weights), torch.no_grad():
            mag = MagnitudeCurve(weights, params=params, keep_sorted=reference_emulation)
    else:
        mag = MagnitudeCurve(weights, params=params, keep_sorted=reference_emulation)
    D = mag.dim
    times["sort"] = time.perf_counter() - t0

    t = time.perf_counter()
    spec = _parse_spectrum(spectrum, D)
    nodes, masses = spec.pooled()
    phi = _Phi(nodes, masses, eps, p0, negative)
    s_star, k = _solve(mag, phi)
    R_cross = mag.radius_at_count(k)  # the radius at the crossing (Φ evaluated there)
    R_star = mag.radius_at_count(pruned_count(s_star, D))  # R(s*); equal unless s* is on a step
    times["solve"] = time.perf_counter() - t

    if trace is None:
        trace_value, trace_source = D * phi.mean_curvature(), "spectrum"
    else:
        trace_value, trace_source = trace, "user"
    denom = R_cross**2 * trace_value + 2.0 * eps * D
    bound = 2.0 * eps * D / denom if trace_value >= 0 and denom > 0 else None

    t = time.perf_counter()
    uncertainty = None if reference_emulation else _bootstrap(mag, spec, eps, p0, negative, bootstrap, seed)
    times["bootstrap"] = time.perf_counter() - t

    method, details = "exact", {"crossing_radius": R_cross}
    if reference_emulation:
        t = time.perf_counter()
        ref = _reference_emulation(mag, spec, eps, p0, negative)
        times["reference_emulation"] = time.perf_counter() - t
        details = {"exact_sparsity": s_star, "exact_radius": R_star, **ref["details"]}
        s_star, R_star, curve, method = ref["sparsity"], ref["radius"], ref["curve"], "reference_emulation"
    else:
        t = time.perf_counter()
        curve = _curve(mag, phi, [R_star, R_cross])
        times["curve"] = time.perf_counter() - t

    half = kinematic_window(D, eta)
    times["total"] = time.perf_counter() - t0
    return Prediction(
        sparsity=float(s_star), lower=max(0.0, s_star - half), upper=min(1.0, s_star + half),
        radius=float(R_star), eps=eps, dim=D, eta=eta, negative=negative, zero_mass=p0,
        num_pruned=pruned_count(s_star, D), trace=float(trace_value),
        trace_source=trace_source, trace_bound_sparsity=bound, curve=curve, spectrum=spectrum,
        spectrum_kind=spec.kind, uncertainty=uncertainty, timings=times, method=method,
        details=details,
    )


# ------------------------------------------------------------------------------------------
# the reference pipeline, emulated (a separate code path, on purpose)
# ------------------------------------------------------------------------------------------
def _reference_density(spec: _Spectrum, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
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


def _reference_emulation(mag: MagnitudeCurve, spec: _Spectrum, eps: float, p0: float, negative: str,
                         num_ratios: int = 1000, num_bins: int = 100_000) -> dict:
    """The published pipeline (QiaozheZhang/Global-One-shot-Pruning: ``density_plot.py``,
    ``cal_rate.py``): (1) grid-smoothed density (:func:`_reference_density`), grid points of zero
    density dropped, a node at 1e-30 of mass ``p0/(1 − p0)`` of the rest appended; (2) Φ at the
    integers ``R = 0, 1, …``; (3) for the ratios ``s_i = i/1000`` (``i < 1000``): prune every
    ``|w| ≤`` the ``max(1, ⌈s_i D⌉)``-th smallest magnitude, take ``R_i`` rounded to an integer,
    and return the ``s_i`` minimising ``|Φ(round(R_i)) − s_i|``."""
    if spec.kind == "eigenvalues":
        grid, density = spec.nodes[0], spec.masses[0]  # exact eigenvalues: no smoothing needed
        smoothed = False
    else:
        grid, density = _reference_density(spec, num_bins)
        smoothed = True
    keep = density > 0
    grid, density = grid[keep], density[keep]
    if p0 > 0:
        grid = np.append(grid, 1e-30)
        density = np.append(density, p0 / (1.0 - p0) * density.sum())
    phi = _Phi(grid, density / density.sum(), eps, 0.0, negative)

    sorted_abs = mag.sorted_abs
    D = mag.dim
    ratios = np.arange(num_ratios) / num_ratios
    counts = np.empty(num_ratios, dtype=np.int64)
    for i, s in enumerate(ratios):
        n = max(1, int(np.ceil(s * float(D))))
        threshold = sorted_abs[n - 1]
        counts[i] = int(torch.searchsorted(sorted_abs, threshold.reshape(1), right=True).item())
    R = mag.radius_at_count(counts)
    R_int = np.round(R).astype(np.int64)
    gw = np.asarray(phi(np.arange(int(R_int.max()) + 1, dtype=np.float64)))
    gaps = np.abs(gw[R_int] - ratios)
    i = int(np.argmin(gaps))
    radii = np.arange(gw.size, dtype=np.float64)
    curve = Curve(radii, gw, np.asarray(mag.sparsity_at_radius(radii)))
    return {
        "sparsity": float(ratios[i]), "radius": float(R[i]), "curve": curve,
        "details": {"rounded_radius": int(R_int[i]), "num_ratios": num_ratios,
                    "num_bins": num_bins if smoothed else None, "grid_points_kept": int(grid.size),
                    "ratios": ratios, "ratio_radii": R, "ratio_phi": gw[R_int]},
    }


# ------------------------------------------------------------------------------------------
# ε and p0 from the model
# ------------------------------------------------------------------------------------------
def batch_loss_std(losses: Any) -> float:
    """Default ε: the standard deviation of the mini-batch training losses at ``w*``.

    Population standard deviation (``ddof=0``, unweighted by batch size), as the reference code's
    ``np.std(loss_list)``. Needs at least two batches.
    """
    arr = _to_numpy(losses, "losses").reshape(-1)
    if arr.size < 2:
        raise ValueError(
            f"eps=None needs the losses of at least 2 mini-batches to take their standard "
            f"deviation, got {arr.size}; split data into batches or pass eps explicitly"
        )
    return float(np.std(arr))


def _eps_from_operator(H: Any) -> tuple[float, float, int]:
    """``(ε, dataset-mean training loss, number of batches)`` from the operator's batches."""
    losses, sizes = H.batch_losses()
    eps = batch_loss_std(losses)
    if not eps > 0:
        raise ValueError("eps=None: the mini-batch losses are all equal (std 0); pass eps explicitly")
    train_loss = float(np.dot(losses, sizes) / np.sum(sizes))
    return eps, train_loss, len(losses)


def estimate_eps(model: nn.Module, loss_fn: Any, data: Any, params: Any = None,
                 batchnorm: str = "eval") -> float:
    """The default loss tolerance ε: :func:`batch_loss_std` of the mini-batch training losses at
    the current weights, batches as given by ``data`` (forward passes only; data-parallel when
    ``torch.distributed`` is initialised). The model is unchanged."""
    from .operators import HessianOperator

    with preserve_model(check_model(model)):
        return _eps_from_operator(HessianOperator(model, loss_fn, data, params=params, batchnorm=batchnorm))[0]


@dataclass
class ZeroMassEstimate:
    """``fraction``: share of sampled Hessian rows with L1 norm ``< threshold``; ``row_l1``
    the sampled rows' L1 norms; ``indices`` the sampled coordinates; ``quantiles`` their
    sparsity levels."""

    fraction: float
    row_l1: np.ndarray
    indices: np.ndarray
    quantiles: np.ndarray
    threshold: float


def estimate_zero_mass(H: Any, weights: Any = None, num_rows: int = 100, threshold: float = 1e-7,
                       chunk: int = 25) -> ZeroMassEstimate:
    """Estimate the mass ``p0`` of flat directions as the reference code does (``gradient.py``):
    sample the Hessian rows ``H e_i`` of the coordinates at the weight-magnitude quantiles
    ``s = j/num_rows`` (``j = 0 … num_rows−1``; the ``max(1, ⌈sD⌉)``-th smallest ``|w|``, first
    index among ties) and count rows whose L1 norm is below ``threshold``.

    Differences from the reference: the row is that of the dataset-mean Hessian (batches weighted
    by size); the reference sums per-batch absolute rows and divides by the sample count.
    Caveat (double counting): a coordinate with a zero Hessian row is an eigenvector of
    eigenvalue 0, which SLQ already represents through near-zero Ritz values; adding ``p0`` on
    top counts those directions twice and inflates Φ (and s*). Use it when the SLQ spectrum
    resolves the zero mass poorly, and compare with ``zero_mass=0``.

    ``H``: an operator (e.g. ``HessianOperator``); ``weights``: the flat weights, default
    ``H.parameters_vector()``.
    """
    from .operators import as_operator

    op = as_operator(H)
    num_rows = check_int(num_rows, "num_rows", minimum=1)
    chunk = check_int(chunk, "chunk", minimum=1)
    threshold = check_float(threshold, "threshold", minimum=0.0, strict_minimum=True)
    if weights is None:
        if not hasattr(op, "parameters_vector"):
            raise ValueError("weights must be given when H is not a HessianOperator")
        flat = op.parameters_vector()
    else:
        flat = _weights_tensor(weights)
    if flat.numel() != op.dim:
        raise ValueError(f"weights has {flat.numel()} entries but H has dim {op.dim}")
    absw = flat.detach().abs().reshape(-1).cpu()
    D = op.dim
    quantiles = np.arange(num_rows) / num_rows
    indices = np.empty(num_rows, dtype=np.int64)
    for j, s in enumerate(quantiles):
        n = max(1, pruned_count(float(s), D))
        value = torch.kthvalue(absw, n).values
        indices[j] = int((absw == value).nonzero()[0].item())
    norms = np.empty(num_rows)
    for start in range(0, num_rows, chunk):
        idx = indices[start : start + chunk]
        E = torch.zeros(D, idx.size, dtype=op.dtype, device=op.device)
        E[torch.as_tensor(idx, device=op.device), torch.arange(idx.size, device=op.device)] = 1
        rows = op @ E
        norms[start : start + idx.size] = rows.abs().sum(dim=0).double().cpu().numpy()
    return ZeroMassEstimate(float(np.mean(norms < threshold)), norms, indices, quantiles, threshold)


# ------------------------------------------------------------------------------------------
# predict_sparsity: the whole pipeline on a model
# ------------------------------------------------------------------------------------------
def predict_sparsity(
    model: nn.Module,
    loss_fn: Any,
    data: Any,
    eps: float | None = None,
    num_steps: int = 80,
    num_probes: int = 10,
    seed: int = 0,
    eta: float = 0.01,
    negative: str = "abs",
    zero_mass: Any = 0.0,
    params: Any = None,
    batchnorm: str = "eval",
    trace_method: str | None = "hutch++",
    trace_matvecs: int = 100,
    bootstrap: int = 200,
    reference_emulation: bool = False,
    spectrum_method: str = "slq",
    zero_mass_rows: int = 100,
) -> Prediction:
    """Predict the critical sparsity of a trained ``model`` (Zhang et al., NeurIPS 2024).

    Builds the dataset-level ``HessianOperator`` of ``loss_fn`` over ``data`` w.r.t. ``params``
    (default: the prunable weights), estimates its spectrum (``spectrum_method="slq"``:
    ``slq(H, num_steps, num_probes, seed)``; ``"exact"``: dense ``eigvalsh``, small ``D`` only)
    and solves ``s = Φ(R(s))`` exactly (:func:`critical_sparsity`).

    ``eps=None``: the standard deviation of the per-batch training losses at ``w*`` over the
    batches of ``data`` as given (population std, ``ddof=0``, like the reference's ``np.std``;
    :func:`batch_loss_std`). ``zero_mass``: a number in [0, 1) or ``"estimate"``
    (:func:`estimate_zero_mass`, ``zero_mass_rows`` rows). ``trace_method``: ``"hutchinson"``,
    ``"hutch++"``, ``"xtrace"`` (``trace_matvecs`` products) for the reported trace bound, or
    ``None`` (trace from the spectrum). The model comes back bit-for-bit unchanged.
    """
    from .operators import HessianOperator

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    check_model(model)
    if eps is not None:
        eps = _check_eps(eps)
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    num_probes = check_int(num_probes, "num_probes", minimum=1)
    seed = check_seed(seed)
    _check_eta(eta)
    _check_negative(negative)
    zero_mass = _check_zero_mass(zero_mass, allow_estimate=True)
    if trace_method is not None:
        check_choice(trace_method, "trace_method", ("hutchinson", "hutch++", "xtrace"))
    # Hutchinson needs 2 products for a standard error, Hutch++ and XTrace 4 for their sketches
    trace_matvecs = check_int(
        trace_matvecs, "trace_matvecs", minimum={"hutchinson": 2}.get(trace_method or "", 4)
        if trace_method is not None else 1,
    )
    check_int(bootstrap, "bootstrap", minimum=0)
    spectrum_method = check_choice(spectrum_method, "spectrum_method", ("slq", "exact"))
    if bootstrap > 0 and num_probes < 2 and spectrum_method != "exact":
        warnings.warn(
            "bootstrap needs num_probes >= 2: no SLQ uncertainty is reported (uncertainty=None)",
            RuntimeWarning, stacklevel=2,
        )
    zero_mass_rows = check_int(zero_mass_rows, "zero_mass_rows", minimum=1)
    if not isinstance(reference_emulation, bool):
        raise TypeError(f"reference_emulation must be a bool, got {type(reference_emulation).__name__}")

    with preserve_model(model):
        H = HessianOperator(model, loss_fn, data, params=params, batchnorm=batchnorm)
        weights = H.parameters_vector()
        eps_source = "user"
        details: dict[str, Any] = {}
        if eps is None:
            t = time.perf_counter()
            eps, mean_loss, num_batches = _eps_from_operator(H)
            eps_source = "batch_loss_std"
            details.update(train_loss=mean_loss, num_batches=num_batches)
            times["eps"] = time.perf_counter() - t

        t = time.perf_counter()
        if spectrum_method == "slq":
            from .spectral import slq

            spectrum = slq(H, num_steps=num_steps, num_probes=num_probes, seed=seed)
        else:
            spectrum = torch.linalg.eigvalsh(H.to_dense().to(torch.float64))
        times["spectrum"] = time.perf_counter() - t

        trace_value = None
        if trace_method is not None:
            from .spectral import trace as trace_fn

            t = time.perf_counter()
            est = trace_fn(H, method=trace_method, num_matvecs=trace_matvecs, seed=seed)
            trace_value = float(est.value)
            details.update(trace_stderr=to_jsonable(getattr(est, "stderr", None)),
                           trace_method=trace_method)
            times["trace"] = time.perf_counter() - t

        if zero_mass == "estimate":
            t = time.perf_counter()
            zm = estimate_zero_mass(H, weights, num_rows=zero_mass_rows)
            zero_mass = min(zm.fraction, 1.0 - 0.5 / zero_mass_rows)  # every row flat: p0 < 1
            details.update(zero_mass_estimate=zm.fraction, zero_mass_row_l1=zm.row_l1)
            times["zero_mass"] = time.perf_counter() - t

    pred = critical_sparsity(
        weights, spectrum, eps, eta=eta, negative=negative, zero_mass=zero_mass,
        trace=trace_value, bootstrap=bootstrap, seed=seed, reference_emulation=reference_emulation,
    )
    if trace_method is not None:
        pred.trace_source = trace_method
    pred.eps_source = eps_source
    pred.details.update(details)
    pred.timings = {**times, **{f"solve_{k}": v for k, v in pred.timings.items()}}
    pred.timings["total"] = time.perf_counter() - t0
    return pred
