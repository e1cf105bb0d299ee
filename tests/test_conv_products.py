"""Hessian products through convolutions (``linalg/_conv_rules.py``): the columns of ``H @ V``
batched through the kept gradient graphs, against dense float64 ``torch.func.hessian``. The
autograd path (``method="backward"``): sequential stacks take the written-out product under
``"auto"`` (``tests/test_pearlmutter.py``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

import phasetrans as pt
from phasetrans.linalg import _conv_rules, _graph_cache
from phasetrans.linalg._conv_rules import ConvRules, graph_has_native_conv

DT = torch.float64
REL = 1e-10


def conv1d_model():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, stride=2, padding=1), nn.Tanh(),
        nn.Conv1d(4, 4, 2, dilation=2, groups=2, bias=False), nn.Softplus(),
        nn.AvgPool1d(2), nn.Flatten(), nn.Linear(4, 3),
    ).to(DT)


def conv2d_model():
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=False),
        nn.Tanh(),
        nn.Conv2d(4, 6, 2, padding=1, groups=2, padding_mode="reflect"), nn.Softplus(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 3, 3),
    ).to(DT)


def conv_bn_model():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh(),
        nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).to(DT)
    bn = model[1]
    bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=DT))
    bn.running_var.copy_(torch.tensor([0.5, 1.5, 2.0], dtype=DT))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.2, 0.7, -0.9], dtype=DT))
    return model


def transposed_model():
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.Tanh(), nn.ConvTranspose2d(3, 2, 2, stride=2), nn.Softplus(),
        nn.Flatten(), nn.Linear(2 * 8 * 8, 3),
    ).to(DT)


def same_padding_model():
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding="same"), nn.Tanh(), nn.Conv2d(3, 2, 3), nn.Softplus(),
        nn.Flatten(), nn.Linear(2 * 4 * 4, 3),
    ).to(DT)


def batches(shape, sizes=(5, 3)):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, *shape, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g))
            for n in sizes]


MODELS = {
    "conv1d": (conv1d_model, (2, 9)),
    "conv2d": (conv2d_model, (2, 7, 6)),
    "conv+bn": (conv_bn_model, (2, 6, 6)),
}


def dense_hessian(model, data):
    """Dense float64 Hessian of the size-weighted mean loss over every parameter (eval mode)."""
    model.eval()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    N = sum(len(y) for _, y in data)

    def loss(w):
        pieces = torch.split(w, [s.numel() for s in shapes])
        params = {n: p.view(s) for n, p, s in zip(names, pieces, shapes)}
        return sum(len(y) / N * nn.functional.cross_entropy(functional_call(model, params, (x,)), y)
                   for x, y in data)

    return hessian(loss)(flat)


def relerr(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture
def spy(monkeypatch):
    """Counts the batched backwards (``vmapped_backward``) and those that fell back."""
    calls = {"batched": 0, "fallback": 0}
    original = _graph_cache.vmapped_backward

    def counted(*args, **kwargs):
        out = original(*args, **kwargs)
        calls["batched" if out is not None else "fallback"] += 1
        return out

    monkeypatch.setattr(_graph_cache, "vmapped_backward", counted)
    return calls


@pytest.mark.parametrize("name", list(MODELS))
def test_batched_columns_through_convolutions_match_dense_hessian(name, spy):
    make, shape = MODELS[name]
    model, data = make(), batches(shape)
    dense = dense_hessian(model, data)
    H = pt.HessianOperator(model, nn.functional.cross_entropy, data, params="all", method="backward")
    g = torch.Generator().manual_seed(7)
    for K in (1, 3, 8, 3):  # the first product builds the graphs, the later ones reuse them
        V = torch.randn(H.dim, K, generator=g, dtype=DT)
        assert relerr(H @ V, dense @ V) < REL
    # the batched path was taken: every convolution taken over, one vmap per graph and product
    assert H._columns[0] == "vmap"
    assert H._cache is not None and not any(graph_has_native_conv(e[3]) for e in H._cache.entries)
    assert spy == {"batched": 3 * len(data), "fallback": 0}


def test_chunked_columns_and_the_loop_agree_with_dense(monkeypatch, spy):
    model, data = conv2d_model(), batches(MODELS["conv2d"][1])
    dense = dense_hessian(model, data)
    V = torch.randn(sum(p.numel() for p in model.parameters()), 8, dtype=DT)
    H = pt.HessianOperator(model, nn.functional.cross_entropy, data, params="all", chunk_size=3,
                           method="backward")
    assert relerr(H @ V, dense @ V) < REL and relerr(H @ V, dense @ V) < REL
    assert spy["batched"] == 2 * 3 * len(data)  # chunks of 3, 3 and 2 columns
    # graphs whose convolutions are too large for a batched copy loop over the columns
    monkeypatch.setattr(_conv_rules, "COLUMN_BYTES", 1)
    H = pt.HessianOperator(model, nn.functional.cross_entropy, data, params="all", method="backward")
    assert relerr(H @ V, dense @ V) < REL and relerr(H @ V, dense @ V) < REL
    assert H._columns == (False, None) and spy["batched"] == 2 * 3 * len(data)


@pytest.mark.parametrize("make, shape", [(transposed_model, (2, 6, 6)), (same_padding_model, (2, 6, 6))])
def test_convolutions_not_taken_over_loop_and_stay_exact(make, shape, spy):
    model, data = make(), batches(shape)
    dense = dense_hessian(model, data)
    H = pt.HessianOperator(model, nn.functional.cross_entropy, data, params="all", method="backward")
    V = torch.randn(H.dim, 3, dtype=DT)
    assert relerr(H @ V, dense @ V) < REL and relerr(H @ V, dense @ V) < REL
    assert H._columns == (False, None) and spy["batched"] == 0


def test_a_graph_that_cannot_run_batched_falls_back_to_the_loop(monkeypatch, spy):
    model, data = conv1d_model(), batches(MODELS["conv1d"][1])
    dense = dense_hessian(model, data)

    def refuse(*args, **kwargs):
        raise RuntimeError("vmap: no batching rule")

    monkeypatch.setattr(torch.func, "vmap", refuse)
    H = pt.HessianOperator(model, nn.functional.cross_entropy, data, params="all", method="backward")
    V = torch.randn(H.dim, 4, dtype=DT)
    assert relerr(H @ V, dense @ V) < REL
    assert spy == {"batched": 0, "fallback": len(data)}


def test_gradient_under_conv_rules_is_the_native_one_bit_for_bit():
    model, data = conv2d_model(), batches(MODELS["conv2d"][1])
    x, y = data[0]
    params = list(model.parameters())

    def gradient(rules):
        with rules:
            loss = nn.functional.cross_entropy(model(x), y)
            return torch.autograd.grad(loss, params, create_graph=True)

    import contextlib

    native, taken = gradient(contextlib.nullcontext()), gradient(ConvRules())
    assert graph_has_native_conv(native) and not graph_has_native_conv(taken)
    assert all(torch.equal(a, b) for a, b in zip(native, taken))


def test_the_choice_follows_the_largest_batch_of_the_pass(monkeypatch, spy):
    # conv2d_model's largest activation is 1680 bytes a sample: batches of 5 and 1 give 8400 and
    # 1680 bytes; with room for 8000, the pass loops over the columns (a small last batch does not
    # turn the batched backward on for the others)
    model, data = conv2d_model(), batches(MODELS["conv2d"][1], sizes=(5, 1))
    monkeypatch.setattr(_conv_rules, "COLUMN_BYTES", 8000)
    H = pt.HessianOperator(model, nn.functional.cross_entropy, data, params="all", method="backward")
    V = torch.randn(H.dim, 4, dtype=DT)
    assert relerr(H @ V, dense_hessian(model, data) @ V) < REL
    assert H._columns == (False, None) and spy["batched"] == 0
    monkeypatch.setattr(_conv_rules, "COLUMN_BYTES", 4 * 8400)
    H = pt.HessianOperator(model, nn.functional.cross_entropy, data, params="all", method="backward")
    H @ V
    assert H._columns == ("vmap", 4)
