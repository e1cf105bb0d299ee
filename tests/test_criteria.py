"""Pruning criteria (issue 19) against exact references: FTS vs per-sample autograd loops, the
M-FAC inverse vs the dense damped inverse, OBS saliencies and updates vs the dense formulas, the
layer-adaptive DP vs brute force, score masks' counts and ties, bad inputs, model unchanged."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint
from phasetrans.prune.criteria import (
    CRITERIA,
    MFACInverse,
    allocate,
    layer_distortions,
    obs_update,
    prepare_criterion,
    score_masks,
)

D64 = torch.float64


def mlp(sizes=(5, 4, 3), seed=0, dtype=D64) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers).to(dtype)


def batches(sizes=(3, 2), features=5, classes=3, seed=1, dtype=D64):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, features, generator=g, dtype=dtype), torch.randint(classes, (n,), generator=g))
        for n in sizes
    ]


def weights(model):
    return [(n, p) for n, p in model.named_parameters() if n.endswith("weight")]


def flat(model):
    return torch.cat([p.detach().reshape(-1) for _, p in weights(model)])


def sample_grads(model, data):
    """Per-sample gradients of the weights, one autograd call per sample (the reference)."""
    rows = []
    for x, y in data:
        for i in range(x.shape[0]):
            loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
            g = torch.autograd.grad(loss, [p for _, p in weights(model)])
            rows.append(torch.cat([t.reshape(-1) for t in g]))
    return torch.stack(rows)


def batch_grads(model, data):
    rows = []
    for x, y in data:
        g = torch.autograd.grad(F.cross_entropy(model(x), y), [p for _, p in weights(model)])
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    return torch.stack(rows)


# ---------------------------------------------------------------- score masks


def test_score_masks_count_ties_and_determinism():
    scores = {"a": torch.tensor([1.0, 0.5, 0.5, 2.0]), "b": torch.tensor([[0.5, 3.0], [0.1, 0.5]])}
    for s in (0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 1.0):
        masks = score_masks(scores, s)
        pruned = sum(int((~m).sum()) for m in masks.values())
        assert pruned == -(-round(s * 80) // 10)  # ⌈8s⌉ for these s
    masks = score_masks(scores, 3 / 8)  # 0.1 then ties at 0.5: lower flat index first (a[1], a[2])
    assert masks["a"].tolist() == [True, False, False, True]
    assert masks["b"].tolist() == [[True, True], [False, True]]
    masks = score_masks(scores, 4 / 8)  # next tie at 0.5 is b[0,0] before b[1,1]
    assert masks["b"].tolist() == [[False, True], [False, True]]
    again = score_masks({k: v.clone() for k, v in scores.items()}, 4 / 8)
    assert all(torch.equal(masks[k], again[k]) for k in masks)
    # floors: "a" (all below "b") stops at its cap 10 − ⌈0.3·10⌉ = 7; "b" gives its 3 smallest
    floored = score_masks({"a": torch.arange(10.0) / 100, "b": 1 + torch.arange(10.0).flip(0)},
                          0.5, min_per_layer=0.3)
    assert floored["a"].tolist() == [False] * 7 + [True] * 3
    assert floored["b"].tolist() == [True] * 7 + [False] * 3


@pytest.mark.parametrize("min_per_layer", [0.0, 0.3, 0.75])
def test_magnitude_criterion_equals_magnitude_masks(min_per_layer):
    model = mlp((6, 5, 4, 3), seed=3, dtype=torch.float32)
    with torch.no_grad():  # ties across and within layers
        model[0].weight[0, :3] = 0.25
        model[2].weight[1, :2] = -0.25
        model[4].weight[2, 0] = 0.25
    crit = prepare_criterion("magnitude", model)
    for s in (0.0, 0.2, 0.5, 0.7, 0.8):
        total = sum(p.numel() for _, p in weights(model))
        floor = sum(-(-round(min_per_layer * 100) * p.numel() // 100) for _, p in weights(model))
        if -(-round(s * 10) * total // 10) > total - floor:
            with pytest.raises(ValueError, match="min_per_layer"):
                crit.masks(s, min_per_layer)
            with pytest.raises(ValueError, match="min_per_layer"):
                pt.magnitude_masks(model, s, min_per_layer=min_per_layer)
            continue
        got = crit.masks(s, min_per_layer)
        ref = pt.magnitude_masks(model, s, min_per_layer=min_per_layer)
        assert list(got) == list(ref)
        assert all(torch.equal(got[n], ref[n]) for n in ref)
        assert crit.weights(got) is None


def test_score_masks_bad_inputs():
    good = {"a": torch.rand(4)}
    with pytest.raises(TypeError, match="scores"):
        score_masks([torch.rand(3)], 0.5)
    with pytest.raises(ValueError, match="scores"):
        score_masks({}, 0.5)
    with pytest.raises(TypeError, match="scores"):
        score_masks({"a": torch.arange(4)}, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        score_masks({"a": torch.tensor([1.0, float("nan")])}, 0.5)
    with pytest.raises(ValueError, match="sparsity"):
        score_masks(good, 1.5)
    with pytest.raises(TypeError, match="sparsity"):
        score_masks(good, "half")
    with pytest.raises(ValueError, match="min_per_layer"):
        score_masks(good, 0.5, min_per_layer=-0.1)


# ---------------------------------------------------------------- Fisher–Taylor


def test_fisher_taylor_matches_per_sample_autograd():
    model, data = mlp(), batches(sizes=(3, 2, 4))
    grads = sample_grads(model, data)
    w = flat(model)
    ref = (w * grads.mean(0) + 0.5 * grads.square().mean(0) * w.square()).abs()
    crit = prepare_criterion("fisher_taylor", model, data=data, loss_fn=F.cross_entropy)
    got = torch.cat([crit.scores[n].reshape(-1) for n, _ in weights(model)])
    assert list(crit.scores) == [n for n, _ in weights(model)]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-15)
    # chunked vmap and a single (inputs, targets) tuple give the same scores
    x = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    one = prepare_criterion("fisher_taylor", model, data=(x, y), loss_fn=F.cross_entropy, chunk=2)
    torch.testing.assert_close(torch.cat([one.scores[n].reshape(-1) for n in one.scores]), ref,
                               rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- M-FAC and OBS


def test_mfac_inverse_matches_dense_damped_inverse():
    g = torch.Generator().manual_seed(0)
    m, d, lam = 7, 30, 0.3
    grads = torch.randn(m, d, generator=g, dtype=D64)
    dense = lam * torch.eye(d, dtype=D64) + grads.T @ grads / m
    inv = torch.linalg.inv(dense)
    mfac = MFACInverse.from_gradients(grads, lam)
    x = torch.randn(d, 3, generator=g, dtype=D64)
    assert (mfac.matvec(x[:, 0]) - inv @ x[:, 0]).abs().max() <= 1e-8
    assert (mfac.matvec(x) - inv @ x).abs().max() <= 1e-8
    assert (mfac.diagonal() - inv.diagonal()).abs().max() <= 1e-8
    q = torch.tensor([3, 17, 29])
    assert (mfac.submatrix(q) - inv[q][:, q]).abs().max() <= 1e-8
    with pytest.raises(ValueError, match="damp"):
        MFACInverse.from_gradients(grads, 0.0)
    with pytest.raises(ValueError, match="gradients"):
        MFACInverse.from_gradients(grads[0], lam)
    with pytest.raises(TypeError, match="gradients"):
        MFACInverse.from_gradients(grads.numpy(), lam)
    with pytest.raises(ValueError, match="x must"):
        mfac.matvec(torch.ones(d + 1, dtype=D64))


@pytest.mark.parametrize("gradients", ["batch", "sample"])
def test_obs_saliencies_and_updates_match_dense(gradients):
    model, data, lam = mlp(), batches(sizes=(3, 2, 4, 3)), 1e-2
    rows = batch_grads(model, data) if gradients == "batch" else sample_grads(model, data)
    dim = rows.shape[1]
    finv = torch.linalg.inv(lam * torch.eye(dim, dtype=D64) + rows.T @ rows / rows.shape[0])
    fisher = lam * torch.eye(dim, dtype=D64) + rows.T @ rows / rows.shape[0]
    w = flat(model)
    crit = prepare_criterion("obs", model, data=data, loss_fn=F.cross_entropy, damp=lam,
                             gradients=gradients)
    rho = torch.cat([crit.scores[n].reshape(-1) for n in crit.scores])
    torch.testing.assert_close(rho, w.square() / (2 * finv.diagonal()), rtol=1e-9, atol=0)
    masks = crit.masks(0.3)
    pruned = ~torch.cat([masks[n].reshape(-1) for n in masks])
    assert int(pruned.sum()) == -(-3 * dim // 10)  # ⌈0.3·D⌉
    q = pruned.nonzero().reshape(-1)
    # independent (WoodFisher / M-FAC): δ = −F⁻¹ Σ_q (w_q/[F⁻¹]_qq) e_q, then w_Q := 0
    e = torch.zeros(dim, dtype=D64)
    e[q] = w[q] / finv.diagonal()[q]
    ref = w - finv @ e
    ref[q] = 0
    new = crit.weights(masks)
    got = torch.cat([new[n].reshape(-1) for n in new])
    assert (got - ref).abs().max() <= 1e-8 and bool((got[q] == 0).all())
    # joint (exact OBS for the set): δ = −F⁻¹ E_Q [F⁻¹]_QQ⁻¹ w_Q; then (Fδ)_K = 0, δ_Q = −w_Q
    joint = obs_update(crit.inverse, w, pruned, "joint")
    delta = -finv[:, q] @ torch.linalg.solve(finv[q][:, q], w[q])
    keep = ~pruned
    assert (joint[keep] - (w + delta)[keep]).abs().max() <= 1e-8 and bool((joint[q] == 0).all())
    assert (fisher @ (joint - w))[keep].abs().max() <= 1e-8
    assert dataclasses.replace(crit, update="none").weights(masks) is None


def test_obs_bad_inputs():
    model, data = mlp(), batches()
    with pytest.raises(ValueError, match="data"):
        prepare_criterion("obs", model, loss_fn=F.cross_entropy)
    with pytest.raises(ValueError, match="loss_fn"):
        prepare_criterion("obs", model, data=data)
    with pytest.raises(TypeError, match="loss_fn"):
        prepare_criterion("fisher_taylor", model, data=data, loss_fn=3)
    with pytest.raises(ValueError, match="update"):
        prepare_criterion("obs", model, data=data, loss_fn=F.cross_entropy, update="both")
    with pytest.raises(ValueError, match="gradients"):
        prepare_criterion("obs", model, data=data, loss_fn=F.cross_entropy, gradients="all")
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        prepare_criterion("obs", model, data=data,
                          loss_fn=lambda o, t: F.cross_entropy(o, t, reduction="none"))
    crit = prepare_criterion("obs", model, data=data, loss_fn=F.cross_entropy, max_joint=2)
    masks = crit.masks(0.5)
    with pytest.raises(ValueError, match="max_joint"):
        obs_update(crit.inverse, flat(model), ~torch.cat([m.reshape(-1) for m in masks.values()]),
                   "joint", max_joint=2)
    with pytest.raises(ValueError, match="masks"):
        crit.weights({"0.weight": masks["0.weight"]})


# ---------------------------------------------------------------- layer-adaptive


def brute_force(distortion, counts, k, caps):
    best = None
    for choice in itertools.product(range(distortion.shape[1]), repeat=distortion.shape[0]):
        c = [int(counts[i, j]) for i, j in enumerate(choice)]
        if sum(c) < k or any(ci > cap for ci, cap in zip(c, caps)):
            continue
        value = 0.0
        for i, j in enumerate(choice):
            value += float(distortion[i, j])
        if best is None or value < best[0]:
            best = (value, choice)
    return best


def test_allocate_matches_brute_force_on_random_tables():
    g = torch.Generator().manual_seed(5)
    for trial in range(30):
        levels = 2 + trial % 4
        sizes = torch.randint(1, 12, (3,), generator=g).tolist()
        counts = torch.tensor([[-(-j * n // levels) for j in range(levels + 1)] for n in sizes])
        table = torch.rand(3, levels + 1, generator=g, dtype=D64).cumsum(1)
        table[:, 0] = 0
        caps = [n - int(torch.randint(0, n + 1, (1,), generator=g)) * (trial % 2) for n in sizes]
        for k in range(sum(sizes) + 1):
            ref = brute_force(table, counts, k, caps)
            got = allocate(table, counts, k, caps)
            if ref is None:
                assert got is None
            else:
                assert got == ref[1]
                assert sum(float(table[i, j]) for i, j in enumerate(got)) == ref[0]


def test_layer_adaptive_table_allocation_and_masks():
    model = mlp((4, 3, 3, 2), seed=2)
    data = batches(sizes=(4, 3), features=4, classes=2)
    levels = 3
    crit = prepare_criterion("layer_adaptive", model, data=data, levels=levels)
    assert crit.distortion.shape == (3, levels + 1)
    # one table entry by hand: layer 1 (second Linear) pruned at level 2/3 by magnitude
    x = torch.cat([b[0] for b in data])
    with torch.no_grad():
        ref_out = model(x)
        w = model[2].weight
        k1 = -(-2 * w.numel() // 3)
        order = torch.sort(w.abs().reshape(-1), stable=True).indices[:k1]
        pruned = w.clone().reshape(-1)
        pruned[order] = 0
        copy = mlp((4, 3, 3, 2), seed=2)
        copy[2].weight.copy_(pruned.reshape(w.shape))
        by_hand = (copy(x) - ref_out).square().sum() / x.shape[0]
    torch.testing.assert_close(crit.distortion[1, 2], by_hand, rtol=1e-12, atol=1e-15)
    total = sum(p.numel() for _, p in weights(model))
    for s in (0.1, 0.3, 0.5, 0.9):
        masks = crit.masks(s)
        assert sum(int((~m).sum()) for m in masks.values()) == -(-round(s * 10 * total) // 10)
        k = -(-round(s * 10 * total) // 10)
        ref = brute_force(crit.distortion, crit.counts, k, [p.numel() for _, p in weights(model)])
        alloc = crit.allocation(s)
        assert list(alloc.values()) == [int(crit.counts[i, j]) for i, j in enumerate(ref[1])]
        for n, m in masks.items():  # magnitude within layers: every pruned |w| <= every kept |w|
            a = dict(weights(model))[n].detach().abs()
            if (~m).any() and m.any():
                assert a[~m].max() <= a[m].min()
    with pytest.raises(ValueError, match="data"):
        layer_distortions(model, None)
    with pytest.raises(ValueError, match="levels"):
        layer_distortions(model, data, levels=0)


# ---------------------------------------------------------------- dispatch and the model


def test_prepare_criterion_callable_and_bad_inputs():
    model = mlp()

    def by_rows(m):
        return {n: p.detach().sum(1, keepdim=True).expand_as(p).clone() for n, p in weights(m)}

    crit = prepare_criterion(by_rows, model)
    assert crit.name == "by_rows" and list(crit.scores) == [n for n, _ in weights(model)]
    assert prepare_criterion(crit, model) is crit
    with pytest.raises(ValueError, match="criterion"):
        prepare_criterion("snip", model)
    with pytest.raises(TypeError, match="criterion"):
        prepare_criterion(3, model)
    with pytest.raises(TypeError, match="model"):
        prepare_criterion("magnitude", "model")
    with pytest.raises(ValueError, match="shape"):
        prepare_criterion(lambda m: {"0.weight": torch.ones(2)}, model)
    with pytest.raises(ValueError, match="does not have"):
        prepare_criterion(lambda m: {"nope": torch.ones(2)}, model)
    with pytest.raises(TypeError, match="criterion"):
        prepare_criterion(lambda m: [1, 2], model)
    with pytest.raises(ValueError, match="params"):
        prepare_criterion(by_rows, model, params=["0.weight"])
    with pytest.raises(TypeError, match="options"):
        prepare_criterion(by_rows, model, damp=1.0)
    with pytest.raises(TypeError, match="levels"):
        prepare_criterion("magnitude", model, levels=3)
    assert set(CRITERIA) == {"magnitude", "fisher_taylor", "obs", "layer_adaptive"}


def test_model_comes_back_bit_for_bit():
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Dropout(0.5),
                          nn.Linear(4, 3)).to(D64)
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    data = batches()
    before = model_fingerprint(model)
    for name in CRITERIA:
        options = {"levels": 2} if name == "layer_adaptive" else {}
        crit = prepare_criterion(name, model, data=data, loss_fn=F.cross_entropy, **options)
        masks = crit.masks(0.4)
        crit.weights(masks)
        assert fingerprints_equal(before, model_fingerprint(model)), name
