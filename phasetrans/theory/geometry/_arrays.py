"""Input conversion shared by the geometry files: real float64 arrays with clear errors."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_float_array", "as_vector"]


def as_float_array(x: Any, name: str, allow_inf: bool = False) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be array-like of real numbers, got {type(x).__name__}")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like of real numbers, got {type(x).__name__}") from exc
    bad = np.isnan(arr) if allow_inf else ~np.isfinite(arr)
    if np.any(bad):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return arr


def as_vector(x: Any, name: str, allow_inf: bool = False, nonneg: bool = False) -> np.ndarray:
    arr = as_float_array(x, name, allow_inf=allow_inf)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if nonneg and np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative")
    return arr
