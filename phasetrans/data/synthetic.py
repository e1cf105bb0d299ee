"""Random CIFAR-shaped images with a learnable class signal, for timing runs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from .._checks import check_float, check_float_dtype, check_int, check_seed
from .loaders import make_loaders

__all__ = ["synthetic_images"]


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
    dtype = check_float_dtype(dtype)
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randn((num_classes, *shape), generator=gen)
    n = num_samples + num_test
    y = torch.randint(0, num_classes, (n,), generator=gen)
    X = (torch.randn((n, *shape), generator=gen) + signal * templates[y]).to(dtype)
    return make_loaders(
        (X[:num_samples], y[:num_samples]), (X[num_samples:], y[num_samples:]),
        batch_size, test_batch_size, seed,
    )
