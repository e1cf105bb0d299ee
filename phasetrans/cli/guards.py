"""What the command line checks before it computes, and how it stops: trained weights required
(:func:`require_weights`), the identity of a sweep run recorded in its log (:func:`run_identity`),
and ``SIGTERM`` turned into a clean exit 143 that says what was kept (:func:`handle_sigterm`,
:func:`kept_message`)."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import UsageError

__all__ = ["Terminated", "handle_sigterm", "kept_message", "require_weights", "run_identity",
           "tensor_sha256", "SWEEP_LOG"]

SWEEP_LOG = "sweep.jsonl"


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on ``SIGTERM`` (a ``KeyboardInterrupt``, so that every
    ``finally`` and interrupt handler of the library runs: the model restored, logs closed)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up
    raise Terminated()


@contextlib.contextmanager
def handle_sigterm() -> Iterator[None]:
    """Within the block, ``SIGTERM`` raises :class:`Terminated` (main thread only; the previous
    handler is restored afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def kept_message(args: argparse.Namespace) -> str:
    """What an interrupted command leaves behind, for the message on standard error."""
    out = getattr(args, "out", None)
    if args.command == "sweep" and out is not None:
        log = Path(out) / SWEEP_LOG
        if log.is_file() and not log.is_symlink():
            with contextlib.suppress(OSError):
                points = max(0, sum(1 for line in log.open("rb") if line.strip()) - 1)
                return (f"kept {log} with {points} point(s) done; rerun the same command to resume "
                        f"from there")
        return "nothing was kept (no point was finished)"
    if out is not None:
        return (f"files already written to {out} are whole (each is written atomically); the "
                f"result of this run was not written")
    return "nothing was kept (no --out)"


def require_weights(args: argparse.Namespace, cfg: dict, can_train: bool) -> None:
    """:class:`UsageError` unless the model will have trained weights: ``--checkpoint`` (or the
    config's ``checkpoint``), ``--l1`` where the command trains, or the explicit opt-in
    ``--random-init`` (which excludes ``--checkpoint``)."""
    random_init = bool(getattr(args, "random_init", False))
    has_weights = bool(cfg.get("checkpoint")) or (can_train and "l1" in cfg)
    if random_init and cfg.get("checkpoint"):
        raise UsageError("--random-init and --checkpoint exclude each other: pass one of them")
    if not has_weights and not random_init:
        train = ", --l1 L1 to train first" if can_train else ""
        raise UsageError(
            f"no trained weights: pass --checkpoint PATH (a state dict){train}, or --random-init "
            f"to run on a random initialisation on purpose (its numbers say nothing about a "
            f"trained model)"
        )


def tensor_sha256(tensors: Any) -> str:
    """SHA-256 over ``(name, dtype, shape, bytes)`` of a dict of tensors, or of a list."""
    import torch

    items = tensors.items() if isinstance(tensors, dict) else enumerate(tensors)
    digest = hashlib.sha256()
    for name, t in items:
        t = t.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _data_sha256(loader: Any) -> str:
    """A hash of the held-out data: the tensors behind the loader, else its batches in order."""
    tensors = getattr(getattr(loader, "dataset", None), "tensors", None)
    if tensors is None:
        tensors = [t for batch in loader for t in batch]
    return tensor_sha256(list(tensors))


def run_identity(cfg: dict, model: Any, test: Any) -> dict[str, Any]:
    """What defines a sweep's numbers, recorded in its log header (a rerun that differs is
    refused): the weights pruned (the checkpoint's content, after any ``--l1`` training), the
    model, the dataset (name, folder, options, the test data itself), the seed and the
    training options."""
    root = cfg.get("data_root")
    return {
        "weights_sha256": tensor_sha256(model.state_dict()),
        "model": cfg.get("model", "digits_mlp"),
        "model_kwargs": cfg.get("model_kwargs", {}),
        "data": cfg.get("data", "digits"),
        "data_root": None if root is None else os.path.abspath(os.path.expanduser(root)),
        "data_kwargs": cfg.get("data_kwargs", {}),
        "batch_size": cfg.get("batch_size", 128),
        "seed": cfg.get("seed", 0),
        "test_data_sha256": _data_sha256(test),
        "training": {k: cfg.get(k) for k in ("l1", "epochs", "lr")} if "l1" in cfg else None,
    }
