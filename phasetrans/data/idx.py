"""MNIST and Fashion-MNIST from their idx files (optionally ``.gz``) in a local folder."""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from .._checks import check_bool, check_choice, check_float_dtype
from .loaders import make_loaders
from .local_files import check_root, normalize_images

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "read_idx",
    "mnist_tensors",
    "mnist",
    "fashion_mnist",
]

#: Pixel mean / standard deviation (pixels scaled to [0, 1]) of the training sets.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)

#: The two datasets stored in the MNIST idx layout.
MnistVariant = Literal["mnist", "fashion_mnist"]

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"could not read {path}: {exc}") from exc


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one idx file (``.gz`` allowed) into a numpy array, checking header and length.

    Format: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions, then each
    dimension as a big-endian int32, then the data.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx file not found: {path}")
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path} is not an idx file: expected a magic number 0x0000TTNN with a known type "
            f"code TT, got {raw[:4].hex() or 'an empty file'}"
        )
    dt, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated idx header ({len(raw)} bytes, {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: idx header says dims {dims} ({expected} bytes in all) but the file has "
            f"{len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dt, offset=header).reshape(dims).astype(dt.newbyteorder("="))


_MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}




def _find_idx(root: Path, stem: str, subdirs: Sequence[str]) -> Path:
    names = [stem, stem + ".gz"]
    dotted = stem.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte
    names += [dotted, dotted + ".gz"]
    tried = []
    for sub in ("", *subdirs):
        for name in names:
            candidate = root / sub / name if sub else root / name
            tried.append(candidate)
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{stem}[.gz] not found under {root} (looked in {sorted({str(p.parent) for p in tried})}); "
        "nothing is downloaded: put the idx files there"
    )


def mnist_tensors(
    root: str | os.PathLike,
    variant: MnistVariant = "mnist",
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    flatten: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(X_train, y_train, X_test, y_test)`` from the MNIST-format idx files under ``root``.

    Looks in ``root``, ``root/raw`` and ``root/<MNIST|FashionMNIST>/raw``. Images ``(N, 1, 28, 28)``
    scaled to [0, 1] (``normalize``: then standardised with the dataset's mean/std), or
    ``(N, 784)`` with ``flatten``; labels int64.
    """
    variant = check_choice(variant, "variant", ("mnist", "fashion_mnist"))
    root = check_root(root)
    check_bool(normalize, "normalize")
    check_bool(flatten, "flatten")
    dtype = check_float_dtype(dtype)
    folder = "MNIST" if variant == "mnist" else "FashionMNIST"
    subdirs = ("raw", f"{folder}/raw", folder)
    mean, std = (MNIST_MEAN, MNIST_STD) if variant == "mnist" else (FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    out: list[torch.Tensor] = []
    for split in ("train", "test"):
        ipath = _find_idx(root, _MNIST_FILES[(split, "images")], subdirs)
        lpath = _find_idx(root, _MNIST_FILES[(split, "labels")], subdirs)
        images, labels = read_idx(ipath), read_idx(lpath)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"{ipath}: expected uint8 images of shape (N, H, W), got "
                             f"{images.dtype} {images.shape}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(f"{lpath}: expected uint8 labels of shape (N,), got "
                             f"{labels.dtype} {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(
                f"{ipath} has {len(images)} images but {lpath} has {len(labels)} labels"
            )
        if labels.size and labels.max() > 9:
            raise ValueError(f"{lpath}: labels must be in 0..9, found {int(labels.max())}")
        x = normalize_images(images[:, None], mean if normalize else (0.0,),
                              std if normalize else (1.0,), dtype)
        if flatten:
            x = x.reshape(len(x), -1)
        out += [x, torch.from_numpy(labels.astype(np.int64))]
    return out[0], out[1], out[2], out[3]


def mnist(
    root: str | os.PathLike,
    batch_size: int = 128,
    test_batch_size: int | None = None,
    seed: int = 0,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    flatten: bool = False,
    variant: MnistVariant = "mnist",
) -> tuple[DataLoader, DataLoader]:
    """Loaders of MNIST (or ``variant="fashion_mnist"``) read from local idx files; see
    :func:`mnist_tensors`. Never downloads."""
    Xtr, ytr, Xte, yte = mnist_tensors(root, variant, normalize, dtype, flatten)
    return make_loaders((Xtr, ytr), (Xte, yte), batch_size, test_batch_size, seed)


def fashion_mnist(root: str | os.PathLike, **kwargs: Any) -> tuple[DataLoader, DataLoader]:
    """Fashion-MNIST (same idx layout as MNIST): :func:`mnist` with ``variant="fashion_mnist"``."""
    if "variant" in kwargs:
        raise TypeError("fashion_mnist() got an unexpected keyword argument 'variant'")
    return mnist(root, variant="fashion_mnist", **kwargs)
