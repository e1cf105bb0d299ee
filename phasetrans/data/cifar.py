"""CIFAR-10 / CIFAR-100 from the "python version" batch files in a local folder, read with
:func:`~phasetrans.data.safe_pickle.safe_load_pickle` (nothing in them runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from .._checks import check_bool, check_choice, check_float_dtype, check_int
from .loaders import make_loaders
from .local_files import check_root, normalize_images
from .safe_pickle import safe_load_pickle

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "cifar_tensors",
    "cifar10",
    "cifar100",
]

#: Per-channel pixel means / standard deviations (pixels scaled to [0, 1]) of the training sets.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

#: The two CIFAR datasets, and CIFAR-100's two label sets (100 fine / 20 coarse classes).
CifarVariant = Literal["cifar10", "cifar100"]
LabelMode = Literal["fine", "coarse"]


def _check_optional_count(value: Any, name: str) -> int | None:
    return None if value is None else check_int(value, name, minimum=1)


_CIFAR_LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "num_classes": 10,
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "num_classes": 100,
        "mean": CIFAR100_MEAN,
        "std": CIFAR100_STD,
    },
}


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_load_pickle(path)
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict (a CIFAR batch), got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise ValueError(
            f"{path}: expected keys 'data' and {label_key!r}, found {sorted(map(str, batch))}"
        )
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    labels = np.asarray(batch[label_key])
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path}: {label_key!r} must be {len(data)} integer labels, got {labels.dtype} "
            f"{labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels must be in 0..{num_classes - 1}, found "
                         f"{int(labels.min())}..{int(labels.max())}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def cifar_tensors(
    root: str | os.PathLike,
    variant: CifarVariant = "cifar10",
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    label_mode: LabelMode = "fine",
    num_train: int | None = None,
    num_test: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(X_train, y_train, X_test, y_test)`` from the CIFAR python-version batch files.

    ``root`` is the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or its
    parent. Images NCHW float, scaled to [0, 1] and (``normalize``) standardised with the
    standard per-channel means/stds. CIFAR-100: ``label_mode`` ``"fine"`` (100 classes) or
    ``"coarse"`` (20). ``num_train`` / ``num_test`` keep only the first samples.
    """
    variant = check_choice(variant, "variant", tuple(_CIFAR_LAYOUT))
    root = check_root(root)
    check_bool(normalize, "normalize")
    dtype = check_float_dtype(dtype)
    label_mode = check_choice(label_mode, "label_mode", ("fine", "coarse"))
    num_train = _check_optional_count(num_train, "num_train")
    num_test = _check_optional_count(num_test, "num_test")
    layout = _CIFAR_LAYOUT[variant]
    folder = root / layout["folder"]
    if not (folder / layout["test"][0]).is_file():
        folder = root
    if variant == "cifar10":
        label_key, num_classes = "labels", 10
    else:
        label_key = f"{label_mode}_labels"
        num_classes = 100 if label_mode == "fine" else 20
    out: list[torch.Tensor] = []
    for split, limit in (("train", num_train), ("test", num_test)):
        parts = []
        for fname in layout[split]:
            path = folder / fname
            if not path.is_file():
                raise FileNotFoundError(
                    f"{variant} batch file not found: {path} (expected {layout[split]} in "
                    f"{root} or {root / layout['folder']}); nothing is downloaded"
                )
            parts.append(_read_cifar_batch(path, label_key, num_classes))
        images = np.concatenate([p[0] for p in parts])[:limit]
        labels = np.concatenate([p[1] for p in parts])[:limit]
        mean, std = (layout["mean"], layout["std"]) if normalize else ((0.0,) * 3, (1.0,) * 3)
        out += [normalize_images(images, mean, std, dtype), torch.from_numpy(labels)]
    return out[0], out[1], out[2], out[3]


def _cifar(
    variant: CifarVariant,
    root: str | os.PathLike,
    batch_size: int,
    test_batch_size: int | None,
    seed: int,
    normalize: bool,
    dtype: torch.dtype,
    label_mode: LabelMode,
    num_train: int | None,
    num_test: int | None,
) -> tuple[DataLoader, DataLoader]:
    Xtr, ytr, Xte, yte = cifar_tensors(
        root, variant, normalize, dtype, label_mode, num_train, num_test
    )
    return make_loaders((Xtr, ytr), (Xte, yte), batch_size, test_batch_size, seed)


def cifar10(
    root: str | os.PathLike,
    batch_size: int = 128,
    test_batch_size: int | None = None,
    seed: int = 0,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    num_train: int | None = None,
    num_test: int | None = None,
) -> tuple[DataLoader, DataLoader]:
    """CIFAR-10 loaders from local python-version batches (see :func:`cifar_tensors`)."""
    return _cifar("cifar10", root, batch_size, test_batch_size, seed, normalize, dtype,
                  "fine", num_train, num_test)


def cifar100(
    root: str | os.PathLike,
    batch_size: int = 128,
    test_batch_size: int | None = None,
    seed: int = 0,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    label_mode: LabelMode = "fine",
    num_train: int | None = None,
    num_test: int | None = None,
) -> tuple[DataLoader, DataLoader]:
    """CIFAR-100 loaders (``'fine_labels'`` by default) from local python-version files."""
    return _cifar("cifar100", root, batch_size, test_batch_size, seed, normalize, dtype,
                  label_mode, num_train, num_test)
