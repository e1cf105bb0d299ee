"""The named datasets: their shapes and class counts, and :func:`load_dataset` (for the command
line and configs)."""

from __future__ import annotations

import os
from typing import Any, Literal

from torch.utils.data import DataLoader

from .._checks import check_choice
from .cifar import cifar10, cifar100
from .idx import fashion_mnist, mnist
from .sklearn_digits import digits
from .synthetic import synthetic_images
from .teacher import teacher_student

__all__ = ["DATASET_INFO", "DATASET_NAMES", "DatasetName", "load_dataset"]

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
#: A name in :data:`DATASET_NAMES`.
DatasetName = Literal[
    "digits", "teacher_student", "mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic_cifar"
]


def load_dataset(name: DatasetName, root: str | os.PathLike | None = None, **kwargs: Any
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
