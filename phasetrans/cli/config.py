"""Settings of the command line: exit codes, :class:`UsageError`, the ``--config`` file
(:func:`load_config`), the checkpoint loader (:func:`load_checkpoint`) and :func:`settings`, the
config values overridden by the options given."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "UsageError",
    "CONFIG_KEYS", "INT_BOUNDS", "MAX_SPARSITIES", "load_config", "load_checkpoint", "settings",
    "check_bounds", "max_threads",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


#: Keys accepted in a ``--config`` file (JSON or TOML), with their types.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "model_kwargs": (dict,),
    "data": (str,),
    "data_root": (str,),
    "data_kwargs": (dict,),
    "batch_size": (int,),
    "checkpoint": (str,),
    "device": (str,),
    "seed": (int,),
    "l1": (int, float),
    "epochs": (int,),
    "lr": (int, float),
    "eps": (int, float),
    "num_steps": (int,),
    "num_probes": (int,),
    "tolerance": (int, float),
    "refit": (int,),
    "resolution": (int, float),
    "negative": (str,),
    "sparsities": (list,),
    "num_points": (int,),
    "hessian_batch_size": (int,),
    "criterion": (str,),
    "loss": (str,),
    "metric": (str,),
    "checkpoint_dir": (str,),
    "spread": (bool,),
}


#: Inclusive bounds of the integer settings: a request beyond them is a typo or would exhaust
#: memory or time (``--num-points 10**12`` alone would build a list of 10**12 sparsities).
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "batch_size": (1, 10**7),
    "seed": (0, 2**63 - 1),
    "epochs": (1, 10**6),
    "num_steps": (1, 10**5),
    "num_probes": (1, 10**5),
    "refit": (1, 10**7),
    "num_points": (2, 10**5),
    "hessian_batch_size": (1, 10**7),
}
MAX_SPARSITIES = 10**5  #: longest ``--sparsities`` list
MAX_CONFIG_BYTES = 1 << 20  #: largest ``--config`` file


def max_threads() -> int:
    """The most ``--threads`` accepted: four per CPU this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 4 * max(1, cpus)


def check_bounds(cfg: dict[str, Any]) -> dict[str, Any]:
    """:class:`UsageError` for an integer setting outside :data:`INT_BOUNDS` (named as the
    option and as the config key); returns ``cfg``."""
    for key, (lo, hi) in INT_BOUNDS.items():
        value = cfg.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"--{key.replace('_', '-')} ({key}) must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise UsageError(f"--{key.replace('_', '-')} ({key}) must be between {lo} and {hi}, got {value}")
    return cfg


def _regular_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` as an existing regular file (a FIFO would block a read forever), else
    :class:`UsageError`."""
    from .._io import check_regular_file

    p = Path(path)
    try:
        found = check_regular_file(p, option)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not found:
        raise UsageError(f"{option}: file not found: {p}")
    return p


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``) config safely (``json`` / ``tomllib``: no code
    runs); unknown keys and wrongly typed values raise :class:`UsageError`."""
    p = _regular_file(path, "--config")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise UsageError(f"--config: {p} is larger than {MAX_CONFIG_BYTES} bytes; a config is a few settings")
    raw = p.read_bytes()
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                raise UsageError("--config: TOML needs Python >= 3.11 (tomllib); use JSON") from None
            cfg = tomllib.loads(raw.decode("utf-8"))
        elif p.suffix.lower() == ".json":
            cfg = json.loads(raw.decode("utf-8"))
        else:
            raise UsageError(f"--config: expected a .json or .toml file, got {p.name!r}")
    except UsageError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config: could not parse {p}: {exc}") from None
    except RecursionError:
        raise UsageError(f"--config: could not parse {p}: nested too deeply") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"--config: the top level of {p} must be a table/object of settings")
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise UsageError(f"--config: unknown keys {unknown}; allowed: {sorted(CONFIG_KEYS)}")
    for key, value in cfg.items():
        types = CONFIG_KEYS[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise UsageError(f"--config: {key} must be {names}, got {type(value).__name__} ({value!r})")
    return cfg


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict:
    """Load a state dict with ``torch.load(weights_only=True)``: tensors and plain containers
    only; a pickle that would run code is refused (:class:`UsageError`). Accepts a state dict or
    a dict holding one under ``state_dict`` / ``model_state_dict`` / ``model``."""
    import torch

    p = _regular_file(path, "--checkpoint")
    from .._io import safe_torch_load

    try:  # weights_only=True: a pickle that would import or run code is refused
        obj = safe_torch_load(p, "--checkpoint")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(f"--checkpoint: {p} does not hold a state dict (name -> tensor)")
    return {k: v.to(device) for k, v in obj.items()}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Config file values, overridden by options given on the command line."""
    cfg = load_config(args.config) if getattr(args, "config", None) else {}
    for key in CONFIG_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    return check_bounds(cfg)
