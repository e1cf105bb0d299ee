"""Checkpoints of :func:`~phasetrans.linalg.slq.slq`: what identifies a run, loading, saving.

Format ``phasetrans.slq-checkpoint/1`` (``torch.save`` of plain tensors, loaded with
``weights_only=True``): ``{"kind", "meta", "state"}``; ``meta`` holds the arguments, the
operator's dim/dtype, the breakdown tolerance and :func:`operator_fingerprint`; ``state`` is
:meth:`Lanczos.state` of the running probe group plus ``group_start`` and the finished groups'
``done_alphas``/``done_betas``/``done_lengths``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from .._io import atomic_torch_save, load_checkpoint
from ..distributed import is_main_process
from .lanczos import Lanczos
from .operator import Operator

__all__ = ["SLQ_KIND", "operator_fingerprint", "slq_meta", "load_slq_checkpoint", "run_with_checkpoints"]

SLQ_KIND = "phasetrans.slq-checkpoint/1"


def operator_fingerprint(op: Operator) -> str | None:
    """SHA-256 of what defines the operator where that is cheap to read (a HessianOperator's
    selected parameters and their names; a dense matrix), else ``None``. The data behind a
    HessianOperator is not hashed."""
    h = hashlib.sha256()
    if hasattr(op, "parameters_vector") and hasattr(op, "param_names"):
        h.update(repr(list(op.param_names)).encode())
        h.update(op.parameters_vector().detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        h.update(repr(getattr(op, "batchnorm", None)).encode())
        return "params:" + h.hexdigest()
    matrix = getattr(op, "matrix", None)
    if isinstance(matrix, torch.Tensor):
        h.update(str(matrix.dtype).encode())
        h.update(matrix.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return "matrix:" + h.hexdigest()
    return None


def slq_meta(op: Operator, num_steps: int, num_probes: int, seed: int, reorth: str, tol: float,
             group: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (``probe_group`` only when the probes run in
    groups, so files written without groups keep matching)."""
    meta = {
        "dim": int(op.dim), "dtype": str(op.dtype), "num_steps": num_steps,
        "num_probes": num_probes, "seed": seed, "reorth": reorth,
        "tol": float(tol), "operator": operator_fingerprint(op),
    }
    if group < num_probes:
        meta["probe_group"] = group
    return meta


def load_slq_checkpoint(path: Any, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state, ``None`` when there is no file; ``ValueError`` for another run's file."""
    obj = load_checkpoint(path, SLQ_KIND, meta, "an slq")
    return None if obj is None else obj["state"]


def run_with_checkpoints(lanczos: Lanczos, path: Any, meta: dict, state: dict | None,
                         every: int, extra: dict, on_step: Any = None) -> None:
    """Run ``lanczos`` to the end, resuming from ``state`` when given, writing the checkpoint
    (rank 0, atomically) every ``every`` steps and at the end; ``extra`` (the probe group and
    the finished groups' coefficients) is stored beside the Lanczos state. ``on_step()`` (a
    progress bar's) is called after each step, and once per step already done on a resume."""
    if state is not None:
        lanczos.load(state)
        for _ in range(lanczos.steps if on_step is not None else 0):
            on_step()

    def save() -> None:
        if is_main_process():
            atomic_torch_save(path, {"kind": SLQ_KIND, "meta": meta,
                                     "state": {**lanczos.state(), **extra}})

    saved_at = lanczos.steps if state is not None else -1
    while not lanczos.done:
        lanczos.step()
        if on_step is not None:
            on_step()
        if lanczos.steps % every == 0 or lanczos.done:
            save()
            saved_at = lanczos.steps
    if saved_at != lanczos.steps:
        save()
