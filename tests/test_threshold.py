"""Empirical thresholds against brute-force grids; re-fit; resumable sweeps."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from conftest import digits_tensors, trained_mlp
from torch import nn

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint


def square_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(100, 100))  # D = 10000: grid j/1000 prunes exactly 10 j weights


def zeros_of(model):
    return int((model[0].weight == 0).sum())


def with_state(model):
    model.eval()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return model


def test_monotone_synthetic_exact_and_few_evaluations():
    model = with_state(square_model())
    before = model_fingerprint(model)
    res = pt.find_threshold(model, lambda m: float(zeros_of(m) <= 4237))
    assert res.sparsity == 0.423 and res.found
    assert res.baseline == 1.0
    assert res.evaluations <= 30 and res.evaluations == len(res.points)
    assert res.points == sorted(res.points) and res.points[0] == (0.0, 1.0)
    assert all(m == float(round(s * 10000) <= 4237) for s, m in res.points)
    assert fingerprints_equal(before, model_fingerprint(model))
    # everything holds -> 1.0; strict with a constant metric -> nothing holds
    assert pt.find_threshold(model, lambda m: 0.5).sparsity == 1.0
    none = pt.find_threshold(model, lambda m: 0.5, strict=True)
    assert (none.sparsity, none.found) == (0.0, False)
    # tolerance and an explicit baseline
    res = pt.find_threshold(model, lambda m: 1.0 - zeros_of(m) / 10000, tolerance=0.25)
    assert res.sparsity == 0.25 and res.kept_fraction == 0.75
    res = pt.find_threshold(model, lambda m: 1.0 - zeros_of(m) / 10000, baseline=0.9, strict=True)
    assert res.sparsity == 0.099 and res.baseline == 0.9
    assert res.to_dict()["sparsity"] == 0.099
    assert fingerprints_equal(before, model_fingerprint(model))


def test_local_scan_moves_past_a_non_monotone_dip():
    model = square_model()

    def metric(m):
        z = zeros_of(m)
        return float(z <= 3000 or 3050 <= z <= 3060)

    assert pt.find_threshold(model, metric).sparsity == 0.306
    assert pt.find_threshold(model, metric, window=0).sparsity == 0.300
    nan = pt.find_threshold(model, lambda m: 1.0 if zeros_of(m) <= 2000 else float("nan"))
    assert nan.sparsity == 0.2
    f32 = pt.find_threshold(model, lambda m: np.float32(zeros_of(m) <= 1234))  # numpy scalars
    assert f32.sparsity == 0.123


def test_model_restored_when_evaluate_raises_midway():
    model = with_state(square_model())
    before = model_fingerprint(model)
    calls = []

    def metric(m):
        calls.append(1)
        with torch.no_grad():
            m[0].bias.add_(1.0)  # an evaluate that even changes the model
        if len(calls) == 5:
            raise RuntimeError("evaluate failed")
        return 1.0

    with pytest.raises(RuntimeError, match="evaluate failed"):
        pt.find_threshold(model, metric)
    assert fingerprints_equal(before, model_fingerprint(model))


def test_bad_arguments():
    model = square_model()
    ev = lambda m: 1.0  # noqa: E731
    cases = [
        (dict(evaluate=3), TypeError, "evaluate"),
        (dict(tolerance=-0.1), ValueError, "tolerance"),
        (dict(resolution=0.0), ValueError, "resolution"),
        (dict(resolution=0.7), ValueError, "resolution"),
        (dict(resolution=float("nan")), ValueError, "resolution"),
        (dict(strict=1), TypeError, "strict"),
        (dict(max_evaluations=5), ValueError, "max_evaluations"),
        (dict(refit=5), ValueError, "refit_loss_fn"),
        (dict(refit="x"), TypeError, "refit"),
        (dict(baseline=float("nan")), ValueError, "baseline"),
        (dict(min_per_layer=1.5), ValueError, "min_per_layer"),
    ]
    for kwargs, exc, word in cases:
        args = dict(evaluate=ev) | kwargs
        with pytest.raises(exc, match=word):
            pt.find_threshold(model, **args)
    with pytest.raises(TypeError, match="evaluate"):
        pt.find_threshold(model, lambda m: "high")
    with pytest.raises(ValueError, match="sparsities"):
        pt.sweep(model, ev, [0.1, 1.2])
    with pytest.raises(ValueError, match="sparsities"):
        pt.sweep(model, ev, [])
    with pytest.raises(TypeError, match="model"):
        pt.find_threshold(None, ev)


# --- the digits MLP: bisection against the full 1000-point grid -----------------------------


@functools.cache
def digits_grid(l1=1e-3):
    """Test accuracy at every s = j/1000, pruning by an independent sort-based reference:
    rank the weights by (|w|, flat index) with a stable sort; at j prune ranks < ⌈jD/1000⌉.
    All 1001 pruned models are evaluated at once with vmap over functional_call."""
    _, _, Xte, yte = digits_tensors(torch.float64)
    model = trained_mlp(l1=l1)
    weights = pt.prunable_parameters(model)
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    D = flat.numel()
    rank = torch.empty(D, dtype=torch.long)
    rank[torch.sort(flat, stable=True).indices] = torch.arange(D)
    counts = torch.tensor([-(-j * D // 1000) for j in range(1001)])
    keep = rank[None, :] >= counts[:, None]  # (1001, D)
    params = {n: p.detach() for n, p in model.named_parameters()}
    stacked, start = {}, 0
    for n, w in weights.items():
        stacked[n] = w.detach() * keep[:, start : start + w.numel()].reshape(-1, *w.shape)
        start += w.numel()

    def accuracy(pruned_weights):
        out = torch.func.functional_call(model, params | pruned_weights, (Xte,))
        return (out.argmax(1) == yte).double().mean()

    with torch.no_grad():
        return torch.func.vmap(accuracy)(stacked).tolist()


def grid_answer(accs, holds):
    """The largest grid sparsity j/1000 whose accuracy holds."""
    return max(j for j, a in enumerate(accs) if holds(a)) / 1000


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(strict=True), dict(tolerance=0.01)],
    ids=["geq", "strict", "tol"],
)
def test_digits_threshold_matches_dense_grid(kwargs):
    _, _, Xte, yte = digits_tensors(torch.float64)
    model = trained_mlp(l1=1e-3)
    accs = digits_grid()
    base, tol = accs[0], kwargs.get("tolerance", 0.0)
    if kwargs.get("strict"):
        want = grid_answer(accs, lambda a: a > base - tol)
    else:
        want = grid_answer(accs, lambda a: a >= base - tol)
    before = model_fingerprint(model)
    res = pt.find_threshold(model, lambda m: pt.evaluate_accuracy(m, (Xte, yte)), **kwargs)
    assert fingerprints_equal(before, model_fingerprint(model))
    assert res.evaluations <= 30
    assert res.baseline == base
    assert abs(res.sparsity - want) <= 0.005, (res.sparsity, want)
    for s, metric in res.points:  # every evaluated point agrees with the brute-force grid
        assert metric == pytest.approx(accs[round(s * 1000)], abs=1e-12)


def test_refit_raises_the_threshold():
    Xtr, ytr, Xte, yte = digits_tensors(torch.float64)
    model = with_state(trained_mlp(l1=1e-3))
    before = model_fingerprint(model)

    def acc(m):
        return pt.evaluate_accuracy(m, (Xte, yte))

    plain = pt.find_threshold(model, acc)
    refit = pt.find_threshold(model, acc, refit=20, refit_loss_fn=nn.CrossEntropyLoss(),
                              refit_data=(Xtr, ytr), refit_lr=0.05)
    assert fingerprints_equal(before, model_fingerprint(model))
    assert refit.evaluations <= 30
    assert refit.sparsity >= plain.sparsity + 0.01, (plain.sparsity, refit.sparsity)
    # a callable refit sees the pruned model and its masks
    seen = []

    def my_refit(m, masks):
        w = pt.prunable_parameters(m)
        seen.append(all(torch.all(w[n][~k] == 0) for n, k in masks.items()))
        with torch.no_grad():
            m[-1].bias.copy_(torch.arange(10.0) * 100)  # always class 9: nothing holds; undone

    res = pt.find_threshold(model, acc, refit=my_refit, resolution=0.01)
    assert all(seen) and len(seen) == res.evaluations - 1
    assert not res.found and res.sparsity == 0.0
    assert fingerprints_equal(before, model_fingerprint(model))


def test_loss_threshold_matches_grid():
    Xtr, ytr, _, _ = digits_tensors(torch.float64)
    model = trained_mlp(l1=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    eps = 0.05
    curve = pt.sweep(model, lambda m: pt.evaluate_loss(m, loss_fn, (Xtr, ytr)),
                     [j / 100 for j in range(101)])
    L0 = curve[0][1]
    want = max(s for s, L in curve if L <= L0 + eps)
    res = pt.find_loss_threshold(model, loss_fn, (Xtr, ytr), eps=eps, resolution=0.01)
    assert res.sparsity == want
    assert res.baseline == -L0 and res.extra["loss_dense"] == L0
    for s, m in res.points:
        assert -m == pytest.approx(curve[round(s * 100)][1], rel=1e-12)
    with pytest.raises(ValueError, match="eps"):
        pt.find_loss_threshold(model, loss_fn, (Xtr, ytr), eps=-1.0)


# --- sweeps -----------------------------------------------------------------------------------


def test_sweep_values_and_resume(tmp_path):
    model = with_state(square_model())
    before = model_fingerprint(model)
    grid = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
    calls = []

    def metric(m):
        calls.append(zeros_of(m))
        if len(calls) == 4 and fail[0]:
            raise RuntimeError("interrupted")
        return zeros_of(m) / 10000 + 0.5

    fail = [False]
    fresh = pt.sweep(model, metric, grid)
    assert fresh == [(s, s + 0.5) for s in grid]
    path = tmp_path / "curve.jsonl"
    calls.clear()
    fail[0] = True
    with pytest.raises(RuntimeError, match="interrupted"):
        pt.sweep(model, metric, grid, path=path)
    assert fingerprints_equal(before, model_fingerprint(model))
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["header"]["sparsities"] == grid
    with open(path, "a") as f:
        f.write('{"index": 3, "spars')  # a torn last line
    calls.clear()
    fail[0] = False
    assert pt.sweep(model, metric, grid, path=path) == fresh
    assert calls == [5000, 7500, 9000, 10000]  # only the missing points were computed
    calls.clear()
    assert pt.sweep(model, metric, grid, path=path) == fresh and calls == []
    assert len(path.read_text().splitlines()) == 1 + len(grid)
    with pytest.raises(ValueError, match="different sweep"):
        pt.sweep(model, metric, grid[:-1], path=path)
    with pytest.raises(ValueError, match="different sweep"):
        pt.sweep(model, metric, grid, path=path, metadata={"model": "other"})
    other = tmp_path / "other.jsonl"
    other.write_text("hello\n")
    with pytest.raises(ValueError, match="sweep file"):
        pt.sweep(model, metric, grid, path=other)
    assert fingerprints_equal(before, model_fingerprint(model))


# --- refit strategies, frozen results, the log format ----------------------------------------


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(40, 100, generator=g), torch.randn(40, 100, generator=g)


def test_refit_steps_is_what_refit_int_means():
    from phasetrans.prune import refit_steps

    model = with_state(square_model())
    before = model_fingerprint(model)
    data, loss_fn = _regression(), nn.MSELoss()

    def metric(m):
        return -pt.evaluate_loss(m, loss_fn, data)

    by_int = pt.find_threshold(model, metric, tolerance=0.01, resolution=0.05, refit=3,
                               refit_loss_fn=loss_fn, refit_data=data, refit_lr=0.05)
    by_fn = pt.find_threshold(model, metric, tolerance=0.01, resolution=0.05,
                              refit=refit_steps(3, loss_fn, data, lr=0.05))
    plain = pt.find_threshold(model, metric, tolerance=0.01, resolution=0.05)
    assert by_int == by_fn and by_int.points != plain.points  # bit-for-bit the same strategy
    assert fingerprints_equal(before, model_fingerprint(model))
    with pytest.raises(ValueError, match="steps"):
        refit_steps(-1, loss_fn, data)
    with pytest.raises(TypeError, match="loss_fn"):
        refit_steps(3, "mse", data)
    with pytest.raises(ValueError, match="lr"):
        refit_steps(3, loss_fn, data, lr=0.0)
    with pytest.raises(TypeError, match="refit_data"):  # checked up front, under its own name
        pt.find_threshold(model, metric, refit=3, refit_loss_fn=loss_fn, refit_data="x")


def test_results_are_frozen_values():
    import dataclasses

    model = square_model()
    data, loss_fn = _regression(), nn.MSELoss()
    res = pt.find_loss_threshold(model, loss_fn, data, eps=0.01, resolution=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.sparsity = 0.5
    again = pt.find_loss_threshold(model, loss_fn, data, eps=0.01, resolution=0.1)
    assert again == res and again.extra == {"loss_dense": -res.baseline}
    assert res.evaluations == len(res.points) + 1  # the dense loss, evaluated once more
    refit = pt.find_loss_threshold(model, loss_fn, data, eps=0.01, resolution=0.1, refit=1)
    assert refit.extra == {}


def test_sweep_log_format_is_unchanged(tmp_path):
    from phasetrans.prune import refit_steps

    model = square_model()
    data, loss_fn = _regression(), nn.MSELoss()
    path = tmp_path / "log.jsonl"
    curve = pt.sweep(model, lambda m: zeros_of(m), [0.0, 0.5], path=path, refit=0,
                     refit_loss_fn=loss_fn, refit_data=data, metadata={"a": [1, 2]})
    assert curve == [(0.0, 0.0), (0.5, 5000.0)]
    assert path.read_text() == (
        '{"kind": "phasetrans.sweep/1", "header": {"sparsities": [0.0, 0.5], "min_per_layer": '
        '0.0, "params": null, "refit": 0, "refit_lr": 0.01, "metadata": {"a": [1, 2]}}}\n'
        '{"index": 0, "sparsity": 0.0, "metric": 0.0}\n'
        '{"index": 1, "sparsity": 0.5, "metric": 5000.0}\n'
    )
    other = tmp_path / "fn.jsonl"
    pt.sweep(model, lambda m: zeros_of(m), [0.5], path=other, params="all",
             refit=refit_steps(0, loss_fn, data))
    assert other.read_text().splitlines()[0] == (
        '{"kind": "phasetrans.sweep/1", "header": {"sparsities": [0.5], "min_per_layer": 0.0, '
        '"params": "all", "refit": "callable", "refit_lr": null, "metadata": null}}'
    )
    with pytest.raises(TypeError, match="progress"):
        pt.sweep(model, lambda m: 0.0, [0.5], progress=1)
