"""Datasets as torch ``DataLoader`` pairs ``(train_loader, test_loader)``; nothing is downloaded.

- :func:`digits` (:mod:`.sklearn_digits`): scikit-learn's bundled 8×8 digits, a fixed 1297/500
  split.
- :func:`teacher_student` (:mod:`.teacher`): inputs labelled by a planted sparse teacher MLP.
- :func:`mnist` / :func:`fashion_mnist` (:mod:`.idx`): the idx files (optionally ``.gz``) from a
  local folder.
- :func:`cifar10` / :func:`cifar100` (:mod:`.cifar`): the CIFAR "python version" pickles from a
  local folder, read with a restricted unpickler (:mod:`.safe_pickle`) that refuses anything but
  plain numpy arrays and containers.
- :func:`synthetic_images` (:mod:`.synthetic`): CIFAR-shaped random data for timing runs.
- :func:`load_dataset` (:mod:`.registry`): dispatch by name (for the command line and configs).

Train loaders shuffle with a seeded ``torch.Generator`` (the same order for the same seed); test
loaders never shuffle (:mod:`.loaders`). The tensors behind a loader are
``loader.dataset.tensors``.
"""

from .cifar import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    cifar10,
    cifar100,
    cifar_tensors,
)
from .idx import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MNIST_MEAN,
    MNIST_STD,
    fashion_mnist,
    mnist,
    mnist_tensors,
    read_idx,
)
from .loaders import make_loaders
from .registry import DATASET_INFO, DATASET_NAMES, load_dataset
from .safe_pickle import UnsafePickleError, safe_load_pickle
from .sklearn_digits import digits, digits_tensors
from .synthetic import synthetic_images
from .teacher import teacher_student

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
