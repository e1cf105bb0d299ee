"""l1-regularised training (the LOMP recipe) and masked fine-tuning.

``train_l1`` minimises ``L(w) + λ₁ ‖w‖₁`` over the prunable weights ``w`` (THEORY §3 last bullet),
the training recipe of Zhang et al., "How Sparse Can We Prune A Deep Network" (NeurIPS 2024):
SGD with momentum, a linear warm-up, then a step or cosine learning-rate schedule stepped once per
epoch. The l1 penalty drives most weights towards zero, so ``R(s)`` stays small up to high
sparsity. ``finetune_masked`` re-fits a pruned model on its kept support (THEORY §4).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ._batches import Batches, FixedOrder, as_batches, batch_size, call_model, move_batch
from ._checks import (
    check_callable,
    check_choice,
    check_differentiable,
    check_float,
    check_int,
    check_model,
    check_scalar_loss,
    check_seed,
    model_device_dtype,
    preserve_model,
    snapshot_grads_and_modes,
)
from ._io import atomic_torch_save, check_path
from ._progress import resolve_progress
from .distributed import all_gather_list, is_main_process
from .linalg._checkpoint import data_hints, digest_batch, loss_rtol, open_checkpoint, seal
from .params import ParamSelection, select_parameters

__all__ = [
    "TrainHistory",
    "lr_at_epoch",
    "train_l1",
    "Schedule",
    "SCHEDULES",
]

#: A learning-rate schedule after the warm-up (see :func:`lr_at_epoch`).
Schedule = Literal["cosine", "step", "constant"]
SCHEDULES: tuple[str, ...] = ("cosine", "step", "constant")


def lr_at_epoch(
    epoch: int,
    lr: float,
    epochs: int,
    warmup_epochs: int = 0,
    schedule: Schedule = "cosine",
    step_size: int = 30,
    gamma: float = 0.1,
) -> float:
    """Learning rate of epoch ``e`` (0-based), constant within the epoch.

    Warm-up (``e < W``): ``lr·(e+1)/W``. Then, with ``t = e − W`` and ``T = epochs − W``:
    ``cosine``: ``lr·½(1 + cos(π t/T))``; ``step``: ``lr·γ^⌊t/step_size⌋``; ``constant``: ``lr``.
    """
    epoch = check_int(epoch, "epoch", minimum=0)
    epochs = check_int(epochs, "epochs", minimum=1)
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0, maximum=epochs)
    lr = check_float(lr, "lr", minimum=0.0, strict_minimum=True)
    schedule = check_choice(schedule, "schedule", SCHEDULES)
    step_size = check_int(step_size, "step_size", minimum=1)
    gamma = check_float(gamma, "gamma", minimum=0.0)
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    t, T = epoch - warmup_epochs, epochs - warmup_epochs
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * t / T))
    if schedule == "step":
        return lr * gamma ** (t // step_size)
    return lr


@dataclass(frozen=True)
class TrainHistory:
    """Per-epoch record of :func:`train_l1`: ``loss`` (dataset mean of the data loss over the
    epoch's batches, weighted by size), ``penalty`` (``λ₁‖w‖₁``, batch-size-weighted mean over the
    epoch), ``lr`` (the epoch's learning rate), ``eval`` (values of ``eval_fn`` after each epoch)."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        return asdict(self)


def rng_devices(device: torch.device) -> list:
    """The devices whose RNG a forked stream must cover besides the CPU (the CUDA device)."""
    return [device] if device.type == "cuda" else []


# ----------------------------------------------------------------------------- train_l1: setup


@dataclass(frozen=True)
class _Run:
    """The checked arguments of one :func:`train_l1` call and what they resolve to."""

    batches: Batches
    l1: float
    schedule: dict[str, Any]  # the keyword arguments of lr_at_epoch besides the epoch
    momentum: float
    weight_decay: float
    seed: int
    progress: bool
    path: Path | None
    names: set[str]  # the penalised parameters
    penalised: list[nn.Parameter]
    trainable: list[nn.Parameter]
    device: torch.device
    dtype: torch.dtype


def _check_run(model, loss_fn, data, l1, epochs, lr, momentum, weight_decay, warmup_epochs,
               schedule, step_size, gamma, seed, progress, params, eval_fn, checkpoint,
               batch_fn=None) -> _Run:
    """Every argument of :func:`train_l1` checked, in the order of its signature."""
    check_model(model)
    check_callable(loss_fn, "loss_fn")
    if batch_fn is not None:
        check_callable(batch_fn, "batch_fn")
    batches = as_batches(data, batch_fn=batch_fn)
    l1 = check_float(l1, "l1", minimum=0.0)
    epochs = check_int(epochs, "epochs", minimum=1)
    lr = check_float(lr, "lr", minimum=0.0, strict_minimum=True)
    momentum = check_float(momentum, "momentum", minimum=0.0)
    weight_decay = check_float(weight_decay, "weight_decay", minimum=0.0)
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0, maximum=epochs)
    schedule = check_choice(schedule, "schedule", SCHEDULES)
    step_size = check_int(step_size, "step_size", minimum=1)
    gamma = check_float(gamma, "gamma", minimum=0.0)
    seed = check_seed(seed)
    if eval_fn is not None:
        check_callable(eval_fn, "eval_fn")
    progress = resolve_progress(progress)
    path = None if checkpoint is None else check_path(checkpoint, "checkpoint")
    names = set(select_parameters(model, params))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("model has no parameters with requires_grad=True to train")
    device, dtype = model_device_dtype(model)
    return _Run(
        batches=batches, l1=l1, momentum=momentum, weight_decay=weight_decay, seed=seed,
        schedule=dict(lr=lr, epochs=epochs, warmup_epochs=warmup_epochs, schedule=schedule,
                      step_size=step_size, gamma=gamma),
        progress=progress, path=path, names=names,
        penalised=[p for n, p in model.named_parameters() if n in names],
        trainable=trainable, device=device, dtype=dtype,
    )


# ----------------------------------------------------------------------------- train_l1: checkpoint

_TRAIN_KIND = "phasetrans.train_l1-checkpoint/2"
_OLD_TRAIN_KINDS = ("phasetrans.train_l1-checkpoint/1",)
_HISTORY_KEYS = ("epoch", "loss", "penalty", "lr", "eval")


def _state_hash(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for n, t in list(model.named_parameters()) + list(model.named_buffers()):
        t = t.detach().cpu().contiguous()
        h.update(f"{n}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _data_fingerprint(model: nn.Module, loss_fn: Callable, run: _Run) -> tuple[str, list[float]]:
    """SHA-256 of every batch (inputs and targets, in a fixed order: :class:`FixedOrder`) and the
    per-batch losses of the initial model in eval mode, which differ when ``loss_fn`` does: one
    forward pass over the data; data-parallel: every rank's, in rank order. The model is
    unchanged."""
    h = hashlib.sha256()
    losses = []
    with preserve_model(model), torch.no_grad(), FixedOrder(run.batches)():
        model.eval()
        for index, (inputs, targets) in enumerate(run.batches):
            digest_batch(h, index, batch_size(inputs), inputs, targets)
            inputs, targets = move_batch(inputs, targets, run.device, run.dtype)
            loss = check_scalar_loss(loss_fn(call_model(model, inputs), targets), where=f"at batch {index}")
            losses.append(float(loss.detach()))
    return "data:" + ",".join(all_gather_list([h.hexdigest()])), all_gather_list(losses)


def _plain(x: Any) -> Any:
    """NumPy scalars and arrays as Python numbers and lists (inside containers too), so that an
    ``eval_fn`` returning ``np.mean(...)`` can be checkpointed and loaded back."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _is_plain(x: Any) -> bool:
    """Loadable with ``torch.load(weights_only=True)``: tensors, numbers, strings, containers."""
    if x is None or type(x) in (bool, int, float, str) or isinstance(x, torch.Tensor):
        return True
    if isinstance(x, (list, tuple)):
        return all(_is_plain(v) for v in x)
    if isinstance(x, dict):
        return all(isinstance(k, (str, int)) and _is_plain(v) for k, v in x.items())
    return False


def _checkpoint_meta(model: nn.Module, loss_fn: Callable, run: _Run,
                     has_eval_fn: bool) -> dict[str, Any]:
    """The arguments a checkpoint records (a resumed call must match them), in file order,
    with the initial weights' hash and the data/loss fingerprint (:func:`_data_fingerprint`)."""
    s = run.schedule
    data, losses = _data_fingerprint(model, loss_fn, run)
    return dict(
        l1=run.l1, epochs=s["epochs"], lr=s["lr"], momentum=run.momentum,
        weight_decay=run.weight_decay, warmup_epochs=s["warmup_epochs"], schedule=s["schedule"],
        step_size=s["step_size"], gamma=s["gamma"], seed=run.seed, params=sorted(run.names),
        trainable=[n for n, p in model.named_parameters() if p.requires_grad],
        eval_fn=has_eval_fn, initial_state=_state_hash(model), dtype=str(run.dtype), data=data,
        losses=losses,
    )


def _load_train_checkpoint(path: Any, meta: dict[str, Any]) -> dict[str, Any] | None:
    weights = ("was written by a run that started from different model weights; pass the model "
               "as it was when that run started (e.g. rebuilt with the same seed), or use "
               "another path")
    hints = {("initial_state",): weights, ("initial_state", "losses"): weights,
             **data_hints("a train_l1")}
    obj = open_checkpoint(path, _TRAIN_KIND, meta, "a train_l1", old_kinds=_OLD_TRAIN_KINDS,
                          hints=hints, rtol={"losses": loss_rtol(meta["dtype"])})
    if obj is not None:
        _check_saved_fields(obj, meta, path)
    return obj


def _check_saved_fields(obj: dict[str, Any], meta: dict[str, Any], path: Any) -> None:
    """``ValueError`` naming the field when the epoch or the history of a (checksum-valid but
    hand-made) checkpoint is out of range or inconsistent."""
    epoch = obj.get("epoch")
    where = f"checkpoint: {str(path)!r}"
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= meta["epochs"]:
        raise ValueError(f"{where}: 'epoch' must be an integer in [1, {meta['epochs']}], got {epoch!r}")
    history = obj.get("history")
    if not isinstance(history, dict) or sorted(history) != sorted(_HISTORY_KEYS) or not all(
            isinstance(v, list) for v in history.values()):
        raise ValueError(f"{where}: 'history' must hold the lists {list(_HISTORY_KEYS)}")
    if history["epoch"] != list(range(epoch)):
        raise ValueError(f"{where}: 'history' epochs {history['epoch']!r} do not match epoch {epoch}")
    for key in ("loss", "penalty", "lr"):
        values = history[key]
        if len(values) != epoch or not all(type(v) is float and math.isfinite(v) for v in values):
            raise ValueError(f"{where}: 'history' {key!r} must hold {epoch} finite floats")
    if len(history["eval"]) != (epoch if meta["eval_fn"] else 0):
        raise ValueError(f"{where}: 'history' 'eval' has {len(history['eval'])} entries for "
                         f"{epoch} epochs")


def _resume(
    model: nn.Module, optimizer: torch.optim.Optimizer, resume: dict | None, path: Path | None
) -> tuple[int, dict[str, list]]:
    """The first epoch to run and the history so far; the model and the optimizer are put in
    the checkpoint's state (nothing happens without one)."""
    record: dict[str, list] = {key: [] for key in _HISTORY_KEYS}
    if resume is None:
        return 0, record
    try:
        with torch.no_grad():
            model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"checkpoint: {str(path)!r} does not fit this model: {exc}") from None
    for key, values in resume["history"].items():
        record[key].extend(values)
    return int(resume["epoch"]), record


def _seed_rng(seed: int, resume: dict | None, device: torch.device,
              loader_generators: list) -> None:
    """Seed the (forked) RNG, or restore the checkpoint's RNG states (the global one and those
    of the DataLoader's own generators: the shuffles go on as in an uninterrupted run)."""
    torch.manual_seed(seed)
    if resume is not None:
        saved = resume.get("loader_rng") or []
        if len(saved) == len(loader_generators):
            for g, state in zip(loader_generators, saved):
                g.set_state(state)
        try:
            torch.set_rng_state(resume["rng"])
            if resume.get("cuda_rng") is not None and device.type == "cuda":
                torch.cuda.set_rng_state(resume["cuda_rng"], device)
        except (RuntimeError, TypeError, KeyError) as exc:
            raise ValueError(f"checkpoint: its RNG state cannot be restored: {exc}") from None


def _save_checkpoint(path: Path, meta: dict, epoch: int, model: nn.Module,
                     optimizer: torch.optim.Optimizer, device: torch.device,
                     record: dict[str, list], loader_generators: list) -> None:
    """Write the state after ``epoch`` atomically (plain tensors and containers only), with
    the states of the generators a DataLoader shuffles with (``loader_generators``)."""
    if not _is_plain(record["eval"]):
        raise TypeError(
            "eval_fn must return plain values (numbers, strings, tensors, "
            "lists/dicts of them) when checkpoint is set, got "
            f"{type(record['eval'][-1]).__name__}"
        )
    atomic_torch_save(path, seal({
        "kind": _TRAIN_KIND, "meta": meta, "epoch": epoch + 1,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "history": TrainHistory(**record).to_dict(),
        "loader_rng": [g.get_state() for g in loader_generators],
    }))


# ----------------------------------------------------------------------------- train_l1: one epoch


def _train_epoch(model: nn.Module, loss_fn: Callable, run: _Run,
                 optimizer: torch.optim.Optimizer, epoch: int, epoch_lr: float) -> tuple[float, float]:
    """One pass over the data at ``epoch_lr``: the size-weighted means of the data loss and of
    the penalty over the epoch's batches."""
    for group in optimizer.param_groups:
        group["lr"] = epoch_lr
    model.train()
    loss_sum = penalty_sum = 0.0
    count = 0
    for index, (inputs, targets) in enumerate(run.batches):
        inputs, targets = move_batch(inputs, targets, run.device, run.dtype)
        n = batch_size(inputs)
        loss = check_scalar_loss(loss_fn(call_model(model, inputs), targets),
                                 where=f"at epoch {epoch}, batch {index}")
        check_differentiable(loss, "train_l1", f"at epoch {epoch}, batch {index}")
        penalty = sum(p.abs().sum() for p in run.penalised) * run.l1
        total = loss + penalty
        if not torch.isfinite(total.detach()):
            raise FloatingPointError(
                f"train_l1: non-finite loss {float(total.detach())} (data loss "
                f"{float(loss.detach())}, l1 penalty {float(penalty.detach()) if isinstance(penalty, torch.Tensor) else float(penalty)}) at epoch "
                f"{epoch}, batch {index}; the weights are those before this batch; "
                f"lower lr (got {epoch_lr}) or check the data"
            )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * n
        penalty_sum += float(penalty.detach()) * n
        count += n
    return loss_sum / count, penalty_sum / count


def train_l1(
    model: nn.Module,
    loss_fn: Callable,
    data: Any,
    l1: float,
    epochs: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    warmup_epochs: int = 0,
    schedule: Schedule = "cosine",
    step_size: int = 30,
    gamma: float = 0.1,
    seed: int = 0,
    progress: bool | None = None,
    params: ParamSelection = None,
    eval_fn: Callable[[nn.Module], Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    batch_fn: Callable[[Any], Any] | None = None,
) -> TrainHistory:
    """Train ``model`` IN PLACE on ``L(w) + l1·Σ|w|`` (LOMP, Zhang et al. NeurIPS 2024).

    SGD (``momentum``, ``weight_decay`` on all trainable parameters); the l1 penalty applies to the
    ``params`` selection only (default: the prunable weights). Learning rate per epoch from
    :func:`lr_at_epoch` (linear warm-up, then ``schedule``). Runs under a forked RNG seeded with
    ``seed`` (dropout, and a DataLoader's default shuffling, become deterministic; the global RNG
    is left untouched). ``eval_fn(model)`` runs after each epoch (the model is restored after it).
    Train/eval mode, ``requires_grad`` and ``.grad`` come back as they were; parameters and
    buffers keep the trained values. Returns a :class:`TrainHistory`.

    A non-finite loss stops training with ``FloatingPointError`` naming the epoch and batch (the
    step that would have used it is not taken). ``checkpoint``: a file path; after every epoch the
    model's state, the optimizer's state (momentum buffers), the epoch, the history and the RNG
    state are written there atomically (plain tensors, ``torch.save``; temp file + fsync +
    rename). If the file exists the run resumes after its last epoch and ends bit-for-bit where
    an uninterrupted run ends. The file records the arguments, a SHA-256 of the initial weights
    and buffers, a SHA-256 of every batch and the initial model's per-batch losses (one eval
    forward pass over the data when the call starts: another ``loss_fn`` gives other losses),
    and a SHA-256 checksum of its contents; a file from a different call, a damaged or
    hand-edited one (epoch, history out of range) or one of the older format (``/1``) raises
    ``ValueError``. Loaded with ``weights_only=True``. ``eval_fn``'s NumPy scalars and arrays
    are stored as Python numbers and lists; with a checkpoint, it must otherwise return plain
    values (numbers, strings, tensors, containers). A ``loss_fn`` whose loss carries no
    gradient (detached) raises ``ValueError`` before any step.
    ``params``: names, ``nn.Parameter`` objects or modules. ``batch_fn(batch) -> (inputs,
    targets)`` for batches of another shape (tuple inputs: positional arguments, dict inputs:
    keyword arguments of the model). ``progress``: a bar of the epochs on standard error
    (``None``, the default: only when standard error is a terminal; :mod:`phasetrans._progress`).
    """
    run = _check_run(model, loss_fn, data, l1, epochs, lr, momentum, weight_decay, warmup_epochs,
                     schedule, step_size, gamma, seed, progress, params, eval_fn, checkpoint,
                     batch_fn)
    from tqdm.auto import tqdm

    optimizer = torch.optim.SGD(run.trainable, lr=run.schedule["lr"], momentum=run.momentum,
                                weight_decay=run.weight_decay)
    meta = {} if run.path is None else _checkpoint_meta(model, loss_fn, run, eval_fn is not None)
    resume = None if run.path is None else _load_train_checkpoint(run.path, meta)
    restore_grads_and_modes = snapshot_grads_and_modes(model)
    start, record = _resume(model, optimizer, resume, run.path)
    try:
        with torch.random.fork_rng(devices=rng_devices(run.device)):
            _seed_rng(run.seed, resume, run.device, run.batches.generators())
            bar = tqdm(range(start, run.schedule["epochs"]), desc="train_l1",
                       disable=not run.progress, leave=False, file=sys.stderr)
            for epoch in bar:
                epoch_lr = lr_at_epoch(epoch, **run.schedule)
                loss, penalty = _train_epoch(model, loss_fn, run, optimizer, epoch, epoch_lr)
                for key, value in (("epoch", epoch), ("loss", loss), ("penalty", penalty),
                                   ("lr", epoch_lr)):
                    record[key].append(value)
                if eval_fn is not None:
                    with preserve_model(model):
                        record["eval"].append(_plain(eval_fn(model)))
                if run.path is not None and is_main_process():  # data-parallel: rank 0 writes
                    _save_checkpoint(run.path, meta, epoch, model, optimizer, run.device, record,
                                     run.batches.generators())
                bar.set_postfix(loss=f"{loss:.4g}", penalty=f"{penalty:.3g}")
            bar.close()
    finally:
        restore_grads_and_modes()
    return TrainHistory(**record)


# ----------------------------------------------------------------------------- masked re-fit
