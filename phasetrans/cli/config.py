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
    "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED", "UsageError", "CONFIG_KEYS",
    "load_config", "load_checkpoint", "settings",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    "loss": (str,),
    "metric": (str,),
    "checkpoint_dir": (str,),
}


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``) config safely (``json`` / ``tomllib``: no code
    runs); unknown keys and wrongly typed values raise :class:`UsageError`."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config: file not found: {p}")
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
    if not isinstance(cfg, dict):
        raise UsageError(f"--config: the top level of {p} must be a table/object of settings")
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise UsageError(f"--config: unknown keys {unknown}; allowed: {sorted(CONFIG_KEYS)}")
    for key, value in cfg.items():
        types = CONFIG_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise UsageError(f"--config: {key} must be {names}, got {type(value).__name__} ({value!r})")
    return cfg


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict:
    """Load a state dict with ``torch.load(weights_only=True)``: tensors and plain containers
    only; a pickle that would run code is refused (:class:`UsageError`). Accepts a state dict or
    a dict holding one under ``state_dict`` / ``model_state_dict`` / ``model``."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--checkpoint: file not found: {p}")
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
    return cfg
