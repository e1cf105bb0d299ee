"""``(inputs, targets)`` tensor pairs → ``(train_loader, test_loader)``.

Train loaders shuffle with a seeded ``torch.Generator`` (the same order for the same seed); test
loaders never shuffle. The tensors behind a loader are ``loader.dataset.tensors``.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from .._checks import check_int, check_seed

__all__ = ["make_loaders"]


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
