"""Synthetic data labelled by a planted sparse teacher MLP (classification or regression)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from .._checks import check_float, check_float_dtype, check_int, check_seed
from .loaders import make_loaders

__all__ = ["teacher_student"]


def _planted_teacher(
    sizes: list[int], sparsity: float, gen: torch.Generator, dtype: torch.dtype
) -> nn.Sequential:
    """The teacher MLP ``sizes[0] → ... → sizes[-1]`` (tanh between layers, zero biases), each
    Linear layer with ``round(sparsity·numel)`` random zeros and the other weights
    ``N(0, 1/(fan_in·(1 − sparsity)))``; drawn from ``gen``, in eval mode."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1]).to(dtype)
        n = lin.weight.numel()
        scale = 1.0 / math.sqrt(sizes[i] * (1.0 - sparsity))
        w = torch.randn(n, generator=gen, dtype=torch.float64) * scale
        w[torch.randperm(n, generator=gen)[: round(sparsity * n)]] = 0.0
        with torch.no_grad():
            lin.weight.copy_(w.view_as(lin.weight))
            lin.bias.zero_()
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers).eval()


def _labels(teacher: nn.Module, X: torch.Tensor, num_classes: int | None, noise: float,
            gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """``argmax teacher(X)`` with a ``noise`` fraction of random labels (classification), or
    ``teacher(X) + noise·N(0, 1)`` (regression, ``num_classes=None``)."""
    num_samples = X.shape[0]
    with torch.no_grad():
        out = teacher(X)
    if num_classes is not None:
        y = out.argmax(1)
        flip = torch.rand(num_samples, generator=gen, dtype=torch.float64) < noise
        random_labels = torch.randint(0, num_classes, (num_samples,), generator=gen)
        return torch.where(flip, random_labels, y)
    return out + noise * torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)


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
    dtype = check_float_dtype(dtype)

    gen = torch.Generator().manual_seed(seed)
    sizes = [dim_in, *hidden, num_classes if num_classes is not None else 1]
    teacher = _planted_teacher(sizes, teacher_sparsity, gen, dtype)
    X = torch.randn(num_samples, dim_in, generator=gen, dtype=torch.float64).to(dtype)
    y = _labels(teacher, X, num_classes, noise, gen, dtype)
    n_train = num_samples - num_test
    loaders = make_loaders(
        (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:]), batch_size, test_batch_size, seed
    )
    return loaders[0], loaders[1], teacher
