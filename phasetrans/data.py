"""Datasets as torch ``DataLoader`` pairs ``(train_loader, test_loader)``; nothing is downloaded.

- :func:`digits`: scikit-learn's bundled 8×8 digits, a fixed 1297/500 split.
- :func:`teacher_student`: inputs labelled by a planted sparse teacher MLP.
- :func:`mnist` / :func:`fashion_mnist`: the idx files (optionally ``.gz``) from a local folder.
- :func:`cifar10` / :func:`cifar100`: the CIFAR "python version" pickles from a local folder,
  read with a restricted unpickler that refuses anything but plain numpy arrays and containers.
- :func:`synthetic_images`: CIFAR-shaped random data for timing runs.
- :func:`load_dataset`: dispatch by name (for the command line and configs).

Train loaders shuffle with a seeded ``torch.Generator`` (the same order for the same seed); test
loaders never shuffle. The tensors behind a loader are ``loader.dataset.tensors``.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ._checks import check_bool, check_choice, check_float, check_int, check_seed

__all__ = [
    "DATASET_NAMES",
    "DATASET_INFO",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "make_loaders",
    "digits_tensors",
    "digits",
    "teacher_student",
    "read_idx",
    "mnist_tensors",
    "mnist",
    "fashion_mnist",
    "safe_load_pickle",
    "UnsafePickleError",
    "cifar_tensors",
    "cifar10",
    "cifar100",
    "synthetic_images",
    "load_dataset",
]

#: Per-channel pixel means / standard deviations (pixels scaled to [0, 1]) of the training sets.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)

#: Input shape (one sample, unflattened) and number of classes of each named dataset.
DATASET_INFO: dict[str, dict[str, Any]] = {
    "digits": {"shape": (1, 8, 8), "num_classes": 10},
    "teacher_student": {"shape": None, "num_classes": None},  # set by its arguments
    "mnist": {"shape": (1, 28, 28), "num_classes": 10},
    "fashion_mnist": {"shape": (1, 28, 28), "num_classes": 10},
    "cifar10": {"shape": (3, 32, 32), "num_classes": 10},
    "cifar100": {"shape": (3, 32, 32), "num_classes": 100},
    "synthetic_cifar": {"shape": (3, 32, 32), "num_classes": 10},
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASET_INFO)

_DIGITS_NUM_TRAIN = 1297
_DIGITS_SPLIT_SEED = 0


# ----------------------------------------------------------------------------- helpers


def _check_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating torch.dtype (e.g. torch.float32), got {dtype!r}")
    return dtype

def _check_optional_count(value: Any, name: str) -> int | None:
    return None if value is None else check_int(value, name, minimum=1)


def make_loaders(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    batch_size: int = 128,
    test_batch_size: int | None = None,
    seed: int = 0,
) -> tuple[DataLoader, DataLoader]:
    """Wrap ``(X, y)`` tensor pairs in loaders: train shuffled by a seeded generator, test in order.

    ``test_batch_size=None`` uses ``max(batch_size, 1000)``.
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    test_batch_size = (
        max(batch_size, 1000)
        if test_batch_size is None
        else check_int(test_batch_size, "test_batch_size", minimum=1)
    )
    seed = check_seed(seed)
    for name, pair in (("train", train), ("test", test)):
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not all(isinstance(t, torch.Tensor) for t in pair)
        ):
            raise TypeError(f"{name} must be a pair (inputs, targets) of tensors")
        if pair[0].shape[0] != pair[1].shape[0] or pair[0].shape[0] == 0:
            raise ValueError(
                f"{name}: inputs and targets must have the same non-zero length, got "
                f"{pair[0].shape[0]} and {pair[1].shape[0]}"
            )
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        TensorDataset(*train), batch_size=batch_size, shuffle=True, generator=generator
    )
    test_loader = DataLoader(TensorDataset(*test), batch_size=test_batch_size, shuffle=False)
    return train_loader, test_loader


def _normalize_images(
    images: np.ndarray, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype
) -> torch.Tensor:
    """uint8 NCHW array → float tensor, scaled to [0, 1] then standardised per channel."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float64).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return ((x - m) / s).to(dtype)


# ----------------------------------------------------------------------------- digits


def digits_tensors(
    standardize: bool = True, dtype: torch.dtype = torch.float32, flatten: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(X_train, y_train, X_test, y_test)`` of scikit-learn's digits (1797 images, 10 classes).

    The split is fixed: a permutation from ``numpy.random.default_rng(0)``, first 1297 for
    training, last 500 for testing. Pixels are divided by 16; with ``standardize`` each feature
    is then centred and scaled by the training mean and standard deviation (+1e-6).
    ``flatten=False`` gives ``(N, 1, 8, 8)`` images instead of ``(N, 64)``.
    """
    check_bool(standardize, "standardize")
    check_bool(flatten, "flatten")
    dtype = _check_dtype(dtype)
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(y))
    X, y = X[order] / 16.0, y[order]
    n = _DIGITS_NUM_TRAIN
    if standardize:
        mean, std = X[:n].mean(0), X[:n].std(0) + 1e-6
        X = (X - mean) / std
    Xt = torch.tensor(X, dtype=dtype)
    if not flatten:
        Xt = Xt.reshape(-1, 1, 8, 8)
    yt = torch.tensor(y, dtype=torch.long)
    return Xt[:n], yt[:n], Xt[n:], yt[n:]


def digits(
    batch_size: int = 128,
    test_batch_size: int | None = None,
    seed: int = 0,
    standardize: bool = True,
    dtype: torch.dtype = torch.float32,
    flatten: bool = True,
) -> tuple[DataLoader, DataLoader]:
    """Loaders of :func:`digits_tensors` (1297 train / 500 test; ``seed`` only sets the shuffle)."""
    Xtr, ytr, Xte, yte = digits_tensors(standardize=standardize, dtype=dtype, flatten=flatten)
    return make_loaders((Xtr, ytr), (Xte, yte), batch_size, test_batch_size, seed)


# ----------------------------------------------------------------------------- teacher-student


def teacher_student(
    num_samples: int = 2000,
    dim_in: int = 20,
    hidden: Sequence[int] = (32,),
    num_classes: int | None = 2,
    teacher_sparsity: float = 0.5,
    noise: float = 0.0,
    seed: int = 0,
    batch_size: int = 128,
    test_fraction: float = 0.2,
    test_batch_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[DataLoader, DataLoader, nn.Sequential]:
    """Synthetic data labelled by a planted sparse teacher MLP: ``(train, test, teacher)``.

    Teacher: ``dim_in → hidden... → out`` with tanh activations; in every Linear layer exactly
    ``round(teacher_sparsity * numel)`` weights (chosen at random) are zero, the others are
    ``N(0, 1/(fan_in * (1 - teacher_sparsity)))`` so that pre-activations have unit scale; biases
    are zero. Inputs ``x ~ N(0, I)``.

    - ``num_classes=k >= 2``: classification, ``y = argmax teacher(x)`` (int64); ``noise`` is the
      fraction of labels replaced by uniformly random classes.
    - ``num_classes=None``: regression, ``y = teacher(x) + noise * N(0, 1)``, shape ``(N, 1)``.

    The last ``round(test_fraction * num_samples)`` samples form the test set. Everything is
    determined by ``seed``.
    """
    num_samples = check_int(num_samples, "num_samples", minimum=2)
    dim_in = check_int(dim_in, "dim_in", minimum=1)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise TypeError(f"hidden must be a sequence of layer widths, got {type(hidden).__name__}")
    hidden = [check_int(h, f"hidden[{i}]", minimum=1) for i, h in enumerate(hidden)]
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", minimum=2)
    teacher_sparsity = check_float(teacher_sparsity, "teacher_sparsity", minimum=0.0)
    if not teacher_sparsity < 1.0:
        raise ValueError(f"teacher_sparsity must be in [0, 1), got {teacher_sparsity}")
    noise = check_float(noise, "noise", minimum=0.0)
    if num_classes is not None and noise > 1.0:
        raise ValueError(f"noise (a label-flip fraction for classification) must be <= 1, got {noise}")
    seed = check_seed(seed)
    test_fraction = check_float(test_fraction, "test_fraction", minimum=0.0, strict_minimum=True)
    num_test = round(test_fraction * num_samples)
    if not 1 <= num_test < num_samples:
        raise ValueError(
            f"test_fraction={test_fraction} leaves {num_test} of num_samples={num_samples} for "
            "testing; need at least one test and one training sample"
        )
    dtype = _check_dtype(dtype)

    gen = torch.Generator().manual_seed(seed)
    sizes = [dim_in, *hidden, num_classes if num_classes is not None else 1]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1]).to(dtype)
        n = lin.weight.numel()
        scale = 1.0 / math.sqrt(sizes[i] * (1.0 - teacher_sparsity))
        w = torch.randn(n, generator=gen, dtype=torch.float64) * scale
        w[torch.randperm(n, generator=gen)[: round(teacher_sparsity * n)]] = 0.0
        with torch.no_grad():
            lin.weight.copy_(w.view_as(lin.weight))
            lin.bias.zero_()
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    teacher = nn.Sequential(*layers).eval()

    X = torch.randn(num_samples, dim_in, generator=gen, dtype=torch.float64).to(dtype)
    with torch.no_grad():
        out = teacher(X)
    if num_classes is not None:
        y = out.argmax(1)
        flip = torch.rand(num_samples, generator=gen, dtype=torch.float64) < noise
        random_labels = torch.randint(0, num_classes, (num_samples,), generator=gen)
        y = torch.where(flip, random_labels, y)
    else:
        y = out + noise * torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
    n_train = num_samples - num_test
    loaders = make_loaders(
        (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:]), batch_size, test_batch_size, seed
    )
    return loaders[0], loaders[1], teacher


# ----------------------------------------------------------------------------- idx (MNIST)

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


def _check_root(root: Any) -> Path:
    if root is None:
        raise ValueError("root must name a local directory holding the dataset files, got None")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or os.PathLike, got {type(root).__name__}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"root directory not found: {path}")
    return path


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
    variant: str = "mnist",
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
    root = _check_root(root)
    check_bool(normalize, "normalize")
    check_bool(flatten, "flatten")
    dtype = _check_dtype(dtype)
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
        x = _normalize_images(images[:, None], mean if normalize else (0.0,),
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
    variant: str = "mnist",
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


# ----------------------------------------------------------------------------- safe pickles


def _numpy_pickle_callables() -> dict[tuple[str, str], Any]:
    reconstruct = np.array(0).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
    frombuffer = np.arange(2).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer
    import _codecs

    allowed: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # Python 3 pickles bytes at protocol < 3 as _codecs.encode(str, "latin1")
    allowed[("_codecs", "encode")] = _codecs.encode
    for mod in ("builtins", "__builtin__"):
        for name, obj in (("dict", dict), ("list", list), ("tuple", tuple), ("bytes", bytes),
                          ("bytearray", bytearray), ("str", str), ("int", int), ("float", float)):
            allowed[(mod, name)] = obj
    return allowed


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that references a global outside the allow-list (it would run code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy-array reconstruction and builtin containers."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _numpy_pickle_callables()

    def find_class(self, module: str, name: str) -> Any:
        assert self._allowed is not None
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {self._source}: it references {module}.{name}, which would run "
                "code on loading; only numpy arrays and builtin containers are allowed (is this "
                "really a CIFAR batch file?)"
            ) from None


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle holding only numpy arrays, dicts, lists, tuples, bytes, str and numbers.

    Any other global (a class or function, e.g. ``os.system`` in a malicious ``__reduce__``) is
    refused with :class:`UnsafePickleError` (a ``pickle.UnpicklingError``) before anything is called. Python 2 pickles are read
    with ``encoding="latin1"``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file not found: {path}")
    raw = path.read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated / not a pickle at all
        raise ValueError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from exc


# ----------------------------------------------------------------------------- CIFAR

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
    variant: str = "cifar10",
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    label_mode: str = "fine",
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
    root = _check_root(root)
    check_bool(normalize, "normalize")
    dtype = _check_dtype(dtype)
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
        out += [_normalize_images(images, mean, std, dtype), torch.from_numpy(labels)]
    return out[0], out[1], out[2], out[3]


def _cifar(
    variant: str,
    root: str | os.PathLike,
    batch_size: int,
    test_batch_size: int | None,
    seed: int,
    normalize: bool,
    dtype: torch.dtype,
    label_mode: str,
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
    label_mode: str = "fine",
    num_train: int | None = None,
    num_test: int | None = None,
) -> tuple[DataLoader, DataLoader]:
    """CIFAR-100 loaders (``'fine_labels'`` by default) from local python-version files."""
    return _cifar("cifar100", root, batch_size, test_batch_size, seed, normalize, dtype,
                  label_mode, num_train, num_test)


# ----------------------------------------------------------------------------- synthetic


def synthetic_images(
    num_samples: int = 1024,
    shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    seed: int = 0,
    batch_size: int = 128,
    num_test: int | None = None,
    test_batch_size: int | None = None,
    signal: float = 0.5,
    dtype: torch.dtype = torch.float32,
) -> tuple[DataLoader, DataLoader]:
    """Random images of ``shape`` (default CIFAR-shaped) for timing runs: ``(train, test)``.

    ``x = N(0, I) + signal * template[y]`` with a fixed random template per class (so that the
    data is learnable), uniform labels. ``num_train = num_samples``; ``num_test`` defaults to
    ``max(1, num_samples // 5)``.
    """
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) == 0:
        raise TypeError(f"shape must be a non-empty sequence of ints, got {shape!r}")
    shape = tuple(check_int(s, f"shape[{i}]", minimum=1) for i, s in enumerate(shape))
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    seed = check_seed(seed)
    num_test = max(1, num_samples // 5) if num_test is None else check_int(num_test, "num_test", 1)
    signal = check_float(signal, "signal", minimum=0.0)
    dtype = _check_dtype(dtype)
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randn((num_classes, *shape), generator=gen)
    n = num_samples + num_test
    y = torch.randint(0, num_classes, (n,), generator=gen)
    X = (torch.randn((n, *shape), generator=gen) + signal * templates[y]).to(dtype)
    return make_loaders(
        (X[:num_samples], y[:num_samples]), (X[num_samples:], y[num_samples:]),
        batch_size, test_batch_size, seed,
    )


# ----------------------------------------------------------------------------- dispatcher


def load_dataset(name: str, root: str | os.PathLike | None = None, **kwargs: Any
                 ) -> tuple[DataLoader, DataLoader]:
    """``(train_loader, test_loader)`` for a dataset in :data:`DATASET_NAMES`.

    ``root`` is required for the file-backed datasets (mnist, fashion_mnist, cifar10, cifar100)
    and refused for the others; ``kwargs`` go to the loader function. For ``teacher_student`` the
    teacher is dropped (call :func:`teacher_student` to get it).
    """
    name = check_choice(name, "name", DATASET_NAMES)
    file_backed = {"mnist": mnist, "fashion_mnist": fashion_mnist, "cifar10": cifar10,
                   "cifar100": cifar100}
    if name in file_backed:
        if root is None:
            raise ValueError(f"root is required for dataset {name!r}: a local directory with its files")
        return file_backed[name](root, **kwargs)
    if root is not None:
        raise ValueError(f"dataset {name!r} is generated in memory; root must be None, got {root!r}")
    if name == "digits":
        return digits(**kwargs)
    if name == "teacher_student":
        train, test, _ = teacher_student(**kwargs)
        return train, test
    return synthetic_images(**kwargs)
