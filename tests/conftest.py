"""Shared fixtures: the digits data as tensors and small trained MLPs (cached per session)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

# tiny models gain nothing from more threads, and OpenMP spin-waiting under load slows them a lot
torch.set_num_threads(1)


@functools.cache
def digits_tensors(dtype: torch.dtype = torch.float32):
    """Digits (1797 × 64, 10 classes), standardised, fixed 1297/500 split (seed 0)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    X, y = X[order] / 16.0, y[order]
    mean, std = X[:1297].mean(0), X[:1297].std(0) + 1e-6
    X = (X - mean) / std
    Xt = torch.tensor(X, dtype=dtype)
    yt = torch.tensor(y, dtype=torch.long)
    return Xt[:1297], yt[:1297], Xt[1297:], yt[1297:]


def make_mlp(sizes=(64, 24, 16, 10), seed=0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers).to(dtype)


@functools.cache
def _trained_state(sizes, seed, steps, l1, dtype):
    Xtr, ytr, _, _ = digits_tensors(dtype)
    model = make_mlp(sizes, seed, dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    for _ in range(steps):
        idx = torch.randint(0, len(ytr), (128,), generator=gen)
        loss = loss_fn(model(Xtr[idx]), ytr[idx])
        if l1:
            loss = loss + l1 * sum(w.abs().sum() for w in weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained_mlp(sizes=(64, 24, 16, 10), seed=0, steps=300, l1=0.0, dtype=torch.float64) -> nn.Module:
    """A small MLP trained on digits with Adam (deterministic; cached)."""
    model = make_mlp(sizes, seed, dtype)
    model.load_state_dict(_trained_state(tuple(sizes), seed, steps, l1, dtype))
    return model


@pytest.fixture
def digits():
    """(Xtrain, ytrain, Xtest, ytest) float32 tensors."""
    return digits_tensors(torch.float32)


@pytest.fixture
def digits64():
    """(Xtrain, ytrain, Xtest, ytest) float64 tensors."""
    return digits_tensors(torch.float64)


@pytest.fixture
def small_trained_mlp():
    """A float64 64-24-16-10 tanh MLP (2080 weights) trained on digits."""
    return trained_mlp()
