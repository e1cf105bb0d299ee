"""scikit-learn's bundled 8×8 digits (1797 images, 10 classes): a fixed 1297/500 split."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from .._checks import check_bool, check_float_dtype
from .loaders import make_loaders

__all__ = ["digits_tensors", "digits"]

_DIGITS_NUM_TRAIN = 1297
_DIGITS_SPLIT_SEED = 0


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
    dtype = check_float_dtype(dtype)
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
