"""What the file-backed datasets (idx, CIFAR) share: the check of the local root folder and the
conversion of uint8 images to standardised float tensors. Nothing is ever downloaded."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["check_root", "normalize_images"]


def check_root(root: Any) -> Path:
    """``root`` as a ``Path`` to an existing directory (``~`` expanded)."""
    if root is None:
        raise ValueError("root must name a local directory holding the dataset files, got None")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or os.PathLike, got {type(root).__name__}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"root directory not found: {path}")
    return path


def normalize_images(
    images: np.ndarray, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype
) -> torch.Tensor:
    """uint8 NCHW array → float tensor, scaled to [0, 1] then standardised per channel."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float64).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return ((x - m) / s).to(dtype)
