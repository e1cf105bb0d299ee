"""Predicting the critical sparsity of a trained model: the model-level layer over the theory
(Zhang, Zhang, Sun, Liu, NeurIPS 2024). :func:`predict_sparsity` builds the dataset-level Hessian,
estimates its spectrum (SLQ, or dense eigenvalues for small ``D``), the loss tolerance ε, the
trace for the Jensen bound and the flat mass ``p0`` where asked, and solves ``s = Φ(R(s))``
exactly (:func:`phasetrans.theory.critical.critical_sparsity`); then it checks whether that
answer describes one-shot pruning of this network (:func:`applicability_stage`, THEORY §7).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ._batches import as_batches, batch_size
from ._checks import check_choice, check_float, check_int, check_model, check_seed, preserve_model
from ._io import check_path, to_jsonable
from ._progress import resolve_progress
from ._timing import Stopwatch
from .linalg.hessian import BatchNormMode, HessianOperator
from .linalg.memory import check_fits
from .linalg.operator import as_operator
from .linalg.trace import TraceMethod
from .params import ParamSelection, pruned_count
from .theory.applicability import (
    Applicability,
    assess_applicability,
    implied_l1,
    quadratic_path_losses,
    spike_mass,
)
from .theory.critical import Prediction, check_eta, critical_sparsity
from .theory.magnitude import weights_tensor
from .theory.spectrum import to_numpy
from .theory.width import Negative, check_eps, check_negative, check_zero_mass

__all__ = [
    "BatchNormMode",
    "applicability_stage",
    "SpectrumMethod",
    "TraceMethod",
    "ZeroMassEstimate",
    "batch_loss_std",
    "estimate_eps",
    "estimate_zero_mass",
    "hessian_subset",
    "predict_sparsity",
]

#: How the spectrum is estimated: stochastic Lanczos quadrature, or dense ``eigvalsh`` (small D).
SpectrumMethod = Literal["slq", "exact"]
TRACE_METHODS: tuple[TraceMethod, ...] = ("hutchinson", "hutch++", "xtrace")


# ------------------------------------------------------------------------------------------
# ε and p0 from the model
# ------------------------------------------------------------------------------------------
def batch_loss_std(losses: Any) -> float:
    """Default ε: the standard deviation of the mini-batch training losses at ``w*``.

    Population standard deviation (``ddof=0``, unweighted by batch size), as the reference code's
    ``np.std(loss_list)``. Needs at least two batches.
    """
    arr = to_numpy(losses, "losses").reshape(-1)
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


def estimate_eps(model: nn.Module, loss_fn: Any, data: Any, params: ParamSelection = None,
                 batchnorm: BatchNormMode = "eval", batch_fn: Any = None) -> float:
    """The default loss tolerance ε: :func:`batch_loss_std` of the mini-batch training losses at
    the current weights, batches as given by ``data`` (forward passes only; data-parallel when
    ``torch.distributed`` is initialised); ``batch_fn(batch) -> (inputs, targets)`` for batches
    of another shape. The model is unchanged. A shuffling DataLoader is read in one fixed order
    (CPU RNG forked and seeded with 0, the loader's own generator put back after:
    :class:`~phasetrans._batches.FixedOrder`), so repeated calls give the same ε."""
    with preserve_model(check_model(model)):
        return _eps_from_operator(HessianOperator(model, loss_fn, data, params=params,
                                                  batchnorm=batchnorm, batch_fn=batch_fn))[0]


@dataclass(frozen=True)
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
    op = as_operator(H)
    num_rows = check_int(num_rows, "num_rows", minimum=1)
    check_fits(num_rows * (8 * 4 + 8 * 8), f"{num_rows} sampled rows", "num_rows", op.device)
    chunk = check_int(chunk, "chunk", minimum=1)
    threshold = check_float(threshold, "threshold", minimum=0.0, strict_minimum=True)
    if weights is None:
        if not hasattr(op, "parameters_vector"):
            raise ValueError("weights must be given when H is not a HessianOperator")
        flat = op.parameters_vector()
    else:
        flat = weights_tensor(weights)
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
# predict_sparsity: a list of stages
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Settings:
    """The checked arguments of :func:`predict_sparsity` that its stages use."""

    eps: float | None
    num_steps: int | None
    num_probes: int | None
    seed: int
    zero_mass: float | Literal["estimate"]
    trace_method: TraceMethod | None
    trace_matvecs: int
    spectrum_method: SpectrumMethod
    zero_mass_rows: int
    tolerance: float
    hessian_samples: int | None
    checkpoint: Any = None
    progress: bool = False

    @property
    def adaptive(self) -> bool:
        """The SLQ budget grows until ``s*`` is settled (``num_steps`` or ``num_probes`` None)."""
        return self.spectrum_method == "slq" and (self.num_steps is None or self.num_probes is None)


def _check_arguments(model: Any, eps: Any, num_steps: Any, num_probes: Any, seed: Any, eta: Any,
                     negative: Any, zero_mass: Any, trace_method: Any, trace_matvecs: Any,
                     bootstrap: Any, spectrum_method: Any, zero_mass_rows: Any,
                     reference_emulation: Any, tolerance: Any, hessian_samples: Any,
                     checkpoint: Any = None, progress: Any = None) -> _Settings:
    check_model(model)
    if eps is not None:
        eps = check_eps(eps)
    if num_steps is not None:
        num_steps = check_int(num_steps, "num_steps", minimum=1)
    if num_probes is not None:
        num_probes = check_int(num_probes, "num_probes", minimum=1)
    tolerance = check_float(tolerance, "tolerance", minimum=0.0, strict_minimum=True)
    if hessian_samples is not None:
        hessian_samples = check_int(hessian_samples, "hessian_samples", minimum=1)
    seed = check_seed(seed)
    check_eta(eta)
    check_negative(negative)
    zero_mass = check_zero_mass(zero_mass, allow_estimate=True)
    if trace_method is not None:
        check_choice(trace_method, "trace_method", TRACE_METHODS)
    # Hutchinson needs 2 products for a standard error, Hutch++ and XTrace 4 for their sketches
    trace_matvecs = check_int(
        trace_matvecs, "trace_matvecs", minimum={"hutchinson": 2}.get(trace_method or "", 4)
        if trace_method is not None else 1,
    )
    check_int(bootstrap, "bootstrap", minimum=0)
    spectrum_method = check_choice(spectrum_method, "spectrum_method", ("slq", "exact"))
    if bootstrap > 0 and num_probes is not None and num_probes < 2 and spectrum_method != "exact":
        warnings.warn(
            "bootstrap needs num_probes >= 2: no SLQ uncertainty is reported (uncertainty=None)",
            RuntimeWarning, stacklevel=3,
        )
    zero_mass_rows = check_int(zero_mass_rows, "zero_mass_rows", minimum=1)
    if not isinstance(reference_emulation, bool):
        raise TypeError(f"reference_emulation must be a bool, got {type(reference_emulation).__name__}")
    if checkpoint is not None:
        checkpoint = check_path(checkpoint, "checkpoint")
        if spectrum_method != "slq":
            raise ValueError("checkpoint needs spectrum_method='slq' (it resumes the SLQ spectrum)")
    return _Settings(eps, num_steps, num_probes, seed, zero_mass, trace_method, trace_matvecs,
                     spectrum_method, zero_mass_rows, tolerance, hessian_samples, checkpoint,
                     resolve_progress(progress))  # type: ignore[arg-type]


def _eps_stage(H: HessianOperator, cfg: _Settings) -> tuple[float, str, dict]:
    """Stage "eps" (only for ``eps=None``): the std of the mini-batch losses at ``w*``."""
    eps, mean_loss, num_batches = _eps_from_operator(H)
    return eps, "batch_loss_std", {"train_loss": mean_loss, "num_batches": num_batches}


def _spectrum_stage(H: HessianOperator, cfg: _Settings) -> tuple[Any, int]:
    """Stage "spectrum" with fixed settings: ``slq(H, num_steps, num_probes, seed)``, or all
    eigenvalues (dense); and the column products it made."""
    if cfg.spectrum_method == "slq":
        from .linalg.slq import slq

        spec = slq(H, num_steps=cfg.num_steps, num_probes=cfg.num_probes, seed=cfg.seed,
                   checkpoint=cfg.checkpoint, progress=cfg.progress)
        return spec, int(spec.lengths.sum())
    return torch.linalg.eigvalsh(H.to_dense().to(torch.float64)), H.dim


def _adaptive_spectrum_stage(H: HessianOperator, weights: torch.Tensor, eps: float, p0: float,
                             negative: Negative, cfg: _Settings) -> tuple[Any, dict]:
    """Stage "spectrum" with an adaptive budget (:func:`~phasetrans.theory.budget.adaptive_spectrum`):
    SLQ grown until ``s*`` is settled to ``cfg.tolerance``; the spectrum and the budget's record."""
    from .theory.budget import adaptive_spectrum
    from .theory.magnitude import magnitude_curve

    spec, record = adaptive_spectrum(
        H, magnitude_curve(weights), eps, negative=negative, zero_mass=p0,
        tolerance=cfg.tolerance, num_steps=cfg.num_steps, num_probes=cfg.num_probes, seed=cfg.seed,
        checkpoint=cfg.checkpoint)
    return spec, record.to_dict()


def hessian_subset(data: Any, num_samples: int, batch_fn: Any = None) -> list[tuple[Any, Any]]:
    """The first ``num_samples`` samples of ``data``, in its batches (the last one cut), held as
    a list of ``(inputs, targets)`` (through ``batch_fn`` when given): a fixed set, so the Hessian
    on it is a fixed matrix even if ``data`` shuffles."""
    out, taken = [], 0
    for inputs, targets in as_batches(data, batch_fn=batch_fn):
        if taken >= num_samples:
            break
        n = min(batch_size(inputs), num_samples - taken)
        out.append((_head(inputs, n), _head(targets, n)))
        taken += n
    return out


def _head(t: Any, n: int) -> Any:
    if isinstance(t, torch.Tensor):
        return t[:n]
    if isinstance(t, (tuple, list)):
        return type(t)(_head(x, n) for x in t)
    return t


def _trace_stage(H: HessianOperator, cfg: _Settings) -> tuple[float, dict]:
    """Stage "trace" (only with a ``trace_method``): Tr(H) for the reported Jensen bound."""
    from .linalg.trace import trace as estimate_trace

    est = estimate_trace(H, method=cfg.trace_method, num_matvecs=cfg.trace_matvecs, seed=cfg.seed,
                         progress=cfg.progress)
    return float(est.value), {"trace_stderr": to_jsonable(getattr(est, "stderr", None)),
                              "trace_method": cfg.trace_method}


def _zero_mass_stage(H: HessianOperator, weights: torch.Tensor, cfg: _Settings) -> tuple[float, dict]:
    """Stage "zero_mass" (only for ``zero_mass="estimate"``): :func:`estimate_zero_mass`."""
    zm = estimate_zero_mass(H, weights, num_rows=cfg.zero_mass_rows)
    p0 = min(zm.fraction, 1.0 - 0.5 / cfg.zero_mass_rows)  # every row flat: p0 < 1
    return p0, {"zero_mass_estimate": zm.fraction, "zero_mass_row_l1": zm.row_l1}


def applicability_stage(H: HessianOperator, sparsity: float, eps: float,
                        gradient: torch.Tensor | None = None) -> tuple[Applicability, dict]:
    """Stage "applicability" (THEORY §7): ``ΔL₂(s*) = gᵀδ(s*) + ½δ(s*)ᵀHδ(s*)`` along the actual
    magnitude-pruning direction at the paper's ``s*``, against ε
    (:func:`~phasetrans.theory.applicability.assess_applicability`). One gradient pass (skipped
    when ``gradient`` is given) and one Hessian column. Returns the verdict and the costs."""
    passes = 0
    if gradient is None:
        _, gradient, _, _ = H.loss_and_gradient()
        passes = 1
    w = H.parameters_vector()
    first, second = quadratic_path_losses(gradient, H, w, [sparsity])
    verdict = assess_applicability(first[0], second[0], eps, sparsity, spike_mass(w),
                                   implied_l1(gradient, w, sparsity))
    return verdict, {"gradient_passes": passes, "hessian_columns": 1}


def predict_sparsity(
    model: nn.Module,
    loss_fn: Any,
    data: Any,
    eps: float | None = None,
    num_steps: int | None = None,
    num_probes: int | None = None,
    seed: int = 0,
    eta: float = 0.01,
    negative: Negative = "abs",
    zero_mass: float | Literal["estimate"] = 0.0,
    params: ParamSelection = None,
    batchnorm: BatchNormMode = "eval",
    trace_method: TraceMethod | None = None,
    trace_matvecs: int = 100,
    bootstrap: int = 200,
    reference_emulation: bool = False,
    spectrum_method: SpectrumMethod = "slq",
    zero_mass_rows: int = 100,
    batch_fn: Any = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool | None = None,
    tolerance: float = 1e-3,
    hessian_samples: int | None = None,
) -> Prediction:
    """Predict the critical sparsity of a trained ``model`` (Zhang et al., NeurIPS 2024).

    Builds the dataset-level ``HessianOperator`` of ``loss_fn`` over ``data`` w.r.t. ``params``
    (default: the prunable weights), estimates its spectrum (``spectrum_method="slq"``:
    ``slq(H, num_steps, num_probes, seed)``; ``"exact"``: dense ``eigvalsh``, small ``D`` only)
    and solves ``s = Φ(R(s))`` exactly (:func:`~phasetrans.theory.critical.critical_sparsity`).

    ``eps=None``: the standard deviation of the per-batch training losses at ``w*`` over the
    batches of ``data`` as given (population std, ``ddof=0``, like the reference's ``np.std``;
    :func:`batch_loss_std`). ``zero_mass``: a number in [0, 1) or ``"estimate"``
    (:func:`estimate_zero_mass`, ``zero_mass_rows`` rows). ``trace_method``: ``"hutchinson"``,
    ``"hutch++"``, ``"xtrace"`` (``trace_matvecs`` more products) for the reported trace bound, or
    ``None`` (the default: the trace from the spectrum, ``D · mean_k v_kᵀHv_k`` over the SLQ
    probes — Hutchinson's estimator, at no extra product; the trace only enters the reported
    Jensen bound, never ``s*``). ``params``: names, ``nn.Parameter`` objects or modules
    (:func:`~phasetrans.params.select_parameters`). ``batch_fn(batch) -> (inputs, targets)``:
    for batches of another shape (e.g. dicts; ``inputs`` may be a tuple or dict of the model's
    arguments). ``checkpoint``: a file path for the SLQ state (with a fixed budget
    :func:`~phasetrans.slq`'s ``checkpoint``; with the adaptive one the grown Lanczos state,
    written after every growth step): an interrupted call resumes from it, to the same result. ``progress``: bars
    of the SLQ steps and trace products on standard error (``None``: only when standard error is
    a terminal). The model comes back bit-for-bit unchanged. Every pass over ``data`` reads the
    same batches, also from a shuffling DataLoader (``drop_last`` included), so ``H`` is one
    fixed matrix and ε, and so the prediction, are the same on every call
    (:class:`~phasetrans.HessianOperator`).

    ``applies`` / ``warnings`` of the result (THEORY §7): does ``s*`` describe one-shot pruning of
    *this* network? ``ΔL₂(s*)/ε ≤ 2.5`` for the second-order loss change of the actual
    magnitude-pruned point (one gradient pass and one Hessian column, ``details["applicability"]``)
    and ``s*`` at most 0.03 past the near-zero spike of ``|w|`` (:mod:`.theory.applicability`).
    True in the paper's regime (strong l1, most weights near zero); where False the warnings say
    why and point to :func:`phasetrans.predict_oneshot`.

    **Budget.** ``num_steps=None`` and/or ``num_probes=None`` (the default): an adaptive budget
    (:func:`~phasetrans.theory.budget.adaptive_spectrum`) adds Lanczos steps (checked every 10,
    up to 180) and probes (2, 4, 8, 10), never past 800 column products (the fixed 80 × 10), only
    until ``s*`` is settled to ``tolerance`` (default 1e-3, 0.1 point of sparsity): bootstrap std
    over probes + the largest move of ``s*`` over the checked depths of the last third
    ``≤ tolerance``. Explicit values keep their meaning (that many steps or probes,
    bit for bit as before); with one of them fixed only the other grows.
    ``Prediction.products`` counts the column Hessian products of the spectrum, trace and zero-mass
    stages (the applicability check's one column is recorded apart, in
    ``details["applicability"]["hessian_columns"]``); ``details["budget"]`` the steps, probes and history; ``uncertainty`` gains
    ``depth_change``, ``tolerance`` and ``settled``.

    **Hessian on a subset.** ``hessian_samples=n``: the Hessian (spectrum, trace, zero mass) on
    the first ``n`` samples of ``data`` (in its batches; shuffle an ordered dataset first), ε on
    all of it. ``H_n`` is a sample mean over the ``n`` samples, so its error (and that of ``s*``)
    falls like ``1/√n``; measured on the study's digits networks (N = 1297, docs/BENCHMARKS.md
    §0): ``n = 300`` moved ``s*`` by up to 0.42 point, ``n = 600`` by up to 0.16. Rule: enough
    data is when halving ``n`` moves ``s*`` by less than the tolerance you need (compare ``n``
    and ``n/2``); on these networks that is ``n ≳ N/2`` for 0.2 point.
    """
    clock = Stopwatch()
    cfg = _check_arguments(model, eps, num_steps, num_probes, seed, eta, negative, zero_mass,
                           trace_method, trace_matvecs, bootstrap, spectrum_method,
                           zero_mass_rows, reference_emulation, tolerance, hessian_samples,
                           checkpoint, progress)
    eps, eps_source, p0, trace_value, details = cfg.eps, "user", cfg.zero_mass, None, {}
    products, budget = 0, None
    with preserve_model(model):
        H = HessianOperator(model, loss_fn, data, params=params, batchnorm=batchnorm,
                            batch_fn=batch_fn)
        weights = H.parameters_vector()
        if eps is None:
            with clock("eps"):
                eps, eps_source, found = _eps_stage(H, cfg)
            details.update(found)
        if cfg.hessian_samples is not None:
            H = HessianOperator(model, loss_fn, hessian_subset(data, cfg.hessian_samples, batch_fn),
                                params=params, batchnorm=batchnorm)
            details["hessian_samples"] = cfg.hessian_samples
        if p0 == "estimate" and cfg.adaptive:  # the stop rule needs p0 first
            with clock("zero_mass"):
                p0, found = _zero_mass_stage(H, weights, cfg)
            details.update(found)
            products += cfg.zero_mass_rows
        with clock("spectrum"):
            if cfg.adaptive:
                spectrum, budget = _adaptive_spectrum_stage(H, weights, eps, p0, negative, cfg)
                products += budget["products"]
                details["budget"] = budget
            else:
                spectrum, used = _spectrum_stage(H, cfg)
                products += used
        if cfg.trace_method is not None:
            with clock("trace"):
                trace_value, found = _trace_stage(H, cfg)
            details.update(found)
            products += cfg.trace_matvecs
        if p0 == "estimate":
            with clock("zero_mass"):
                p0, found = _zero_mass_stage(H, weights, cfg)
            details.update(found)
            products += cfg.zero_mass_rows

        pred = critical_sparsity(
            weights, spectrum, eps, eta=eta, negative=negative, zero_mass=p0, trace=trace_value,
            bootstrap=bootstrap, seed=cfg.seed, reference_emulation=reference_emulation,
        )
        with clock("applicability"):
            verdict, cost = applicability_stage(H, pred.sparsity, eps)
        details["applicability"] = {**verdict.to_dict(), **cost}
    timings = {**clock.timings, **{f"solve_{k}": v for k, v in pred.timings.items()}}
    uncertainty = pred.uncertainty
    if budget is not None and uncertainty is not None:
        uncertainty = {**uncertainty, "depth_change": budget["depth_change"],
                       "tolerance": budget["tolerance"], "settled": budget["settled"]}
    return dataclasses.replace(
        pred, trace_source=cfg.trace_method or pred.trace_source, eps_source=eps_source,
        details={**pred.details, **details}, timings={**timings, "total": clock.elapsed},
        applies=verdict.applies, warnings=verdict.warnings,
        uncertainty=uncertainty, products=products,
    )
