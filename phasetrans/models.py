"""Reference networks in plain ``torch.nn`` (no torchvision): MLPs, LeNet, a small VGG, ResNets.

- :class:`MLP` (flattens its input), :func:`fc5`, :func:`fc12` (the fully connected nets of
  Zhang et al., NeurIPS 2024), :func:`digits_mlp`.
- :func:`lenet` (8×8 digits, 28×28 MNIST, 32×32 CIFAR), :func:`vgg_small`.
- :func:`resnet20` (He et al. 2016 CIFAR ResNet) and :func:`resnet18` (CIFAR-style ResNet-18).
- :func:`build_model` dispatches by name (:data:`MODEL_NAMES`).

Initialisation is PyTorch's default except for the ResNets (Kaiming-normal convolutions, BN
weight 1 / bias 0), so a model is determined by ``torch.manual_seed``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_bool, check_choice, check_int

__all__ = [
    "ACTIVATIONS",
    "MODEL_NAMES",
    "FC5_SIZES",
    "FC12_SIZES",
    "MLP",
    "fc5",
    "fc12",
    "digits_mlp",
    "LeNet",
    "lenet",
    "VGGSmall",
    "vgg_small",
    "BasicBlock",
    "CifarResNet",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet18",
    "build_model",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}

#: FC5 of Zhang et al. (CIFAR-10): 3072-1000-600-300-100-10.
FC5_SIZES: tuple[int, ...] = (3072, 1000, 600, 300, 100, 10)
#: FC12 widths as in the reference code of Zhang et al. (QiaozheZhang/Global-One-shot-Pruning,
#: ``model.py``, class ``FC12``): 12 Linear layers, widths decreasing from 1000 to 100.
FC12_SIZES: tuple[int, ...] = (3072, 1000, 900, 800, 750, 700, 650, 600, 500, 400, 200, 100, 10)

def _check_sizes(sizes: Any, name: str, min_len: int) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"{name} must be a sequence of positive ints, got {type(sizes).__name__}")
    if len(sizes) < min_len:
        raise ValueError(f"{name} must have at least {min_len} entries, got {list(sizes)}")
    return tuple(check_int(s, f"{name}[{i}]", minimum=1) for i, s in enumerate(sizes))


class MLP(nn.Sequential):
    """``Flatten → Linear(sizes[0], sizes[1]) → act → ... → Linear(sizes[-2], sizes[-1])``.

    No activation after the last layer. ``activation``: one of :data:`ACTIVATIONS`.
    Linear layers sit at indices 1, 3, 5, ... (index 0 is the ``Flatten``).
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", bias: bool = True) -> None:
        sizes = _check_sizes(sizes, "sizes", 2)
        activation = check_choice(activation, "activation", tuple(ACTIVATIONS))
        check_bool(bias, "bias")
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)
        self.sizes = sizes


def fc5(in_features: int = 3072, num_classes: int = 10, activation: str = "relu") -> MLP:
    """FC5 of Zhang et al.: ``in_features``-1000-600-300-100-``num_classes`` (ReLU)."""
    in_features = check_int(in_features, "in_features", minimum=1)
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    return MLP((in_features, *FC5_SIZES[1:-1], num_classes), activation)


def fc12(in_features: int = 3072, num_classes: int = 10, activation: str = "relu") -> MLP:
    """FC12 of Zhang et al.: 12 Linear layers with widths :data:`FC12_SIZES`
    (``in_features``-1000-900-800-750-700-650-600-500-400-200-100-``num_classes``), taken from
    their reference code; the paper itself does not list the widths."""
    in_features = check_int(in_features, "in_features", minimum=1)
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    return MLP((in_features, *FC12_SIZES[1:-1], num_classes), activation)


def digits_mlp(
    hidden: Sequence[int] = (64, 32), activation: str = "relu", num_classes: int = 10
) -> MLP:
    """A small MLP for the 8×8 digits: 64-``hidden``-``num_classes``."""
    hidden = _check_sizes(hidden, "hidden", 0)
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    return MLP((64, *hidden, num_classes), activation)


# ----------------------------------------------------------------------------- CNNs


class LeNet(nn.Sequential):
    """LeNet-style CNN: conv5(6)-relu-pool2, conv5(16)-relu-pool2, fc 120-84-classes.

    Both convolutions use padding 2, so the flattened size is ``16 * (image_size // 4)**2``
    (784 for 28×28, 64 for 8×8, 1024 for 32×32). A sequential of two sequentials,
    ``features`` and ``classifier`` (parameter names ``features.0.weight``, ...), so that its
    Hessian products take the written-out path (:mod:`phasetrans.linalg._pearlmutter`).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        num_classes = check_int(num_classes, "num_classes", minimum=1)
        image_size = check_int(image_size, "image_size", minimum=4)
        features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 2 // 2
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )
        super().__init__(OrderedDict(features=features, classifier=classifier))


def lenet(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> LeNet:
    """A :class:`LeNet` for ``image_size``×``image_size`` inputs (8 for digits, 28 for MNIST)."""
    return LeNet(in_channels, num_classes, image_size)


class VGGSmall(nn.Sequential):
    """Six 3×3 conv layers ``[w, w, M, 2w, 2w, M, 4w, 4w, M]`` (optional BN), global average
    pooling, one Linear ``4w → num_classes``. Any input size ≥ 8. A sequential of ``features``,
    ``pool``, ``flatten`` and ``classifier`` (parameter names ``features.0.weight``, ...), so that
    its Hessian products take the written-out path (:mod:`phasetrans.linalg._pearlmutter`)."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, batchnorm: bool = True, width: int = 32
    ) -> None:
        num_classes = check_int(num_classes, "num_classes", minimum=1)
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        check_bool(batchnorm, "batchnorm")
        width = check_int(width, "width", minimum=1)
        layers: list[nn.Module] = []
        c = in_channels
        for out in (width, width, "M", 2 * width, 2 * width, "M", 4 * width, 4 * width, "M"):
            if out == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(c, out, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU())
            c = out
        super().__init__(OrderedDict(features=nn.Sequential(*layers), pool=nn.AdaptiveAvgPool2d(1),
                                     flatten=nn.Flatten(), classifier=nn.Linear(c, num_classes)))


def vgg_small(
    num_classes: int = 10, in_channels: int = 3, batchnorm: bool = True, width: int = 32
) -> VGGSmall:
    """A small VGG for 32×32 images (see :class:`VGGSmall`); ``width=32`` has about 0.29M params."""
    return VGGSmall(num_classes, in_channels, batchnorm, width)


# ----------------------------------------------------------------------------- ResNets


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual connection.

    Shortcut when the shape changes: ``"A"`` (parameter-free: subsample by the stride and pad
    channels with zeros, He et al. 2016 option A) or ``"B"`` (1×1 conv + BN projection).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        in_planes = check_int(in_planes, "in_planes", minimum=1)
        planes = check_int(planes, "planes", minimum=1)
        stride = check_int(stride, "stride", minimum=1)
        shortcut = check_choice(shortcut, "shortcut", ("A", "B"))
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.pad = stride, planes - in_planes
        self.option_a = False
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                if planes < in_planes:
                    raise ValueError("shortcut 'A' needs planes >= in_planes")
                self.option_a = True
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.option_a:
            sc = x[:, :, :: self.stride, :: self.stride]
            sc = F.pad(sc, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        else:
            sc = self.shortcut(x)
        return F.relu(out + sc)


class CifarResNet(nn.Module):
    """CIFAR ResNet: 3×3 stem conv + BN + ReLU (no max-pool), stages of :class:`BasicBlock`,
    global average pooling, one Linear classifier."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        blocks = _check_sizes(blocks, "blocks", 1)
        widths = _check_sizes(widths, "widths", 1)
        if len(blocks) != len(widths):
            raise ValueError(f"blocks and widths must have the same length, got {blocks}, {widths}")
        num_classes = check_int(num_classes, "num_classes", minimum=1)
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        shortcut = check_choice(shortcut, "shortcut", ("A", "B"))
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        c = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layer = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layer.append(BasicBlock(c, w, stride, shortcut))
                c = w
            stages.append(nn.Sequential(*layer))
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def _cifar_resnet(depth: int, num_classes: int, in_channels: int, shortcut: str) -> CifarResNet:
    n = (depth - 2) // 6
    return CifarResNet((n, n, n), (16, 32, 64), num_classes, in_channels, shortcut)


def resnet20(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-20 of He et al. (2016) for CIFAR: 3 stages × 3 basic blocks, 16/32/64 channels.

    Default shortcut ``"A"`` (zero-padding identity, as in the paper): 269,722 parameters with
    10 classes; ``"B"`` (1×1 conv projections) has 272,474.
    """
    return _cifar_resnet(20, num_classes, in_channels, shortcut)


def resnet32(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-32 of He et al. (2016): 3 stages × 5 basic blocks, 16/32/64 channels."""
    return _cifar_resnet(32, num_classes, in_channels, shortcut)


def resnet56(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-56 of He et al. (2016): 3 stages × 9 basic blocks, 16/32/64 channels."""
    return _cifar_resnet(56, num_classes, in_channels, shortcut)


def resnet18(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR-style ResNet-18: 3×3 stem (no max-pool), [2, 2, 2, 2] basic blocks with
    64/128/256/512 channels, 1×1-conv projection shortcuts; 11,173,962 parameters (10 classes)."""
    return CifarResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels, "B")


# ----------------------------------------------------------------------------- dispatcher

_BUILDERS = {
    "mlp": MLP,
    "fc5": fc5,
    "fc12": fc12,
    "digits_mlp": digits_mlp,
    "lenet": lenet,
    "vgg_small": vgg_small,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "resnet18": resnet18,
}
#: Names accepted by :func:`build_model`.
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model from :data:`MODEL_NAMES` with keyword arguments for its builder
    (``mlp`` needs ``sizes``). Seed with ``torch.manual_seed`` first for a reproducible init."""
    name = check_choice(name, "name", MODEL_NAMES)
    try:
        return _BUILDERS[name](**kwargs)
    except TypeError as exc:
        if "argument" in str(exc):
            raise TypeError(f"build_model({name!r}): {exc}") from exc
        raise
