"""The critical sparsity of one-shot magnitude pruning (THEORY §1–3): the root ``s*`` of ::

    s = Φ(R(s)),
    R(s) = sqrt( sum of the ⌈sD⌉ smallest w_i² )                 (exact, from the sorted weights)
    Φ(R) = p0 + (1 − p0) · (1/K) Σ_k Σ_j τ_jk / (1 + |θ_jk| R² / (2ε))   (SLQ nodes θ, weights τ)

(with exact eigenvalues every ``λ_i`` has weight ``1/D``). ``s ↦ s`` increases and
``s ↦ Φ(R(s))`` does not, so the root is unique; it is found by bisection on the *number* of
pruned weights, which makes it exact (no grid of ratios, no rounding of ``R``). Here: the root,
the kinematic window around it, the bootstrap over SLQ probes, the :class:`Prediction` and its
:class:`Curve`; ``R`` is :mod:`.magnitude`, ``Φ`` :mod:`.width`, the published pipeline
:mod:`.reference`.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .._bisect import last_true
from .._checks import check_float, check_int, check_seed
from .._io import to_jsonable
from .._timing import Stopwatch
from ..params import ParamSelection, pruned_count
from .geometry import kinematic_window
from .magnitude import MagnitudeCurve, magnitude_curve
from .reference import reference_pipeline
from .spectrum import Spectrum, SpectrumKind, parse_spectrum
from .width import Negative, Phi, check_eps, check_negative, check_zero_mass

__all__ = [
    "Curve",
    "Method",
    "Prediction",
    "bootstrap_uncertainty",
    "check_eta",
    "critical_sparsity",
    "crossing_curve",
    "exact_root",
    "reference_critical_sparsity",
    "trace_bound_sparsity",
]

#: How ``s*`` was found: the exact root, or the published pipeline emulated (the paper's
#: prediction); or the one-shot estimator :func:`phasetrans.predict_oneshot` (THEORY §8), by
#: forward passes or by the second-order model along the pruning path.
Method = Literal["exact", "reference_emulation", "oneshot-forward", "oneshot-quadratic"]


def check_eta(eta: Any) -> float:
    """η in (0, 1), the failure probability of the kinematic window."""
    eta = check_float(eta, "eta", minimum=0.0, strict_minimum=True)
    if not eta < 1.0:
        raise ValueError(f"eta must be in (0, 1), got {eta}")
    return eta


# ------------------------------------------------------------------------------------------
# the exact root and the Jensen bound
# ------------------------------------------------------------------------------------------
def exact_root(mag: MagnitudeCurve, phi: Phi) -> tuple[float, int]:
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


def trace_bound_sparsity(crossing_radius: float, trace: float, eps: float, dim: int) -> float | None:
    """The Jensen bound ``1 − s* ≤ R²Tr(H)/(R²Tr(H) + 2εD)`` read as ``s* ≥ 2εD/(R²Tr + 2εD)``
    at the crossing radius (``None`` for a negative trace or a zero denominator)."""
    denom = crossing_radius**2 * trace + 2.0 * eps * dim
    return 2.0 * eps * dim / denom if trace >= 0 and denom > 0 else None


# ------------------------------------------------------------------------------------------
# the result
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
      ``method`` (``"exact"`` or ``"reference_emulation"``: the paper's prediction;
      ``"oneshot-forward"`` / ``"oneshot-quadratic"``: :func:`phasetrans.predict_oneshot`), ``details``.
    - ``applies``: does the paper's prediction describe one-shot pruning of this network
      (THEORY §7: ``ΔL₂(s*)/ε ≤ 2.5`` along the actual pruning direction and ``s*`` at most
      0.03 past the near-zero spike of ``|w|``); ``None`` when not
      assessed (``critical_sparsity`` from weights and a spectrum alone has no gradient or
      Hessian products). ``warnings``: plain sentences, why not and what to use instead.
    - ``products``: column Hessian products the prediction used (set by
      :func:`~phasetrans.predict.predict_sparsity`; ``None`` from a given spectrum).

    Built once by :func:`critical_sparsity` (frozen); :func:`~phasetrans.predict.predict_sparsity`
    adds its own sources, details and timings with ``dataclasses.replace``.
    """

    sparsity: float
    lower: float
    upper: float
    radius: float
    eps: float
    dim: int
    eta: float
    negative: Negative
    zero_mass: float
    num_pruned: int
    trace: float | None
    trace_source: str
    trace_bound_sparsity: float | None
    curve: Curve
    spectrum: Any = None
    spectrum_kind: SpectrumKind | Literal[""] = ""
    eps_source: str = "user"
    uncertainty: dict | None = None
    timings: dict = field(default_factory=dict)
    method: Method = "exact"
    details: dict = field(default_factory=dict)
    applies: bool | None = None
    warnings: tuple[str, ...] = ()
    products: int | None = None

    @property
    def kept_fraction(self) -> float:
        return 1.0 - self.sparsity

    @property
    def window(self) -> float:
        """Half-width of the kinematic window (before clipping); for a one-shot estimate
        (``method="oneshot-*"``) half the bracketing interval ``(upper − lower)/2``."""
        if self.method.startswith("oneshot"):
            return 0.5 * (self.upper - self.lower)
        return kinematic_window(self.dim, self.eta)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (non-finite numbers become ``None``)."""
        spec: dict[str, Any] = {"kind": self.spectrum_kind}
        s = self.spectrum
        if s is not None:
            try:
                parsed = parse_spectrum(s, None)
                nodes, masses = parsed.pooled()
                spec.update(num_probes=parsed.num_probes, num_nodes=int(nodes.size),
                            min=float(nodes.min()), max=float(nodes.max()),
                            mean=float(np.sum(nodes * masses)))
                if parsed.kind != "eigenvalues":
                    spec.update(nodes=parsed.nodes, weights=parsed.masses)
                else:
                    spec.update(eigenvalues=parsed.nodes.reshape(-1))
                if hasattr(s, "to_dict"):  # exact nodes, weights, dim, lengths: from_dict reloads it
                    spec.update(s.to_dict())
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
            "applies": self.applies, "warnings": list(self.warnings),
            "products": self.products,
        }
        return to_jsonable(out)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        """The :class:`Prediction` of :meth:`to_dict` (or of ``prediction.json`` from ``phasetrans
        predict``, whose extra ``command`` key is ignored): equal field by field, ``to_dict`` of
        the result equals ``d``. The spectrum comes back as a ``SpectralDensity`` (SLQ), the
        eigenvalue array, or the ``(nodes, masses)`` pair; ``None`` where none was stored.
        Numbers written as ``None`` (non-finite) come back as ``nan``."""
        return prediction_from_dict(cls, d)

    def __repr__(self) -> str:
        unc = ""
        if self.uncertainty:
            unc = f" ± {self.uncertainty['std']:.4f} (SLQ probes)"
        return (
            f"Prediction(sparsity={self.sparsity:.4f}{unc}, kept_fraction={self.kept_fraction:.4f}, "
            f"window=[{self.lower:.4f}, {self.upper:.4f}], radius={self.radius:.6g}, "
            f"eps={self.eps:.4g}, dim={self.dim}, negative={self.negative!r}, "
            f"zero_mass={self.zero_mass:.4g}, method={self.method!r}, applies={self.applies})"
        )

    def plot(self, ax: Any = None, path: Any = None):
        """The prediction in two panels, drawn by ``plots.plot_prediction``: Φ(R) and the magnitude
        curve s(R) with their crossing and the kinematic window, and the spectrum's quadrature
        nodes/masses (for an eigenvalue array a log-count histogram), the method in the title.

        ``ax``: ``None`` (a new figure), one Axes (the crossing only), or a pair of Axes; a
        str/path given as ``ax`` is taken as ``path``. ``path``: save the figure there (PNG).
        Returns the figure.
        """
        import os

        from .._io import check_path
        from ..report.plots import plot_prediction

        if isinstance(ax, (str, os.PathLike)):
            ax, path = None, ax
        if path is not None:
            path = check_path(path, "path")
        if ax is not None and not isinstance(ax, (list, tuple, np.ndarray)) and not hasattr(ax, "plot"):
            raise TypeError(f"ax must be None, a matplotlib Axes, a pair of Axes or a path, got {type(ax).__name__}")
        return plot_prediction(self, ax=ax, path=path)


_FROM_DICT_IGNORED = ("kept_fraction", "spectrum", "curve", "command")


def prediction_from_dict(cls: type, d: Any) -> Prediction:
    """:meth:`Prediction.from_dict` (the checks, the curve, the spectrum)."""
    import dataclasses

    if not isinstance(d, dict):
        raise TypeError(f"d must be a dict (Prediction.to_dict()), got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    missing = sorted(set(required) - {"spectrum"} - d.keys())
    if missing:
        raise ValueError(f"d is missing keys {missing} (not a Prediction.to_dict())")
    curve = d["curve"]
    if not isinstance(curve, dict) or {"radius", "phi", "sparsity"} - curve.keys():
        raise ValueError("d['curve'] must be a dict with radius, phi and sparsity lists")
    try:
        arrays = [np.array([np.nan if v is None else v for v in curve[k]], dtype=np.float64)
                  for k in ("radius", "phi", "sparsity")]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"d['curve'] must hold lists of numbers: {exc}") from None
    kwargs = {k: v for k, v in d.items() if k in fields and k not in _FROM_DICT_IGNORED}
    for k in ("sparsity", "lower", "upper", "radius", "eps", "eta", "zero_mass"):
        if kwargs[k] is None:
            kwargs[k] = float("nan")
    for k, f in fields.items():  # tuples (``warnings``) come back from JSON as lists
        if isinstance(f.default, tuple) and isinstance(kwargs.get(k), list):
            kwargs[k] = tuple(kwargs[k])
    spec = d.get("spectrum") or {}
    if not isinstance(spec, dict):
        raise TypeError(f"d['spectrum'] must be a dict, got {type(spec).__name__}")
    return cls(**kwargs, curve=Curve(*arrays), spectrum=_spectrum_from_dict(spec, d["dim"]),
               spectrum_kind=spec.get("kind", d.get("spectrum_kind", "")))


def _spectrum_from_dict(spec: dict, dim: int) -> Any:
    """The spectrum :meth:`Prediction.to_dict` stored: a ``SpectralDensity`` for SLQ (files
    written before ``dim`` was stored take the prediction's ``D``), the eigenvalues, the
    ``(nodes, masses)`` pair, or ``None``."""
    from ..linalg.density import SpectralDensity

    kind = spec.get("kind", "")
    if kind == "slq" and "nodes" in spec:
        return SpectralDensity.from_dict({"dim": dim, **spec})
    if kind == "eigenvalues" and spec.get("eigenvalues") is not None:
        return np.asarray(spec["eigenvalues"], dtype=np.float64)
    if kind == "density" and "nodes" in spec:
        return (np.asarray(spec["nodes"], dtype=np.float64).reshape(-1),
                np.asarray(spec["weights"], dtype=np.float64).reshape(-1))
    return None


# ------------------------------------------------------------------------------------------
# critical_sparsity: a list of stages
# ------------------------------------------------------------------------------------------
def crossing_curve(mag: MagnitudeCurve, phi: Phi, extra_R: list[float], num: int = 400) -> Curve:
    """:class:`Curve` on ``num + 1`` radii evenly up to ``‖w*‖``, the radii ``R(i/num)`` and ``extra_R``."""
    R_max = mag.norm
    s_grid = np.linspace(0.0, 1.0, num + 1)
    R = np.concatenate([np.linspace(0.0, R_max, num + 1), mag.radius(s_grid), np.asarray(extra_R)])
    R = np.unique(R)
    return Curve(R, np.asarray(phi(R), dtype=np.float64), np.asarray(mag.sparsity_at_radius(R)))


def bootstrap_uncertainty(mag: MagnitudeCurve, spec: Spectrum, eps: float, p0: float,
                          negative: Negative, num: int, seed: int) -> dict | None:
    """Spread of ``s*`` over ``num`` resamples (with replacement) of the SLQ probes: standard
    deviation and 90% interval; ``None`` without SLQ, with fewer than 2 probes or ``num = 0``."""
    if num <= 0 or spec.kind != "slq" or spec.num_probes < 2:
        return None
    rng = np.random.default_rng(seed)
    K = spec.num_probes
    values = np.empty(num)
    for b in range(num):
        probes = rng.integers(0, K, size=K)
        nodes, masses = spec.pooled(probes)
        values[b] = exact_root(mag, Phi(nodes, masses, eps, p0, negative))[0]
    lo, hi = np.quantile(values, [0.05, 0.95])
    return {"std": float(values.std(ddof=1)), "interval": [float(lo), float(hi)], "level": 0.9,
            "num_resamples": int(num), "method": "bootstrap over SLQ probes", "seed": int(seed)}


@dataclass(frozen=True)
class _Settings:
    """The checked arguments of :func:`critical_sparsity`."""

    eps: float
    eta: float
    negative: Negative
    zero_mass: float
    bootstrap: int
    seed: int
    reference_emulation: bool
    trace: float | None


def _check_arguments(eps: Any, eta: Any, negative: Any, zero_mass: Any, bootstrap: Any, seed: Any,
                     reference_emulation: Any, trace: Any) -> _Settings:
    eps = check_eps(eps)
    eta = check_eta(eta)
    negative = check_negative(negative)
    p0 = float(check_zero_mass(zero_mass, allow_estimate=False))
    bootstrap = check_int(bootstrap, "bootstrap", minimum=0)
    seed = check_seed(seed)
    if not isinstance(reference_emulation, bool):
        raise TypeError(f"reference_emulation must be a bool, got {type(reference_emulation).__name__}")
    if trace is not None:
        trace = check_float(trace, "trace")
    return _Settings(eps, eta, negative, p0, bootstrap, seed, reference_emulation, trace)


@dataclass(frozen=True)
class _Crossing:
    """The exact root: ``sparsity`` ``s*``, ``count`` ``k`` (the crossing is at ``R_k``),
    ``radius`` ``R(s*)`` and ``crossing_radius`` ``R_k`` (equal unless ``s*`` is on a step)."""

    sparsity: float
    count: int
    radius: float
    crossing_radius: float


def _solve(mag: MagnitudeCurve, spectrum: Any, cfg: _Settings) -> tuple[Spectrum, Phi, _Crossing]:
    """Stage "solve": parse the spectrum, build Φ, find the exact root."""
    spec = parse_spectrum(spectrum, mag.dim)
    nodes, masses = spec.pooled()
    phi = Phi(nodes, masses, cfg.eps, cfg.zero_mass, cfg.negative)
    s_star, k = exact_root(mag, phi)
    R_cross = mag.radius_at_count(k)  # the radius at the crossing (Φ evaluated there)
    R_star = mag.radius_at_count(pruned_count(s_star, mag.dim))  # R(s*); equal unless s* is on a step
    return spec, phi, _Crossing(s_star, k, R_star, R_cross)


def _trace(mag: MagnitudeCurve, phi: Phi, cfg: _Settings) -> tuple[float, str]:
    """Tr(H) for the Jensen bound: the user's, else ``D (1 − p0) Σ m |θ|`` from the spectrum."""
    if cfg.trace is None:
        return mag.dim * phi.mean_curvature(), "spectrum"
    return cfg.trace, "user"


@dataclass(frozen=True)
class _Answer:
    """What the chosen method reports as ``s*`` (and with it)."""

    sparsity: float
    radius: float
    curve: Curve
    method: Method
    details: dict


def _exact_answer(mag: MagnitudeCurve, spec: Spectrum, phi: Phi, crossing: _Crossing,
                  cfg: _Settings, clock: Stopwatch) -> _Answer:
    """Stage "curve": the exact root and the figure's curve around it."""
    with clock("curve"):
        curve = crossing_curve(mag, phi, [crossing.radius, crossing.crossing_radius])
    return _Answer(crossing.sparsity, crossing.radius, curve, "exact",
                   {"crossing_radius": crossing.crossing_radius})


def _reference_answer(mag: MagnitudeCurve, spec: Spectrum, phi: Phi, crossing: _Crossing,
                      cfg: _Settings, clock: Stopwatch) -> _Answer:
    """Stage "reference_emulation": the published pipeline's answer; the exact one kept in
    ``details``."""
    with clock("reference_emulation"):
        ref = reference_pipeline(mag, spec, cfg.eps, cfg.zero_mass, cfg.negative)
    details = {"exact_sparsity": crossing.sparsity, "exact_radius": crossing.radius, **ref.details}
    curve = Curve(ref.radii, ref.phi, ref.magnitude_sparsity)
    return _Answer(ref.sparsity, ref.radius, curve, "reference_emulation", details)


#: ``reference_emulation`` → the stage that gives the answer.
_ANSWERS: dict[bool, Callable[..., _Answer]] = {False: _exact_answer, True: _reference_answer}


def critical_sparsity(
    weights: Any,
    spectrum: Any,
    eps: float,
    eta: float = 0.01,
    negative: Negative = "abs",
    zero_mass: float = 0.0,
    trace: float | None = None,
    params: ParamSelection = None,
    bootstrap: int = 200,
    seed: int = 0,
    reference_emulation: bool = False,
) -> Prediction:
    """Predicted critical sparsity: the root ``s*`` of ``s = Φ(R(s))`` (Zhang et al. 2024, §3)::

        R(s) = sqrt(Σ of the ⌈sD⌉ smallest w_i²),
        Φ(R) = p0 + (1 − p0) · (1/K) Σ_k Σ_j τ_jk / (1 + |θ_jk| R²/(2ε))

    solved exactly (bisection on the number of pruned weights; see :func:`exact_root`).

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
        Mass ``p0`` of exactly flat directions added to Φ (see :func:`phasetrans.predict.estimate_zero_mass`).
    trace : float, optional
        Estimate of Tr(H) for the Jensen bound; default: ``D (1 − p0) Σ m |θ|`` from the
        spectrum under the ``negative`` policy (then the bound provably holds).
    bootstrap : int
        Resamples of the SLQ probes for ``uncertainty`` (0: none; needs ≥ 2 probes).
    reference_emulation : bool
        Reproduce the published pipeline instead (:func:`.reference.reference_pipeline`); the exact
        answer is kept in ``details["exact_sparsity"]``.
    """
    clock = Stopwatch()
    cfg = _check_arguments(eps, eta, negative, zero_mass, bootstrap, seed, reference_emulation, trace)
    with clock("sort"):
        mag = magnitude_curve(weights, params, keep_sorted=cfg.reference_emulation)
    with clock("solve"):
        spec, phi, crossing = _solve(mag, spectrum, cfg)
    trace_value, trace_source = _trace(mag, phi, cfg)
    bound = trace_bound_sparsity(crossing.crossing_radius, trace_value, cfg.eps, mag.dim)
    with clock("bootstrap"):  # the key is kept (≈ 0 s) for the reference pipeline too
        uncertainty = None if cfg.reference_emulation else bootstrap_uncertainty(
            mag, spec, cfg.eps, cfg.zero_mass, cfg.negative, cfg.bootstrap, cfg.seed)
    answer = _ANSWERS[cfg.reference_emulation](mag, spec, phi, crossing, cfg, clock)
    s_star, D = answer.sparsity, mag.dim
    half = kinematic_window(D, cfg.eta)
    timings = {**clock.timings, "total": clock.elapsed}
    return Prediction(
        sparsity=float(s_star), lower=max(0.0, s_star - half), upper=min(1.0, s_star + half),
        radius=float(answer.radius), eps=cfg.eps, dim=D, eta=cfg.eta, negative=cfg.negative,
        zero_mass=cfg.zero_mass, num_pruned=pruned_count(s_star, D), trace=float(trace_value),
        trace_source=trace_source, trace_bound_sparsity=bound, curve=answer.curve,
        spectrum=spectrum, spectrum_kind=spec.kind, uncertainty=uncertainty, timings=timings,
        method=answer.method, details=answer.details,
    )


def reference_critical_sparsity(
    weights: Any,
    spectrum: Any,
    eps: float,
    eta: float = 0.01,
    negative: Negative = "abs",
    zero_mass: float = 0.0,
    trace: float | None = None,
    params: ParamSelection = None,
) -> Prediction:
    """The published pipeline's critical sparsity (:func:`.reference.reference_pipeline`: a
    grid-smoothed density, Φ at integer radii, 1000 sparsity ratios), as a :class:`Prediction`
    with ``method="reference_emulation"`` and the exact root in ``details["exact_sparsity"]``;
    the same as ``critical_sparsity(..., reference_emulation=True)``. Arguments as there."""
    return critical_sparsity(weights, spectrum, eps, eta=eta, negative=negative,
                             zero_mass=zero_mass, trace=trace, params=params, bootstrap=0,
                             reference_emulation=True)
