"""Checkpoints of :func:`~phasetrans.linalg.slq.slq` (and the sealing shared with
:func:`~phasetrans.train.train_l1`): what identifies a run, the checksum, loading, saving.

Format ``phasetrans.slq-checkpoint/2`` (``torch.save`` of plain tensors, loaded with
``weights_only=True``): ``{"kind", "meta", "state", "checksum"}``; ``meta`` holds the arguments,
the operator's dim/dtype, the breakdown tolerance, :func:`operator_fingerprint` and, for a
``HessianOperator``, the fingerprint of its data and loss (:meth:`HessianOperator.data_fingerprint`);
``state`` is :meth:`Lanczos.state` of the running probe group plus ``group_start`` and the
finished groups' ``done_alphas``/``done_betas``/``done_lengths``; ``checksum`` is
:func:`digest` of the rest (SHA-256 over every value, tensors bit for bit), so one flipped byte
is refused. Files of format ``/1`` (before checksums and data fingerprints) are refused with a
message saying so: they cannot be checked.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

import torch

from .._io import atomic_torch_save, safe_torch_load
from ..distributed import is_main_process
from .lanczos import Lanczos
from .operator import Operator

__all__ = [
    "SLQ_KIND", "digest", "digest_batch", "update_digest", "seal", "open_checkpoint", "operator_fingerprint",
    "slq_meta", "load_slq_checkpoint", "run_with_checkpoints", "loss_rtol", "data_hints",
    "GROWN_KIND", "grown_meta", "load_grown_checkpoint", "save_grown_checkpoint",
]

SLQ_KIND = "phasetrans.slq-checkpoint/2"
#: the adaptive budget's grown SLQ (:class:`~phasetrans.linalg.growing_slq.GrowingSLQ`)
GROWN_KIND = "phasetrans.grown-slq-checkpoint/1"
_OLD_SLQ_KINDS = ("phasetrans.slq-checkpoint/1",)


# ----------------------------------------------------------------------------- sealing


def update_digest(h: Any, obj: Any) -> None:
    """Feed ``obj`` to the hash ``h`` canonically: containers with their type and length (dict
    keys sorted by ``repr``), tensors with dtype, shape and bytes, scalars by type and ``repr``
    (exact for floats). ``TypeError`` for anything else."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=repr):
            update_digest(h, key)
            update_digest(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__[0]}{len(obj)};".encode())
        for value in obj:
            update_digest(h, value)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(f"cannot fingerprint a {type(obj).__name__}")


def digest_batch(h: Any, index: int, size: int, inputs: Any, targets: Any) -> None:
    """:func:`update_digest` of one data batch; ``TypeError`` naming the batch when it holds
    something that cannot be fingerprinted (only tensors, numbers, strings and containers)."""
    try:
        update_digest(h, [size, inputs, targets])
    except TypeError as exc:
        raise TypeError(f"data: batch {index} cannot be fingerprinted for the checkpoint ({exc}); "
                        f"batches must hold tensors, numbers or strings") from None


def digest(obj: Any) -> str:
    """SHA-256 of :func:`update_digest` of ``obj`` (hex)."""
    h = hashlib.sha256()
    update_digest(h, obj)
    return h.hexdigest()


def seal(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with ``"checksum"``: the :func:`digest` of everything else in it."""
    return {**obj, "checksum": digest(obj)}


def _differences(saved: dict, meta: dict, rtol: dict[str, float]) -> list[str]:
    """The keys whose values differ (lists of floats under ``rtol`` compared with that relative
    tolerance: per-batch losses, recomputed on another device or in another order of sums)."""
    diff = []
    for k in sorted(set(meta) | set(saved)):
        a, b = saved.get(k), meta.get(k)
        if k in rtol and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            if all(isinstance(x, float) and math.isclose(x, y, rel_tol=rtol[k], abs_tol=rtol[k])
                   for x, y in zip(a, b)):
                continue
        elif a == b:
            continue
        diff.append(k)
    return diff


def open_checkpoint(path: Any, kind: str, meta: dict[str, Any], caller: str, *,
                    old_kinds: tuple[str, ...] = (), hints: dict[tuple[str, ...], str] | None = None,
                    rtol: dict[str, float] | None = None) -> dict[str, Any] | None:
    """The dict a run of ``caller`` (with its article: ``"an slq"``) sealed at ``path``, or
    ``None`` when there is no file. ``ValueError`` naming the path when the file cannot be read
    (any parse failure, also of random bytes), is not a checkpoint of this ``kind`` (one of
    ``old_kinds``: written by an older phasetrans, refused), fails its checksum (a flipped byte,
    a hand edit), or records other arguments than ``meta`` (each difference listed, or the hint
    in ``hints`` for exactly that sorted tuple of keys; ``rtol`` per key for float lists)."""
    if not os.path.exists(path):
        return None
    shown = str(path)
    name = caller.split(" ", 1)[1]
    try:
        obj = safe_torch_load(path, "checkpoint")
    except ValueError:
        raise
    except Exception as exc:  # random bytes can fail anywhere in the unpickler
        raise ValueError(f"checkpoint: could not read {shown!r} (corrupt or not a torch file): "
                         f"{type(exc).__name__}: {exc}") from None
    found = obj.get("kind") if isinstance(obj, dict) else None
    if found in old_kinds:
        raise ValueError(
            f"checkpoint: {shown!r} was written by an older phasetrans ({found}), which recorded "
            f"no checksum and no fingerprint of the data and loss, so it cannot be checked; "
            f"delete it (the run starts again) or use another path")
    if found != kind or not isinstance(obj.get("meta"), dict):
        raise ValueError(f"checkpoint: {shown!r} is not a phasetrans {name} checkpoint")
    rest = {k: v for k, v in obj.items() if k != "checksum"}
    try:
        ok = obj.get("checksum") == digest(rest)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            f"checkpoint: {shown!r} is corrupt: its checksum does not match its contents (a "
            f"damaged or hand-edited file); delete it and rerun")
    diff = _differences(obj["meta"], meta, rtol or {})
    if diff:
        hint = (hints or {}).get(tuple(diff))
        if hint is not None:
            raise ValueError(f"checkpoint: {shown!r} {hint}")
        detail = ", ".join(f"{k}: file {_short(obj['meta'].get(k))} vs call {_short(meta.get(k))}"
                           for k in diff)
        raise ValueError(
            f"checkpoint: {shown!r} was written by {caller} call with different arguments "
            f"({detail}); use another path or delete the file")
    return obj


def data_hints(caller: str) -> dict[tuple[str, ...], str]:
    """The messages for a checkpoint whose data or loss fingerprint differs (``caller`` with its
    article)."""
    data = (f"was written by {caller} run on other data (the SHA-256 of its batches differs); "
            f"pass the same data in the same order, or use another path")
    return {
        ("data",): data, ("data", "losses"): data,
        ("losses",): f"was written by {caller} run whose loss_fn gives other per-batch losses on "
                     f"the same model and data; use the same loss_fn, or another path",
    }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ----------------------------------------------------------------------------- slq


def operator_fingerprint(op: Operator) -> str | None:
    """SHA-256 of what defines the operator where that is cheap to read, else ``None``: for a
    HessianOperator the names of the selected parameters, the BatchNorm mode and every
    parameter and buffer of the model (names, dtypes, shapes, bytes: one read of the model);
    for a dense matrix its dtype and bytes. The data and loss are fingerprinted separately
    (:meth:`HessianOperator.data_fingerprint`)."""
    h = hashlib.sha256()
    model = getattr(op, "model", None)
    if hasattr(op, "param_names") and isinstance(model, torch.nn.Module):
        update_digest(h, [list(op.param_names), repr(getattr(op, "batchnorm", None))])
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            update_digest(h, name)
            update_digest(h, t)
        return "model:" + h.hexdigest()
    matrix = getattr(op, "matrix", None)
    if isinstance(matrix, torch.Tensor):
        update_digest(h, matrix)
        return "matrix:" + h.hexdigest()
    return None


def loss_rtol(dtype: str) -> float:
    """Relative tolerance of recomputed per-batch losses (reductions may be summed in another
    order on a GPU): 1e-10 in float64, 1e-5 otherwise; a different loss_fn differs far more."""
    return 1e-10 if dtype == "torch.float64" else 1e-5


def slq_meta(op: Operator, num_steps: int, num_probes: int, seed: int, reorth: str, tol: float,
             group: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (``probe_group`` only when the probes run in
    groups). For a HessianOperator also ``data`` (SHA-256 of every batch) and ``losses`` (the
    per-batch losses at the current weights: they differ when ``loss_fn`` does): one forward
    pass over the data (:meth:`HessianOperator.data_fingerprint`)."""
    meta = {**_operator_meta(op), "num_steps": num_steps, "num_probes": num_probes, "seed": seed,
            "reorth": reorth, "tol": float(tol)}
    if group < num_probes:
        meta["probe_group"] = group
    return meta


def _operator_meta(op: Operator) -> dict[str, Any]:
    """The operator a checkpoint belongs to: dim, dtype, :func:`operator_fingerprint` and, for a
    HessianOperator, ``data`` and ``losses`` (:meth:`HessianOperator.data_fingerprint`)."""
    meta = {"dim": int(op.dim), "dtype": str(op.dtype), "operator": operator_fingerprint(op)}
    if hasattr(op, "data_fingerprint"):
        meta["data"], meta["losses"] = op.data_fingerprint()
    return meta


def load_slq_checkpoint(path: Any, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state, ``None`` when there is no file; ``ValueError`` for another run's file,
    a corrupt one or one of an older format."""
    hints = data_hints("an slq")
    rtol = {"losses": loss_rtol(meta.get("dtype", ""))}
    obj = open_checkpoint(path, SLQ_KIND, meta, "an slq", old_kinds=_OLD_SLQ_KINDS, hints=hints,
                          rtol=rtol)
    if obj is None:
        return None
    if not isinstance(obj.get("state"), dict):
        raise ValueError(f"checkpoint: {str(path)!r} has no Lanczos state")
    return obj["state"]


def run_with_checkpoints(lanczos: Lanczos, path: Any, meta: dict, state: dict | None,
                         every: int, extra: dict, on_step: Any = None) -> None:
    """Run ``lanczos`` to the end, resuming from ``state`` when given, writing the sealed
    checkpoint (rank 0, atomically) every ``every`` steps and at the end; ``extra`` (the probe
    group and the finished groups' coefficients) is stored beside the Lanczos state.
    ``on_step()`` (a progress bar's) is called after each step, and once per step already done
    on a resume."""
    if state is not None:
        lanczos.load(state)
        for _ in range(lanczos.steps if on_step is not None else 0):
            on_step()

    def save() -> None:
        if is_main_process():
            atomic_torch_save(path, seal({"kind": SLQ_KIND, "meta": meta,
                                          "state": {**lanczos.state(), **extra}}))

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


# ----------------------------------------------------------------------------- grown SLQ


def grown_meta(op: Operator, settings: dict[str, Any]) -> dict[str, Any]:
    """What a grown-SLQ checkpoint must match: the operator (dim, dtype, weights' fingerprint,
    data and loss as in :func:`slq_meta`) and every setting of the adaptive budget that steers
    its growth (``settings``: tolerance, caps, seed, ε, ...)."""
    return {**_operator_meta(op), **settings}


def load_grown_checkpoint(path: Any, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The saved :meth:`GrowingSLQ.state`, ``None`` when there is no file; ``ValueError`` for
    another run's file or a corrupt one."""
    hints = data_hints("an adaptive slq")
    rtol = {"losses": loss_rtol(meta.get("dtype", ""))}
    obj = open_checkpoint(path, GROWN_KIND, meta, "an adaptive slq", hints=hints, rtol=rtol)
    if obj is None:
        return None
    if not isinstance(obj.get("state"), dict):
        raise ValueError(f"checkpoint: {str(path)!r} has no SLQ state")
    return obj["state"]


def save_grown_checkpoint(path: Any, meta: dict[str, Any], state: dict[str, Any]) -> None:
    """Write the sealed grown-SLQ state (rank 0, atomically)."""
    if is_main_process():
        atomic_torch_save(path, seal({"kind": GROWN_KIND, "meta": meta, "state": state}))
