"""Stochastic Lanczos quadrature of a symmetric operator's spectral measure.

References: S. Ubaru, J. Chen, Y. Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos
quadrature", SIAM J. Matrix Anal. Appl. 38(4), 2017; B. Ghorbani, S. Krishnan, Y. Xiao, "An
investigation into neural net optimization via Hessian eigenvalue density", ICML 2019;
G. H. Golub, G. Meurant, *Matrices, Moments and Quadrature with Applications* (2010).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from .._checks import check_choice, check_int, check_seed
from .._io import check_path
from .._progress import progress_bar, resolve_progress
from ..distributed import all_gather_list, run_on_main_process
from ._checkpoint import load_slq_checkpoint, run_with_checkpoints, slq_meta
from .density import SpectralDensity
from .lanczos import Lanczos, Reorth, breakdown_tol, tridiag_eigh
from .memory import available_bytes, check_fits, human_bytes
from .operator import Operator, as_operator, check_ranks_agree_on, guard
from .probes import rademacher

__all__ = ["slq", "gauss_quadrature", "probe_group_size", "available_bytes", "human_bytes"]

_F64 = torch.float64


def slq(
    H: Any,
    num_steps: int = 80,
    num_probes: int = 10,
    seed: int = 0,
    reorth: Reorth = "full",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    basis_bytes: int | None = None,
    progress: bool | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019).

    For ``K = num_probes`` normalised Rademacher probes ``q_k`` (CPU generator seeded with
    ``seed``), ``m = num_steps`` Lanczos steps give ``T_k = Σ_j θ_jk y_jk y_jkᵀ`` and the Gauss
    quadrature ``q_kᵀ f(H) q_k ≈ Σ_j τ_jk f(θ_jk)``, ``τ_jk = (e_1ᵀ y_jk)²`` (Golub & Meurant),
    whose mean over probes estimates ``(1/D) tr f(H)``. The probes run in lock-step: each step is
    one ``H @ Q`` with ``K`` columns (one data pass). Float64 throughout.

    ``reorth="full"`` (default) reorthogonalises every new vector against all previous Lanczos
    vectors of its probe (classical Gram–Schmidt, a second pass only for the probes whose norm
    dropped below ``1/√2`` of its value: DGKS; memory ``K · m · D`` float64); ``"partial"``
    (Simon 1984) tracks the loss of orthogonality with the ω-recurrence and reorthogonalises only
    the probes, and steps, where it exceeds ``√ε`` (same memory, fewer passes over the basis;
    Ritz values as accurate as with ``"full"``, to ``O(ε ‖H‖)``, ``ε`` the unit round-off of the
    products); ``"none"`` keeps only the three-term recurrence (memory ``O(K · D)``; loss of
    orthogonality produces spurious copies of converged extreme Ritz values, whose weights stay
    consistent). See :class:`SpectralDensity` for the padding of probes that break down.

    ``checkpoint``: a file path. The Lanczos state (per-step ``α``/``β``, the current and
    previous vectors, the basis for ``reorth="full"``/``"partial"`` and the ω estimates for
    ``"partial"``; plain tensors, ``torch.save``) is
    written atomically (temp file + fsync + rename) every ``checkpoint_every`` steps and at the
    end. If the file exists, the run resumes from it (probes are seeded, so no RNG state is
    needed) and gives bit-for-bit the result of an uninterrupted run. The file records the
    arguments, the operator's dim/dtype, a SHA-256 of every parameter and buffer of the model
    (or of the matrix) and, for a ``HessianOperator``, a SHA-256 of every batch and the
    per-batch losses (one forward pass over the data when the call starts; a different
    ``loss_fn`` gives other losses). A file written by a different call, a damaged one (its
    SHA-256 checksum), a hand-edited one or one of the older format (``/1``) raises
    ``ValueError`` naming the path. It is loaded with ``weights_only=True``.
    A non-finite product raises ``ValueError`` naming the Lanczos step (and the data batch).

    ``basis_bytes``: memory budget for the stored Lanczos vectors of ``"full"``/``"partial"``
    (``min(m, D) · D`` float64 per probe; 67 GiB for ResNet-18's 11.2M weights with 10 probes and
    80 steps). When all probes do not fit, they run in lock-step groups of as many as fit, one
    group after the other (same probes, same result to rounding; more data passes). Default: half
    of the available memory (``MemAvailable``, or the GPU's free memory). A budget below one
    probe's basis raises ``ValueError`` before anything is allocated; so do ``num_steps`` above
    ``max(dim, 1000)`` (Lanczos takes at most ``dim`` steps) and probes or results that cannot
    fit in memory. Data-parallel: every rank must pass the same ``num_steps``, ``num_probes``,
    ``seed``, ``reorth`` and weights, else ``ValueError`` on every rank.

    ``progress``: a bar of the Lanczos steps on standard error (``None``: only when standard
    error is a terminal; :mod:`phasetrans._progress`).
    """
    op = as_operator(H)
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    num_probes = check_int(num_probes, "num_probes", minimum=1)
    seed = check_seed(seed)
    reorth = check_choice(reorth, "reorth", ("full", "partial", "none"))
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=1)
    path = None if checkpoint is None else check_path(checkpoint, "checkpoint")
    if basis_bytes is not None:
        basis_bytes = check_int(basis_bytes, "basis_bytes", minimum=1)
    show = resolve_progress(progress)
    _check_request(op, num_steps, num_probes)
    check_ranks_agree_on(op, "slq", num_steps=num_steps, num_probes=num_probes, seed=seed,
                         reorth=reorth)
    group = probe_group_size(op, num_probes, num_steps, reorth, basis_bytes)
    Q0 = rademacher(op.dim, num_probes, seed, op.device) / math.sqrt(op.dim)
    with guard(op):
        meta = state = None
        if path is not None:
            meta = slq_meta(op, num_steps, num_probes, seed, reorth, breakdown_tol(op), group)
            # data-parallel: every rank runs the same recurrence; rank 0 reads the checkpoint and
            # shares it (errors too, so no rank waits forever), and only rank 0 writes it
            state = run_on_main_process(lambda: load_slq_checkpoint(path, meta))
        groups = -(-num_probes // group)
        with progress_bar(show, groups * min(num_steps, op.dim), "slq", "step") as bar:
            alphas, betas, lengths = _run_groups(op, Q0, num_steps, reorth, group, path, meta,
                                                 state, checkpoint_every, bar)
    return gauss_quadrature(alphas, betas, lengths, num_steps, op.dim)


def _run_groups(op: Operator, Q0: torch.Tensor, num_steps: int, reorth: Reorth, group: int,
                path: Any, meta: dict | None, state: dict | None, every: int, bar: Any = None):
    """The Lanczos coefficients ``(alphas, betas, lengths)`` of all probes (columns of ``Q0``),
    run in lock-step groups of ``group`` probes, one group after the other; with a checkpoint
    ``path``, resumed from ``state`` (its group and the finished groups' coefficients); ``bar``
    (a progress bar) advances by one per step."""
    num_probes = Q0.shape[1]
    alphas = torch.zeros(num_probes, min(num_steps, op.dim), dtype=_F64)
    betas = torch.zeros_like(alphas)
    lengths = torch.zeros(num_probes, dtype=torch.int64)
    first = 0
    if state is not None and "group_start" in state:
        first = state["group_start"]
        if isinstance(first, bool) or not isinstance(first, int) or not (
                0 <= first < num_probes and first % group == 0):
            raise ValueError(f"checkpoint: 'group_start' must be a multiple of {group} in "
                             f"[0, {num_probes}), got {first!r}")
        for name, done in (("alphas", alphas), ("betas", betas), ("lengths", lengths)):
            saved = state.get("done_" + name)
            if (not isinstance(saved, torch.Tensor) or saved.dtype != done.dtype
                    or tuple(saved.shape) != (first, *done.shape[1:])):
                raise ValueError(f"checkpoint: 'done_{name}' has the wrong shape or dtype")
            done[:first] = saved
    for lo in range(first, num_probes, group):
        hi = min(num_probes, lo + group)
        lanczos = Lanczos(op, Q0[:, lo:hi], num_steps, reorth, breakdown_tol(op))
        if bar is not None:
            bar.update(lo // group * lanczos.capacity - bar.n)  # the finished groups (a resume)
        on_step = None if bar is None else (lambda: bar.update(1))
        if path is None:
            while not lanczos.done and lanczos.steps < num_steps:  # lanczos.run, step by step
                lanczos.step()
                if on_step is not None:
                    on_step()
        else:
            run_with_checkpoints(lanczos, path, meta, state if lo == first else None,
                                 every, extra={
                                     "group_start": lo, "done_alphas": alphas[:lo].clone(),
                                     "done_betas": betas[:lo].clone(),
                                     "done_lengths": lengths[:lo].clone()}, on_step=on_step)
        alphas[lo:hi] = lanczos.alphas
        betas[lo:hi] = lanczos.betas
        lengths[lo:hi] = lanczos.lengths
        del lanczos
    return alphas, betas, lengths


def gauss_quadrature(alphas: torch.Tensor, betas: torch.Tensor, lengths: torch.Tensor, num_steps: int,
                dim: int) -> SpectralDensity:
    """Each probe's Gauss rule from its tridiagonal ``T_k = Σ_j θ_jk y_jk y_jkᵀ``: nodes
    ``θ_jk``, weights ``τ_jk = (e_1ᵀ y_jk)²`` (normalised to sum 1), padded past ``lengths[k]``
    with weight 0 at the last node."""
    num_probes = alphas.shape[0]
    nodes = torch.zeros(num_probes, num_steps, dtype=_F64)
    weights = torch.zeros(num_probes, num_steps, dtype=_F64)
    for k in range(num_probes):
        n = int(lengths[k])
        a, b = alphas[k, :n].numpy(), betas[k, : max(n - 1, 0)].numpy()
        theta, Y = tridiag_eigh(a, b)
        tau = Y[0] ** 2
        n = len(theta)
        nodes[k, :n] = torch.from_numpy(theta)
        nodes[k, n:] = float(theta[-1])
        weights[k, :n] = torch.from_numpy(tau / tau.sum())
    return SpectralDensity(nodes, weights, dim, lengths)


#: ``num_steps`` may exceed ``dim`` up to this (small models with the default 80 steps)
MAX_STEPS_PAST_DIM = 1000


def _check_request(op: Operator, num_steps: int, num_probes: int) -> None:
    """Before any work: ``num_steps`` at most ``max(dim, 1000)`` (Lanczos takes at most ``dim``
    steps; more only pads the result), and the probes plus the results fit in memory."""
    most = max(op.dim, MAX_STEPS_PAST_DIM)
    if num_steps > most:
        raise ValueError(
            f"num_steps must be <= max(dim, {MAX_STEPS_PAST_DIM}) = {most}, got {num_steps}: "
            f"Lanczos takes at most dim = {op.dim} steps (the Krylov space is then the whole "
            f"space), more would only pad the result")
    # the probes (int64 draw, float64 columns, the rows Q, Q_prev and a product: ~6 copies of
    # dim x K) and the results (nodes, weights, alphas, betas: K x num_steps float64 each)
    check_fits(num_probes * (6 * 8 * op.dim + 4 * 8 * num_steps),
               f"{num_probes} probes of dim {op.dim} with {num_steps} steps", "num_probes",
               op.device)


def probe_group_size(op: Operator, num_probes: int, num_steps: int, reorth: Reorth,
                     basis_bytes: int | None) -> int:
    """How many probes run in lock-step: all of them unless their stored Lanczos vectors
    (``min(m, D) · D`` float64 each) exceed ``basis_bytes`` (default half the available memory)."""
    if reorth == "none":
        return num_probes
    per_probe = min(num_steps, op.dim) * op.dim * 8
    budget = basis_bytes if basis_bytes is not None else available_bytes(op.device) // 2
    if getattr(op, "distributed", False):
        # every rank must make the same products (each one all-reduces): the smallest budget
        budget = min(all_gather_list([budget]))
    if per_probe > budget:
        raise ValueError(
            f"slq: one probe's Lanczos basis ({min(num_steps, op.dim)} steps x dim {op.dim} "
            f"float64 = {human_bytes(per_probe)}) exceeds basis_bytes = {human_bytes(budget)}"
            f"{' (half the available memory)' if basis_bytes is None else ''}; use fewer "
            f"num_steps, reorth='none' (no stored basis), or a larger basis_bytes"
        )
    return max(1, min(num_probes, budget // per_probe))
