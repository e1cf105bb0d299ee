"""l1-regularised training (the LOMP recipe), masked fine-tuning, and evaluation.

``train_l1`` minimises ``L(w) + λ₁ ‖w‖₁`` over the prunable weights ``w`` (THEORY §3 last bullet),
the training recipe of Zhang et al., "How Sparse Can We Prune A Deep Network" (NeurIPS 2024):
SGD with momentum, a linear warm-up, then a step or cosine learning-rate schedule stepped once per
epoch. The l1 penalty drives most weights towards zero, so ``R(s)`` stays small up to high
sparsity.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ._batches import as_batches, batch_size, move_batch
from ._checks import (
    check_callable,
    check_choice,
    check_float,
    check_int,
    check_model,
    check_seed,
    model_device_dtype,
    preserve_model,
    snapshot_grads_and_modes,
)
from ._io import atomic_torch_save, check_path, load_checkpoint
from .distributed import is_main_process
from .params import select_parameters

__all__ = [
    "TrainHistory",
    "lr_at_epoch",
    "train_l1",
    "finetune_masked",
    "evaluate_accuracy",
    "evaluate_loss",
]

SCHEDULES = ("cosine", "step", "constant")


def lr_at_epoch(
    epoch: int,
    lr: float,
    epochs: int,
    warmup_epochs: int = 0,
    schedule: str = "cosine",
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


@dataclass
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

def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


_TRAIN_KIND = "phasetrans.train_l1-checkpoint/1"


def _state_hash(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for n, t in list(model.named_parameters()) + list(model.named_buffers()):
        t = t.detach().cpu().contiguous()
        h.update(f"{n}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _is_plain(x: Any) -> bool:
    """Loadable with ``torch.load(weights_only=True)``: tensors, numbers, strings, containers."""
    if x is None or isinstance(x, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(x, (list, tuple)):
        return all(_is_plain(v) for v in x)
    if isinstance(x, dict):
        return all(isinstance(k, (str, int)) and _is_plain(v) for k, v in x.items())
    return False


def _load_train_checkpoint(path: Any, meta: dict[str, Any]) -> dict[str, Any] | None:
    hint = ("was written by a run that started from different model weights; pass the model as "
            "it was when that run started (e.g. rebuilt with the same seed), or use another path")
    return load_checkpoint(path, _TRAIN_KIND, meta, "a train_l1", {("initial_state",): hint})


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
    schedule: str = "cosine",
    step_size: int = 30,
    gamma: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    params: Any = None,
    eval_fn: Callable[[nn.Module], Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
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
    an uninterrupted run ends. The file records the arguments and a hash of the initial weights;
    a file from a different call raises ``ValueError``. Loaded with ``weights_only=True``. With a
    checkpoint, ``eval_fn`` must return plain values (numbers, strings, tensors, containers).
    """
    check_model(model)
    check_callable(loss_fn, "loss_fn")
    batches = as_batches(data)
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
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
    path = None if checkpoint is None else check_path(checkpoint, "checkpoint")
    names = set(select_parameters(model, params))
    penalised = [p for n, p in model.named_parameters() if n in names]
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("model has no parameters with requires_grad=True to train")
    device, dtype = model_device_dtype(model)
    schedule_args = dict(
        lr=lr, epochs=epochs, warmup_epochs=warmup_epochs, schedule=schedule,
        step_size=step_size, gamma=gamma,
    )

    from tqdm.auto import tqdm

    history = TrainHistory()
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay)
    resume = None
    meta: dict[str, Any] = {}
    if path is not None:
        meta = dict(
            l1=l1, epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
            warmup_epochs=warmup_epochs, schedule=schedule, step_size=step_size, gamma=gamma,
            seed=seed, params=sorted(names),
            trainable=[n for n, p in model.named_parameters() if p.requires_grad],
            eval_fn=eval_fn is not None, initial_state=_state_hash(model),
        )
        resume = _load_train_checkpoint(path, meta)
    restore_grads_and_modes = snapshot_grads_and_modes(model)
    start = 0
    if resume is not None:
        try:
            with torch.no_grad():
                model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"checkpoint: {str(path)!r} does not fit this model: {exc}") from None
        start = int(resume["epoch"])
        for key, values in resume["history"].items():
            getattr(history, key).extend(values)
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(seed)
            if resume is not None:
                torch.set_rng_state(resume["rng"])
                if resume.get("cuda_rng") is not None and device.type == "cuda":
                    torch.cuda.set_rng_state(resume["cuda_rng"], device)
            bar = tqdm(range(start, epochs), desc="train_l1", disable=not progress, leave=False)
            for epoch in bar:
                epoch_lr = lr_at_epoch(epoch, **schedule_args)
                for group in optimizer.param_groups:
                    group["lr"] = epoch_lr
                model.train()
                loss_sum = penalty_sum = 0.0
                count = 0
                for index, (inputs, targets) in enumerate(batches):
                    inputs, targets = move_batch(inputs, targets, device, dtype)
                    n = batch_size(inputs)
                    loss = loss_fn(model(inputs), targets)
                    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                        raise ValueError(
                            f"loss_fn must return a scalar tensor (the batch mean), got "
                            f"{type(loss).__name__} at epoch {epoch}, batch {index}"
                        )
                    penalty = sum(p.abs().sum() for p in penalised) * l1
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
                history.epoch.append(epoch)
                history.loss.append(loss_sum / count)
                history.penalty.append(penalty_sum / count)
                history.lr.append(epoch_lr)
                if eval_fn is not None:
                    with preserve_model(model):
                        history.eval.append(eval_fn(model))
                if path is not None and is_main_process():  # data-parallel: rank 0 writes
                    if not _is_plain(history.eval):
                        raise TypeError(
                            "eval_fn must return plain values (numbers, strings, tensors, "
                            "lists/dicts of them) when checkpoint is set, got "
                            f"{type(history.eval[-1]).__name__}"
                        )
                    atomic_torch_save(path, {
                        "kind": _TRAIN_KIND, "meta": meta, "epoch": epoch + 1,
                        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                        "optimizer": optimizer.state_dict(),
                        "rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                        "history": history.to_dict(),
                    })
                bar.set_postfix(loss=f"{loss_sum / count:.4g}", penalty=f"{penalty_sum / count:.3g}")
            bar.close()
    finally:
        restore_grads_and_modes()
    return history


def finetune_masked(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    loss_fn: Callable,
    data: Any,
    steps: int,
    lr: float = 1e-2,
    momentum: float = 0.9,
    seed: int = 0,
) -> nn.Module:
    """Re-fit IN PLACE on the fixed support of ``masks``: ``steps`` SGD steps (cycling through
    ``data``) on ``L``, pruned weights held at zero (gradients masked, weights re-zeroed after
    each step). The theory's "prune, then re-fit on the kept support" (THEORY §4). Mode,
    ``requires_grad`` and ``.grad`` come back as they were. Returns ``model``."""
    from .pruning import _check_masks

    check_model(model)
    checked = _check_masks(model, masks)
    check_callable(loss_fn, "loss_fn")
    batches = as_batches(data)
    steps = check_int(steps, "steps", minimum=0)
    lr = check_float(lr, "lr", minimum=0.0, strict_minimum=True)
    momentum = check_float(momentum, "momentum", minimum=0.0)
    seed = check_seed(seed)
    if steps == 0:
        return model
    device, dtype = model_device_dtype(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("model has no parameters with requires_grad=True to re-fit")
    held = [(p, ~m.to(p.device)) for p, m in checked.values()]
    restore_grads_and_modes = snapshot_grads_and_modes(model)
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=momentum)
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(seed)
            model.train()
            with torch.no_grad():
                for p, off in held:
                    p.masked_fill_(off, 0)
            done = 0
            while done < steps:
                for index, (inputs, targets) in enumerate(batches):
                    inputs, targets = move_batch(inputs, targets, device, dtype)
                    loss = loss_fn(model(inputs), targets)
                    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                        raise ValueError(
                            f"loss_fn must return a scalar tensor (the batch mean), got "
                            f"{type(loss).__name__} at step {done}, batch {index}"
                        )
                    if not torch.isfinite(loss.detach()):
                        raise FloatingPointError(
                            f"finetune_masked: non-finite loss {float(loss.detach())} at step "
                            f"{done}, batch {index}; the weights are those before this step; "
                            f"lower lr (got {lr}) or check the data"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    for p, off in held:
                        if p.grad is not None:
                            p.grad.masked_fill_(off, 0)
                    optimizer.step()
                    with torch.no_grad():
                        for p, off in held:
                            p.masked_fill_(off, 0)
                    done += 1
                    if done >= steps:
                        break
    finally:
        restore_grads_and_modes()
    return model


def _sum_over_ranks(a: float, b: float, device: torch.device) -> tuple[float, float]:
    """``(a, b)`` summed over ``torch.distributed`` ranks (unchanged when not distributed)."""
    from .distributed import all_reduce_sum, is_distributed

    if not is_distributed():
        return a, b
    summed = all_reduce_sum([float(a), float(b)], device=device).cpu()
    return float(summed[0]), float(summed[1])


def evaluate_accuracy(model: nn.Module, data: Any) -> float:
    """Fraction of correct predictions over the dataset: ``argmax`` of the outputs over the last
    dim against integer targets (or against ``argmax`` of one-hot/probability targets of the
    outputs' shape); batches weighted by size. Eval mode, ``no_grad``; the model is unchanged.
    Non-finite outputs raise ``FloatingPointError`` naming the batch."""
    check_model(model)
    batches = as_batches(data)
    device, dtype = model_device_dtype(model)
    correct = total = 0
    with preserve_model(model), torch.no_grad():
        model.eval()
        for index, (inputs, targets) in enumerate(batches):
            inputs, targets = move_batch(inputs, targets, device, dtype)
            outputs = model(inputs)
            if not isinstance(outputs, torch.Tensor):
                raise TypeError(f"model outputs must be a tensor, got {type(outputs).__name__}")
            if outputs.is_floating_point() and not bool(torch.isfinite(outputs).all()):
                raise FloatingPointError(
                    f"evaluate_accuracy: non-finite model outputs (NaN or inf) at batch {index} "
                    f"of data; the accuracy would be meaningless"
                )
            pred = outputs.argmax(-1)
            if targets.shape == outputs.shape and targets.dim() > 1:
                targets = targets.argmax(-1)
            if targets.shape != pred.shape:
                raise ValueError(
                    f"data: targets of shape {tuple(targets.shape)} do not match predictions of "
                    f"shape {tuple(pred.shape)} (outputs {tuple(outputs.shape)})"
                )
            correct += int((pred == targets).sum().item())
            total += pred.numel()
    # data-parallel: each rank evaluates its shard; the counts are summed over ranks (a rank
    # that passes the whole set counts it world_size times, which leaves the ratio unchanged)
    correct, total = _sum_over_ranks(correct, total, device)
    return correct / total


def evaluate_loss(model: nn.Module, loss_fn: Callable, data: Any) -> float:
    """Dataset-mean loss ``Σ_b |b|·loss_fn(model(x_b), y_b) / Σ_b |b|`` (``loss_fn`` returns the
    batch mean). Eval mode, ``no_grad``; the model is unchanged. A non-finite batch loss raises
    ``FloatingPointError`` naming the batch."""
    check_model(model)
    check_callable(loss_fn, "loss_fn")
    batches = as_batches(data)
    device, dtype = model_device_dtype(model)
    total = 0.0
    count = 0
    with preserve_model(model), torch.no_grad():
        model.eval()
        for index, (inputs, targets) in enumerate(batches):
            inputs, targets = move_batch(inputs, targets, device, dtype)
            n = batch_size(inputs)
            loss = loss_fn(model(inputs), targets)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ValueError("loss_fn must return a scalar tensor (the batch mean)")
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"evaluate_loss: non-finite loss {float(loss)} at batch {index} of data"
                )
            total += float(loss) * n
            count += n
    total, count = _sum_over_ranks(total, count, device)
    return total / count
