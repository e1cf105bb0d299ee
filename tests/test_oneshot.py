"""The one-shot estimator and the applicability test (issue 15) against exact answers.

An exactly quadratic "network" (a linear model with a squared loss): ``L(w* + δ) − L(w*) =
gᵀδ + ½δᵀHδ`` with no remainder, so the loss along the magnitude path, and its first crossing of
``τ``, are known exactly by brute force over every pruned count.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import phasetrans as pt
from phasetrans.theory.applicability import (
    assess_applicability,
    implied_l1,
    pruning_directions,
    quadratic_path_losses,
    spike_mass,
)


def _quadratic_case(D=60, N=400, seed=0, spike=True):
    """f(x) = wᵀx, L(w) = (1/2N)‖Xw − y‖²: H = XᵀX/N, g = Xᵀ(Xw* − y)/N."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)) * (1 + rng.random(D))
    w = rng.standard_normal(D) * (np.where(rng.random(D) < 0.7, 1e-3, 1.0) if spike else 1.0)
    y = X @ w + 0.3 * rng.standard_normal(N)
    model = nn.Linear(D, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w)[None])
    data = (torch.tensor(X), torch.tensor(y)[:, None])

    def loss_fn(out, t):
        return 0.5 * ((out - t) ** 2).sum(-1).mean()
    return model, loss_fn, data, X, y, w


def _exact_path(X, y, w):
    """ΔL after pruning the k smallest |w| (ties by index), k = 0..D, by brute force."""
    order = np.argsort(np.abs(w), kind="stable")
    L = lambda v: 0.5 * np.mean((X @ v - y) ** 2)  # noqa: E731
    out, v = [0.0], w.copy()
    for i in order:
        v[i] = 0.0
        out.append(L(v) - L(w))
    return np.array(out)


def _first_crossing(dl, tau):
    bad = np.nonzero(dl > tau)[0]
    return int(bad[0] - 1) if bad.size else len(dl) - 1


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("spike", [True, False])
def test_quadratic_path_losses_exact(seed, spike):
    model, loss_fn, data, X, y, w = _quadratic_case(seed=seed, spike=spike)
    H = pt.HessianOperator(model, loss_fn, data)
    _, g, _, _ = H.loss_and_gradient()
    ks = np.arange(0, 61, 7)
    first, second = quadratic_path_losses(g, H, H.parameters_vector(), ks / 60)
    np.testing.assert_allclose(first + second, _exact_path(X, y, w)[ks], rtol=1e-8, atol=1e-12)
    # the same with a dense matrix in place of the operator
    Hd = torch.tensor(X.T @ X / len(y))
    f2, s2 = quadratic_path_losses(g, Hd, torch.tensor(w), ks / 60)
    np.testing.assert_allclose(f2 + s2, first + second, rtol=1e-10, atol=1e-14)


def test_pruning_directions_match_magnitude_masks():
    w = torch.tensor([0.3, -0.1, 0.1, 2.0, -0.05])  # a tie at |0.1|: the lower index goes first
    V = pruning_directions(w, [0.0, 0.4, 0.6, 1.0])
    assert torch.equal(V[:, 0], torch.zeros(5))
    assert torch.equal(V[:, 1], torch.tensor([0.0, 0.1, 0.0, 0.0, 0.05]))
    assert torch.equal(V[:, 2], torch.tensor([0.0, 0.1, -0.1, 0.0, 0.05]))
    assert torch.equal(V[:, 3], -w)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["quadratic", "forward"])
def test_predict_oneshot_brackets_exact_threshold(seed, method):
    model, loss_fn, data, X, y, w = _quadratic_case(seed=seed)
    fp = pt.model_fingerprint(model)
    dl = _exact_path(X, y, w)
    D = len(w)
    tau = 0.3 * float(dl.max())
    k_true = _first_crossing(dl, tau)
    assert 0 < k_true < D
    p = pt.predict_oneshot(model, loss_fn, [data], eps=tau, tolerance=1.0, method=method, resolution=1.0 / D)
    assert p.method == f"oneshot-{method}" and p.eps == tau and p.details["tau"] == tau
    if method == "quadratic":  # the model is exact: the first crossing lies in the final cell
        assert pt.pruned_count(p.lower, D) <= k_true < pt.pruned_count(p.upper, D)
        assert p.upper - p.lower <= 1.0 / D
        assert p.details["gradient_passes"] == 1 and p.details["hessian_columns"] > 0
        assert p.applies is True  # model and forward pass agree (exactly quadratic)
        assert abs(p.details["loss_change_at_estimate"] - dl[pt.pruned_count(p.sparsity, D)]) < 1e-10
    else:
        if np.all(np.diff(dl) >= 0):  # monotone path: the bisection finds exactly k_true
            assert pt.pruned_count(p.sparsity, D) == k_true
        assert dl[pt.pruned_count(p.sparsity, D)] <= tau
        assert p.details["hessian_columns"] == 0 and p.details["forward_passes"] > 0
    assert p.window == pytest.approx(0.5 * (p.upper - p.lower))
    assert p.num_pruned == pt.pruned_count(p.sparsity, D)
    assert p.to_dict()["method"] == p.method and p.to_dict()["applies"] == p.applies
    assert pt.fingerprints_equal(fp, pt.model_fingerprint(model))


def test_predict_oneshot_eps_default_and_exact_radius():
    model, loss_fn, data, X, y, w = _quadratic_case(seed=3)
    batches = [(data[0][i:i + 50], data[1][i:i + 50]) for i in range(0, 400, 50)]
    eps = pt.estimate_eps(model, loss_fn, batches)
    p = pt.predict_oneshot(model, loss_fn, batches)
    assert p.eps == pytest.approx(eps) and p.eps_source == "batch_loss_std"
    k = pt.pruned_count(p.sparsity, len(w))
    assert p.radius == pytest.approx(np.sqrt(np.sort(w**2)[:k].sum()), rel=1e-12)
    assert p.details["forward_passes"] >= 2


def test_assess_applicability_and_signals():
    yes = assess_applicability(0.01, 0.004, 0.01, 0.9, 0.95, 3e-3)
    assert yes.applies and yes.ratio == pytest.approx(1.4) and yes.warnings == ()
    no = assess_applicability(0.02, 0.01, 0.01, 0.7, 0.01, 1e-6)
    assert not no.applies and no.ratio == pytest.approx(3.0)
    assert len(no.warnings) == 4 and "predict_oneshot" in no.warnings[-1]
    assert "2.5 ε" in no.warnings[1] and "near zero" in no.warnings[2]
    # each half of the rule alone refuses: the ratio at the cut, the spike at the margin
    at_cut = assess_applicability(0.02, 0.005, 0.01, 0.9, 0.95, 3e-3)
    assert at_cut.applies and at_cut.ratio == pytest.approx(2.5)
    over = assess_applicability(0.02, 0.0051, 0.01, 0.9, 0.95, 3e-3)
    assert not over.applies and len(over.warnings) == 3 and "S(ε)" in over.warnings[1]
    edge = assess_applicability(0.01, 0.004, 0.01, 0.9, 0.87, 3e-3)
    assert edge.applies  # spike = s* − 0.03
    past = assess_applicability(0.01, 0.004, 0.01, 0.9, 0.869, 3e-3)
    assert not past.applies and "near zero" in past.warnings[1]
    assert past.to_dict()["spike_margin"] == 0.03 and past.to_dict()["max_ratio"] == 2.5
    with pytest.raises(ValueError, match="spike_margin"):
        assess_applicability(0.01, 0.004, 0.01, 0.9, 0.87, 3e-3, spike_margin=-0.1)
    assert spike_mass(torch.tensor([0.0, 0.0, 1.0, -1.0])) == 0.5
    # |w| ≤ 0.1 RMS: RMS of [0.05, 0.2, 1, 1, 1] is 0.7757..., so 0.05 counts and 0.2 does not
    assert spike_mass(torch.tensor([0.05, 0.2, 1.0, 1.0, -1.0])) == pytest.approx(0.2)
    assert spike_mass(torch.tensor([0.05, 0.2, 1.0, 1.0, -1.0]), rel=0.3) == pytest.approx(0.4)
    g = torch.tensor([-2e-3, 2e-3, 0.5, -2e-3])
    assert implied_l1(g, torch.tensor([1.0, -1.0, 1e-9, 2.0]), 0.25) == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="eps"):
        assess_applicability(0.1, 0.1, 0.0, 0.5, 0.5, 0.0)


# ------------------------------------------------------------------ applies on constructed networks
def _classifier(spiky: bool, seed=0):
    """Sparse-teacher data; a student trained with a strong l1 (spike at 0) or without."""
    g = torch.Generator().manual_seed(seed)
    N, d = 1200, 30
    X = torch.randn(N, d, generator=g)
    Wt = torch.zeros(d, 3)
    Wt[:4] = torch.randn(4, 3, generator=g) * 3
    y = (X @ Wt).argmax(1)
    torch.manual_seed(seed)
    model = pt.models.MLP((d, 32, 3))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    pt.train_l1(model, nn.CrossEntropyLoss(), loader, l1=6e-3 if spiky else 0.0, epochs=40, lr=0.05,
                seed=seed, progress=False)
    return model, loader, (X, y)


@pytest.mark.parametrize("spiky", [True, False])
def test_applies_on_constructed_networks(spiky):
    model, loader, full = _classifier(spiky)
    loss = nn.CrossEntropyLoss()
    fp = pt.model_fingerprint(model)
    eps = pt.estimate_eps(model, loss, loader)
    p = pt.predict_sparsity(model, loss, full, eps=eps, num_steps=30, num_probes=4, trace_method=None,
                            bootstrap=0)
    a = p.details["applicability"]
    assert p.applies is spiky and a["applies"] is spiky
    assert (len(p.warnings) == 0) is spiky  # a reason is given exactly when it does not apply
    assert a["gradient_passes"] == 1 and a["hessian_columns"] == 1
    if spiky:
        assert a["spike_mass"] > 0.5 and a["implied_l1"] > 1e-3
    else:
        assert a["spike_mass"] < 0.3 and a["implied_l1"] < 1e-3  # |w| ≤ 0.1 RMS: the bulk's own tail
        assert any("predict_oneshot" in w for w in p.warnings)
    assert p.to_dict()["applies"] is spiky and p.to_dict()["warnings"] == list(p.warnings)
    assert pt.fingerprints_equal(fp, pt.model_fingerprint(model))
    one = pt.predict_oneshot(model, loss, full, eps=eps)
    assert pt.fingerprints_equal(fp, pt.model_fingerprint(model))
    assert 0.0 <= one.sparsity <= one.upper <= 1.0


def test_critical_sparsity_alone_does_not_assess():
    p = pt.critical_sparsity(torch.linspace(0.01, 1, 50), np.ones(50), 0.1, bootstrap=0)
    assert p.applies is None and p.warnings == ()
