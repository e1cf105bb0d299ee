"""Models: exact parameter counts, forward shapes, prunable weights, determinism, argument checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import phasetrans as pt
from phasetrans import models as M


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear(a: int, b: int, bias: bool = True) -> int:
    return a * b + (b if bias else 0)


def conv(cin: int, cout: int, k: int = 3) -> int:  # bias-free
    return cin * cout * k * k


def bn(c: int) -> int:
    return 2 * c


def mlp_count(sizes, bias=True) -> int:
    return sum(linear(a, b, bias) for a, b in zip(sizes[:-1], sizes[1:]))


def test_mlp_counts_and_structure():
    assert n_params(M.fc5()) == mlp_count((3072, 1000, 600, 300, 100, 10)) == 3_885_010
    fc12 = M.fc12()
    assert sum(isinstance(m, nn.Linear) for m in fc12.modules()) == 12
    widths = (3072, 1000, 900, 800, 750, 700, 650, 600, 500, 400, 200, 100, 10)
    assert n_params(fc12) == mlp_count(widths) == 7_269_610
    assert n_params(M.digits_mlp()) == mlp_count((64, 64, 32, 10)) == 6_570
    assert n_params(M.fc5(in_features=784)) == mlp_count((784, 1000, 600, 300, 100, 10))
    assert n_params(M.MLP((5, 4, 3), bias=False)) == 5 * 4 + 4 * 3
    m = M.MLP((4, 3, 2), activation="tanh")
    assert [type(x) for x in m] == [nn.Flatten, nn.Linear, nn.Tanh, nn.Linear]


def test_resnet_counts():
    def stage(cin, c, n, projection):
        first = conv(cin, c) + bn(c) + conv(c, c) + bn(c)
        if projection and cin != c:
            first += conv(cin, c, 1) + bn(c)
        return first + (n - 1) * (2 * conv(c, c) + 2 * bn(c))

    r20_a = conv(3, 16) + bn(16) + stage(16, 16, 3, False) + stage(16, 32, 3, False) \
        + stage(32, 64, 3, False) + linear(64, 10)
    assert r20_a == 269_722
    assert n_params(M.resnet20()) == r20_a
    r20_b = r20_a + conv(16, 32, 1) + bn(32) + conv(32, 64, 1) + bn(64)
    assert n_params(M.resnet20(shortcut="B")) == r20_b == 272_474
    r18 = conv(3, 64) + bn(64) + stage(64, 64, 2, True) + stage(64, 128, 2, True) \
        + stage(128, 256, 2, True) + stage(256, 512, 2, True) + linear(512, 10)
    assert r18 == 11_173_962
    assert n_params(M.resnet18()) == r18
    assert n_params(M.resnet18(num_classes=100)) == r18 + 90 * 513
    assert sum(isinstance(m, M.BasicBlock) for m in M.resnet56().modules()) == 27


def test_lenet_and_vgg_counts():
    for size, flat in ((8, 64), (28, 784), (32, 1024)):
        m = M.lenet(image_size=size)
        expected = (linear(25, 6) + linear(6 * 25, 16) + linear(flat, 120) + linear(120, 84)
                    + linear(84, 10))
        assert n_params(m) == expected
    w = 32
    vgg = conv(3, w) + conv(w, w) + conv(w, 2 * w) + conv(2 * w, 2 * w) + conv(2 * w, 4 * w) \
        + conv(4 * w, 4 * w) + bn(w) * 2 + bn(2 * w) * 2 + bn(4 * w) * 2 + linear(4 * w, 10)
    assert n_params(M.vgg_small()) == vgg
    no_bn = vgg - 2 * (bn(w) + bn(2 * w) + bn(4 * w)) + 2 * (w + 2 * w + 4 * w)  # conv biases
    assert n_params(M.vgg_small(batchnorm=False)) == no_bn


@pytest.mark.parametrize(
    "name,kwargs,shape",
    [
        ("digits_mlp", {}, (3, 64)),
        ("mlp", {"sizes": (48, 7, 5)}, (3, 3, 4, 4)),
        ("fc5", {}, (3, 3, 32, 32)),
        ("fc12", {"in_features": 784, "num_classes": 7}, (3, 1, 28, 28)),
        ("lenet", {"image_size": 8, "num_classes": 10}, (3, 1, 8, 8)),
        ("lenet", {}, (3, 1, 28, 28)),
        ("lenet", {"in_channels": 3, "image_size": 32, "num_classes": 5}, (3, 3, 32, 32)),
        ("vgg_small", {"num_classes": 100, "width": 8}, (3, 3, 32, 32)),
        ("resnet20", {}, (3, 3, 32, 32)),
        ("resnet20", {"in_channels": 1, "num_classes": 4}, (3, 1, 28, 28)),
        ("resnet18", {"num_classes": 100}, (2, 3, 32, 32)),
    ],
)
def test_forward_shapes(name, kwargs, shape):
    torch.manual_seed(0)
    model = M.build_model(name, **kwargs).eval()
    num_classes = kwargs.get("num_classes", kwargs.get("sizes", [10])[-1])
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (shape[0], num_classes)
    assert torch.isfinite(out).all()


def test_prunable_parameters_are_exactly_linear_and_conv_weights():
    model = M.resnet20(shortcut="B")
    names = list(pt.prunable_parameters(model))
    expected = [f"{n}.weight" for n, m in model.named_modules()
                if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert names == expected
    assert len(names) == 19 + 2 + 1  # 19 3×3 convs, 2 projections, classifier
    bn_total = sum(p.numel() for n, m in model.named_modules()
                   if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert sum(p.numel() for p in pt.prunable_parameters(model).values()) \
        == n_params(model) - bn_total - 10  # minus BN affine and the classifier bias
    mlp = M.digits_mlp((8,))
    assert list(pt.prunable_parameters(mlp)) == ["1.weight", "3.weight"]


def test_option_a_shortcut_is_subsample_and_zero_pad():
    torch.manual_seed(0)
    block = M.BasicBlock(4, 8, stride=2, shortcut="A").eval()
    assert n_params(block) == conv(4, 8) + conv(8, 8) + 2 * bn(8)
    with torch.no_grad():
        block.bn2.weight.zero_()  # residual branch contributes exactly bn2.bias = 0
    x = torch.randn(2, 4, 6, 6).abs()
    out = block(x)
    expected = torch.zeros(2, 8, 3, 3)
    expected[:, 2:6] = x[:, :, ::2, ::2]
    assert torch.equal(out, expected)


def test_determinism_given_seed():
    torch.manual_seed(3)
    a = M.resnet20()
    torch.manual_seed(3)
    b = M.resnet20()
    torch.manual_seed(4)
    c = M.resnet20()
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])


def test_argument_checks():
    with pytest.raises(ValueError, match="name"):
        M.build_model("alexnet")
    with pytest.raises(TypeError, match="build_model\\('fc5'\\)"):
        M.build_model("fc5", width=3)
    with pytest.raises(ValueError, match="sizes"):
        M.MLP((10,))
    with pytest.raises(ValueError, match=r"sizes\[1\]"):
        M.MLP((10, 0, 3))
    with pytest.raises(TypeError, match="sizes"):
        M.MLP("64-10")
    with pytest.raises(ValueError, match="activation"):
        M.MLP((2, 2), activation="swish")
    with pytest.raises(TypeError, match="bias"):
        M.MLP((2, 2), bias=1)
    with pytest.raises(ValueError, match="image_size"):
        M.lenet(image_size=3)
    with pytest.raises(ValueError, match="shortcut"):
        M.resnet20(shortcut="C")
    with pytest.raises(TypeError, match="num_classes"):
        M.resnet18(num_classes=10.0)
    with pytest.raises(TypeError, match="batchnorm"):
        M.vgg_small(batchnorm="yes")
    assert set(M.MODEL_NAMES) >= {"mlp", "fc5", "fc12", "digits_mlp", "lenet", "vgg_small",
                                  "resnet20", "resnet18"}
