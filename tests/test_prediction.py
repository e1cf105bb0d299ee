"""Tests of phasetrans.prediction: the exact solve of s = Φ(R(s)) against brute force, the
monotone facts, negative-eigenvalue policies, zero mass, the result object, and the pipeline on a
small trained MLP (exact eigenvalues vs SLQ)."""

from __future__ import annotations

import dataclasses
import json
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from conftest import digits_tensors, make_mlp, trained_mlp
from torch import nn

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint
from phasetrans.linalg.hessian import HessianOperator
from phasetrans.linalg.operator import DenseOperator
from phasetrans.params import prunable_parameters
from phasetrans.predict import batch_loss_std, estimate_zero_mass, predict_sparsity
from phasetrans.prune.masks import pruned
from phasetrans.theory.critical import Prediction, critical_sparsity, reference_critical_sparsity
from phasetrans.theory.magnitude import MagnitudeCurve
from phasetrans.theory.reference import reference_density
from phasetrans.theory.spectrum import Spectrum
from phasetrans.theory.width import width_fraction


# ------------------------------------------------------------------------------------------
# brute force references (independent of the module: numpy float64, explicit formulas)
# ------------------------------------------------------------------------------------------
def brute_phi(nodes, masses, eps, R, negative="abs", p0=0.0):
    nodes = np.asarray(nodes, dtype=np.float64).reshape(-1)
    masses = np.asarray(masses, dtype=np.float64).reshape(-1)
    R = np.atleast_1d(np.asarray(R, dtype=np.float64))
    term = 1.0 / (1.0 + np.abs(nodes)[None, :] * R[:, None] ** 2 / (2 * eps))
    if negative == "abs":
        q = term @ masses
    elif negative == "flat":
        term = np.where(nodes[None, :] > 0, term, 1.0)
        q = term @ masses
    else:
        pos = nodes > 0
        q = term[:, pos] @ masses[pos] / masses[pos].sum()
    return p0 + (1 - p0) * q


def brute_root(w, nodes, masses, eps, negative="abs", p0=0.0, n_grid=10**6):
    """First point of the grid s = i/n_grid where s − Φ(R(s)) ≥ 0 (and the one before)."""
    w2 = np.sort(np.asarray(w, dtype=np.float64).reshape(-1) ** 2)
    D = w2.size
    R_k = np.sqrt(np.concatenate([[0.0], np.cumsum(w2)]))
    phi_k = brute_phi(nodes, masses, eps, R_k, negative, p0)  # Φ at every distinct R
    s = np.arange(n_grid + 1) / n_grid
    k = np.minimum(D, np.maximum(0, np.ceil(s * D - 1e-9))).astype(np.int64)
    f = s - phi_k[k]
    i = int(np.argmax(f >= 0))
    assert f[i] >= 0 and i > 0 and f[i - 1] < 0
    return s[i - 1], s[i]


def synthetic(seed, D=600, negatives=0.0, heavy=False):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=D) * (rng.random(D) < 0.5) * 0.3 + rng.normal(size=D) * 0.02
    lam = rng.gamma(0.3, 2.0, size=D) if heavy else rng.exponential(1.0, size=D)
    if negatives:
        flip = rng.random(D) < negatives
        lam[flip] = -0.3 * lam[flip]
    return w, lam


class FakeDensity:
    """A SpectralDensity-shaped object (nodes, weights (K, m), dim)."""

    def __init__(self, nodes, weights, dim):
        self.nodes = torch.as_tensor(nodes, dtype=torch.float64)
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.dim = dim


def random_density(seed, K=6, m=25, D=600, negatives=0.2):
    rng = np.random.default_rng(seed)
    nodes = rng.exponential(1.0, size=(K, m))
    nodes[rng.random((K, m)) < negatives] *= -0.2
    weights = rng.random((K, m)) ** 3
    weights /= weights.sum(1, keepdims=True)
    return FakeDensity(nodes, weights, D)


# ------------------------------------------------------------------------------------------
# R(s)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_magnitude_curve_exact(dtype):
    rng = np.random.default_rng(1)
    w = torch.tensor(rng.normal(size=(37, 29)), dtype=dtype)
    mag = MagnitudeCurve(w)
    w2 = np.sort(w.double().numpy().reshape(-1) ** 2)
    D = w2.size
    assert mag.dim == D
    for s in [0.0, 1e-4, 0.1, 0.3, 0.5, 0.77, 0.999, 1.0]:
        k = min(D, math.ceil(s * D - 1e-9))
        assert mag.radius(s) == pytest.approx(math.sqrt(w2[:k].sum()), rel=1e-12, abs=1e-300)
    assert mag.norm == pytest.approx(float(np.sqrt(w2.sum())), rel=1e-12)
    # the count rule of pruning: 0.3 · 10 → 3 pruned, not 4
    small = MagnitudeCurve(torch.arange(1.0, 11.0))
    assert small.radius(0.3) == pytest.approx(math.sqrt(1 + 4 + 9))
    # the inverse read-out
    radii = mag.radius(np.array([0.2, 0.6]))
    np.testing.assert_allclose(mag.sparsity_at_radius(radii), [0.2, 0.6], atol=1.0 / D)


def test_magnitude_curve_matches_pruning():
    model = trained_mlp()
    mag = MagnitudeCurve(model)
    flat = torch.cat([p.detach().reshape(-1) for p in prunable_parameters(model).values()])
    for s in [0.1, 0.55, 0.9]:
        with pruned(model, s):
            now = torch.cat([p.detach().reshape(-1) for p in prunable_parameters(model).values()])
            dist = float(torch.linalg.vector_norm(flat - now))
        assert mag.radius(s) == pytest.approx(dist, rel=1e-10)


# ------------------------------------------------------------------------------------------
# the solver against brute force
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps", [1e-3, 0.05, 2.0])
def test_solver_vs_brute_force_eigenvalues(seed, eps):
    w, lam = synthetic(seed, heavy=seed == 2)
    pred = critical_sparsity(w, lam, eps=eps, bootstrap=0)
    lo, hi = brute_root(w, lam, np.full(lam.size, 1.0 / lam.size), eps)
    assert lo - 1e-12 <= pred.sparsity <= hi + 1e-12
    assert hi - lo <= 1e-6 + 1e-12


@pytest.mark.parametrize("negative", ["abs", "drop", "flat"])
@pytest.mark.parametrize("p0", [0.0, 0.3])
def test_solver_vs_brute_force_policies(negative, p0):
    w, lam = synthetic(3, negatives=0.3)
    pred = critical_sparsity(w, lam, eps=0.02, negative=negative, zero_mass=p0, bootstrap=0)
    lo, hi = brute_root(w, lam, np.full(lam.size, 1.0 / lam.size), 0.02, negative, p0)
    assert lo - 1e-12 <= pred.sparsity <= hi + 1e-12
    # Φ at the reported radius is the brute-force Φ
    phi = width_fraction(lam, 0.02, pred.radius, negative=negative, zero_mass=p0)
    assert phi == pytest.approx(float(brute_phi(lam, np.full(lam.size, 1 / lam.size), 0.02,
                                                pred.radius, negative, p0)[0]), rel=1e-12)


@pytest.mark.parametrize("seed", [4, 5])
@pytest.mark.parametrize("negative", ["abs", "drop", "flat"])
def test_solver_vs_brute_force_slq_density(seed, negative):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=600) * 0.1
    dens = random_density(seed)
    pred = critical_sparsity(w, dens, eps=0.01, negative=negative, bootstrap=0)
    masses = dens.weights.numpy() / dens.weights.shape[0]
    lo, hi = brute_root(w, dens.nodes.numpy(), masses, 0.01, negative)
    assert lo - 1e-12 <= pred.sparsity <= hi + 1e-12


def test_root_on_a_step_of_R():
    # two free (zero) weights, two large ones under very sharp curvature: prune exactly 2 of 4
    pred = critical_sparsity(np.array([0.0, 10.0, 0.0, 10.0]), np.full(4, 1e6), eps=1e-3,
                             bootstrap=0)
    assert pred.sparsity == 0.5
    assert pred.num_pruned == 2
    # Φ(R_3) ≈ 0 ≤ 2/4: the root is the jump; R(s*) = 0, the crossing radius the one past it
    assert pred.radius == 0.0 and pred.details["crossing_radius"] == pytest.approx(10.0)


def test_edge_cases():
    # all-zero weights: R ≡ 0, Φ ≡ 1, every weight can go
    assert critical_sparsity(np.zeros(50), np.ones(50), eps=0.1).sparsity == 1.0
    # a flat Hessian: Φ ≡ 1
    assert critical_sparsity(np.ones(50), np.zeros(50), eps=0.1).sparsity == 1.0
    # 'drop' with no positive eigenvalue: every direction flat
    assert critical_sparsity(np.ones(50), -np.ones(50), eps=0.1, negative="drop").sparsity == 1.0
    # D = 1: s* = max(0, Φ(|w|)) = Φ(|w|)
    p = critical_sparsity(np.array([2.0]), np.array([3.0]), eps=0.5)
    assert p.sparsity == pytest.approx(1.0 / (1.0 + 3.0 * 4.0 / 1.0))
    # the window is clipped to [0, 1]
    assert p.lower == 0.0 and p.upper == 1.0


# ------------------------------------------------------------------------------------------
# monotone facts, policies, zero mass
# ------------------------------------------------------------------------------------------
def test_monotone_facts():
    w, lam = synthetic(7)
    base = critical_sparsity(w, lam, eps=0.05).sparsity
    assert 0.05 < base < 0.95
    assert critical_sparsity(2.0 * w, lam, eps=0.05).sparsity < base  # larger weights
    assert critical_sparsity(w, 4.0 * lam, eps=0.05).sparsity < base  # sharper spectrum
    assert critical_sparsity(w, lam, eps=0.2).sparsity > base  # larger tolerance
    # scaling w by c is scaling eps by 1/c² (exactly the same Φ(R(s)))
    a = critical_sparsity(3.0 * w, lam, eps=0.45).sparsity
    assert a == pytest.approx(critical_sparsity(w, lam, eps=0.05).sparsity, abs=1e-12)


def test_policies_order_and_agree_without_negatives():
    w, lam = synthetic(8, negatives=0.4)
    s = {p: critical_sparsity(w, lam, eps=0.05, negative=p).sparsity for p in ("abs", "drop", "flat")}
    # flat counts λ ≤ 0 as contribution 1: Φ_flat ≥ Φ_abs and Φ_flat ≥ Φ_drop
    assert s["flat"] > s["abs"] and s["flat"] > s["drop"]
    w, lam = synthetic(8)
    s = {p: critical_sparsity(w, lam, eps=0.05, negative=p).sparsity for p in ("abs", "drop", "flat")}
    assert s["abs"] == s["drop"] == s["flat"]


def test_zero_mass():
    w, lam = synthetic(9)
    prev = None
    for p0 in [0.0, 0.2, 0.5, 0.8]:
        s = critical_sparsity(w, lam, eps=0.05, zero_mass=p0).sparsity
        assert s >= p0  # Φ ≥ p0
        if prev is not None:
            assert s > prev
        prev = s


def test_density_equals_eigenvalues_and_padding_is_ignored():
    w, lam = synthetic(10, D=400)
    exact = critical_sparsity(w, lam, eps=0.05).sparsity
    nodes = lam.reshape(4, 100)
    dens = FakeDensity(nodes, np.full((4, 100), 0.01), 400)
    assert critical_sparsity(w, dens, eps=0.05).sparsity == pytest.approx(exact, abs=1e-12)
    # padded columns: weight 0, any node value
    padded = FakeDensity(np.concatenate([nodes, np.full((4, 7), 1e6)], 1),
                         np.concatenate([np.full((4, 100), 0.01), np.zeros((4, 7))], 1), 400)
    assert critical_sparsity(w, padded, eps=0.05).sparsity == pytest.approx(exact, abs=1e-12)
    pair = critical_sparsity(w, (lam, np.ones(400)), eps=0.05).sparsity
    assert pair == pytest.approx(exact, abs=1e-12)


def test_trace_bound():
    for negative in ("abs", "drop", "flat"):
        for p0 in (0.0, 0.4):
            w, lam = synthetic(11, negatives=0.3)
            p = critical_sparsity(w, lam, eps=0.05, negative=negative, zero_mass=p0)
            assert p.trace_source == "spectrum"
            assert p.sparsity >= p.trace_bound_sparsity - 1e-12
    w, lam = synthetic(12)
    p = critical_sparsity(w, lam, eps=0.05, trace=123.0)
    D = lam.size
    assert p.trace == 123.0 and p.trace_source == "user"
    R = p.details["crossing_radius"]
    expected = 2 * 0.05 * D / (R**2 * 123.0 + 2 * 0.05 * D)
    assert p.trace_bound_sparsity == pytest.approx(expected, rel=1e-12)
    p_self = critical_sparsity(w, lam, eps=0.05)
    assert p_self.trace == pytest.approx(np.abs(lam).sum(), rel=1e-10)


# ------------------------------------------------------------------------------------------
# bootstrap over probes, the result object
# ------------------------------------------------------------------------------------------
def test_bootstrap_uncertainty():
    w = np.random.default_rng(13).normal(size=600) * 0.1
    dens = random_density(13)
    a = critical_sparsity(w, dens, eps=0.01, bootstrap=100, seed=3)
    b = critical_sparsity(w, dens, eps=0.01, bootstrap=100, seed=3)
    assert a.uncertainty == b.uncertainty
    u = a.uncertainty
    assert u["std"] > 0 and u["interval"][0] <= u["interval"][1] and u["num_resamples"] == 100
    # identical probes: no spread
    same = FakeDensity(np.repeat(dens.nodes[:1].numpy(), 5, 0), np.repeat(dens.weights[:1].numpy(), 5, 0),
                       600)
    assert critical_sparsity(w, same, eps=0.01).uncertainty["std"] == 0.0
    assert critical_sparsity(w, np.abs(np.arange(600.0)), eps=0.01).uncertainty is None
    assert critical_sparsity(w, dens, eps=0.01, bootstrap=0).uncertainty is None


def test_prediction_object(tmp_path):
    w, lam = synthetic(14)
    p = critical_sparsity(torch.tensor(w).reshape(20, 30), torch.tensor(lam), eps=0.05)
    assert isinstance(p, Prediction)
    assert p.kept_fraction == pytest.approx(1 - p.sparsity)
    assert p.lower == pytest.approx(max(0.0, p.sparsity - p.window))
    assert p.upper == pytest.approx(min(1.0, p.sparsity + p.window))
    assert p.dim == 600 and p.eps == 0.05 and p.method == "exact"
    assert p.radius == pytest.approx(MagnitudeCurve(w).radius_at_count(p.num_pruned))
    c = p.curve
    assert c.radius.shape == c.phi.shape == c.sparsity.shape
    assert np.all(np.diff(c.radius) > 0) and np.all(np.diff(c.phi) <= 0)
    assert np.all(np.diff(c.sparsity) >= 0)
    np.testing.assert_allclose(c.phi, brute_phi(lam, np.full(600, 1 / 600), 0.05, c.radius),
                               rtol=1e-12)
    d = json.loads(p.to_json())
    assert d["sparsity"] == p.sparsity and d["dim"] == 600 and len(d["curve"]["radius"]) == c.radius.size
    assert "sparsity=" in repr(p) and "window" in repr(p)
    for key in ("sort", "solve", "total"):
        assert p.timings[key] >= 0
    fig = p.plot(path=tmp_path / "pred.png")  # plots.plot_prediction: crossing + spectrum
    assert (tmp_path / "pred.png").stat().st_size > 0 and len(fig.axes) == 2
    import matplotlib.pyplot as plt

    fig2, ax = plt.subplots()
    assert p.plot(ax) is fig2
    plt.close("all")
    dens_pred = critical_sparsity(w, random_density(1), eps=0.05)
    json.loads(dens_pred.to_json())
    dens_pred.plot(str(tmp_path / "dens.png"))


# ------------------------------------------------------------------------------------------
# argument validation
# ------------------------------------------------------------------------------------------
def test_validation():
    w, lam = np.ones(10), np.ones(10)
    bad = [
        (dict(eps=0.0), ValueError, "eps"), (dict(eps=-1.0), ValueError, "eps"),
        (dict(eps=float("nan")), ValueError, "eps"), (dict(eps=float("inf")), ValueError, "eps"),
        (dict(eps="1"), TypeError, "eps"), (dict(eps=True), TypeError, "eps"),
        (dict(eta=0.0), ValueError, "eta"), (dict(eta=1.0), ValueError, "eta"),
        (dict(negative="none"), ValueError, "negative"), (dict(negative=1), TypeError, "negative"),
        (dict(zero_mass=-0.1), ValueError, "zero_mass"), (dict(zero_mass=1.0), ValueError, "zero_mass"),
        (dict(zero_mass="estimate"), ValueError, "zero_mass"), (dict(zero_mass="x"), ValueError, "zero_mass"),
        (dict(bootstrap=-1), ValueError, "bootstrap"), (dict(trace=float("nan")), ValueError, "trace"),
        (dict(params=["x"]), ValueError, "params"), (dict(reference_emulation=1), TypeError, "reference_emulation"),
    ]
    for kwargs, exc, word in bad:
        args = dict(weights=w, spectrum=lam, eps=0.1)
        args.update(kwargs)
        with pytest.raises(exc, match=word):
            critical_sparsity(**args)
    for weights, exc in [(np.array([]), ValueError), (np.array([1.0, np.nan]), ValueError),
                         ("abc", TypeError), ([1.0, 2.0], TypeError)]:
        with pytest.raises(exc, match="weights"):
            critical_sparsity(weights, np.ones(2), eps=0.1)
    for spectrum, exc in [(np.ones(9), ValueError), (np.ones((10, 1)), ValueError),
                          (np.array([np.inf] + [1.0] * 9), ValueError), ("flat", TypeError),
                          (np.array([]), ValueError)]:
        with pytest.raises(exc, match="spectrum"):
            critical_sparsity(w, spectrum, eps=0.1)
    with pytest.raises(ValueError, match="sum to 1"):
        critical_sparsity(w, FakeDensity(np.ones((2, 3)), np.full((2, 3), 0.5), 10), eps=0.1)
    with pytest.raises(ValueError, match="non-negative"):
        critical_sparsity(w, FakeDensity(np.ones((1, 2)), np.array([[1.5, -0.5]]), 10), eps=0.1)
    with pytest.raises(ValueError, match="dim"):
        critical_sparsity(w, FakeDensity(np.ones((1, 2)), np.full((1, 2), 0.5), 11), eps=0.1)
    with pytest.raises(ValueError, match="R"):
        width_fraction(lam, 0.1, -1.0)
    with pytest.raises(ValueError, match="at least 2"):
        batch_loss_std([1.0])


def test_model_weights_and_untouched():
    model = trained_mlp()
    before = model_fingerprint(model)
    flat = torch.cat([p.detach().reshape(-1) for p in prunable_parameters(model).values()])
    lam = np.linspace(0.0, 3.0, flat.numel())
    a = critical_sparsity(model, lam, eps=0.05)
    b = critical_sparsity(flat, lam, eps=0.05)
    assert a.sparsity == b.sparsity and a.radius == b.radius
    names = ["0.weight", "2.weight"]
    sel = torch.cat([dict(model.named_parameters())[n].detach().reshape(-1) for n in names])
    c = critical_sparsity(model, np.ones(sel.numel()), eps=0.05, params=names)
    assert c.sparsity == critical_sparsity(sel, np.ones(sel.numel()), eps=0.05).sparsity
    assert fingerprints_equal(before, model_fingerprint(model))
    # a bare layer (the concatenated copy of one weight is sorted in place: never the weight)
    layer = nn.Linear(7, 5).double()
    before = model_fingerprint(layer)
    p = critical_sparsity(layer, np.ones(35), eps=0.05)
    assert p.sparsity == critical_sparsity(layer.weight.detach().clone(), np.ones(35), eps=0.05).sparsity
    assert fingerprints_equal(before, model_fingerprint(layer))
    arr = np.random.default_rng(0).normal(size=35)
    copy = arr.copy()
    critical_sparsity(arr, np.ones(35), eps=0.05)
    np.testing.assert_array_equal(arr, copy)


# ------------------------------------------------------------------------------------------
# zero mass estimate, reference emulation
# ------------------------------------------------------------------------------------------
def test_estimate_zero_mass_exact():
    D = 100
    w = torch.arange(1.0, D + 1, dtype=torch.float64)  # sorted order = index order
    diag = torch.ones(D, dtype=torch.float64)
    zero = [0, 5, 6, 50, 99]
    diag[zero] = 0
    H = torch.diag(diag)
    H[10, 11] = H[11, 10] = 1e-9  # a tiny but non-zero row still counts as zero below 1e-7
    est = estimate_zero_mass(DenseOperator(H), weights=w, chunk=7)
    # quantile j/100 → the max(1, j)-th smallest weight → index max(0, j − 1)
    expected_idx = np.maximum(0, np.arange(100) - 1)
    np.testing.assert_array_equal(est.indices, expected_idx)
    expected = np.mean([i in zero for i in expected_idx])
    assert est.fraction == pytest.approx(expected)
    assert est.row_l1[0] == 0.0
    with pytest.raises(ValueError, match="weights"):
        estimate_zero_mass(DenseOperator(H), weights=torch.ones(5))


def test_reference_emulation():
    w, lam = synthetic(15, D=2000)
    # weights of norm far below 1: the reference rounds every R to 0, so Φ(0) = 1 and it answers
    # the largest ratio on its grid, whatever the spectrum
    small = critical_sparsity(w * 1e-3, lam, eps=0.05, reference_emulation=True)
    assert small.method == "reference_emulation" and small.sparsity == 0.999
    assert small.details["rounded_radius"] == 0
    # large R: rounding is harmless, the 1/1000 grid costs at most a few grid steps
    big = critical_sparsity(w * 300, lam, eps=0.05 * 300**2, reference_emulation=True)
    exact = critical_sparsity(w * 300, lam, eps=0.05 * 300**2).sparsity
    assert big.details["exact_sparsity"] == exact
    assert abs(big.sparsity - exact) < 3e-3
    json.loads(big.to_json())
    dens = random_density(16, D=2000, negatives=0.0)
    ref = critical_sparsity(w * 300, dens, eps=0.05 * 300**2, reference_emulation=True)
    assert 0 <= ref.sparsity < 1 and ref.uncertainty is None


def test_prediction_is_frozen_and_the_reference_pipeline_its_own_function():
    w, lam = synthetic(17)
    p = critical_sparsity(w, lam, eps=0.05)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.eps_source = "batch_loss_std"
    assert list(p.timings) == ["sort", "solve", "bootstrap", "curve", "total"]
    via_flag = critical_sparsity(w, lam, eps=0.05, reference_emulation=True)
    own = reference_critical_sparsity(w, lam, eps=0.05)
    assert own.method == via_flag.method == "reference_emulation"
    strip = lambda q: {k: v for k, v in q.to_dict().items() if k != "timings"}  # noqa: E731
    assert strip(own) == strip(via_flag)
    assert own.details["exact_sparsity"] == p.sparsity and own.uncertainty is None
    assert list(own.timings) == ["sort", "solve", "bootstrap", "reference_emulation", "total"]


def test_prediction_plot_delegates_to_the_plots_module(tmp_path):
    import matplotlib.pyplot as plt

    from phasetrans.report.plots import plot_crossing, plot_prediction

    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 40))
    sd = pt.slq(DenseOperator(torch.tensor(A @ A.T / 40)), num_steps=10, num_probes=3, seed=0)
    p = critical_sparsity(rng.standard_normal(40), sd, eps=0.05)
    fig, ref = p.plot(), plot_prediction(p)  # two panels: the crossing and the quadrature
    assert len(fig.axes) == 2 and [a.get_title() for a in fig.axes] == [a.get_title() for a in ref.axes]
    for got, want in zip(fig.axes[0].lines, plot_crossing(p).axes[0].lines, strict=True):
        np.testing.assert_array_equal(got.get_xydata(), want.get_xydata())
    fig2, axes = plt.subplots(1, 2)
    assert p.plot(axes) is fig2
    assert axes[0].get_title() == ref.axes[0].get_title()
    assert axes[1].get_yscale() == "log" and "spectrum" in axes[1].get_title()  # the quadrature
    with pytest.raises(TypeError, match="ax must be None, a matplotlib Axes, a pair of Axes or a path"):
        p.plot(ax=3)
    with pytest.raises(ValueError, match="path"):
        p.plot(path=tmp_path)  # a directory
    plt.close("all")


def test_reference_density_reweights_nodes():
    # one probe, nodes on and between grid points: the kernel (narrower than the grid step)
    # keeps a node's mass only through the grid points near it
    spec = Spectrum(np.array([[0.0, 5.0]]), np.array([[0.5, 0.5]]), "slq", 10)
    grid, density = reference_density(spec, 1001)
    dx = grid[1] - grid[0]
    mass_near = [density[np.abs(grid - x) < 3 * dx].sum() for x in (0.0, 5.0)]
    assert all(m > 0 for m in mass_near)
    assert density.sum() * dx == pytest.approx(1.0)
    var = 1e-10 * (grid[-1] - grid[0])
    assert math.sqrt(var) < dx  # narrower than the grid step


# ------------------------------------------------------------------------------------------
# the pipeline on a small trained MLP
# ------------------------------------------------------------------------------------------
def _data(batch=128):
    X, y, _, _ = digits_tensors(torch.float64)
    return [(X[i : i + batch], y[i : i + batch]) for i in range(0, len(y), batch)]


def test_predict_sparsity_eps_default_and_untouched():
    model = trained_mlp()
    before = model_fingerprint(model)
    data = _data()
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        losses = [float(loss_fn(model(x), y)) for x, y in data]
    p = predict_sparsity(model, loss_fn, data, num_steps=30, num_probes=4, trace_method="hutchinson",
                         trace_matvecs=20, bootstrap=20)
    assert p.eps == pytest.approx(np.std(losses), rel=1e-10)  # population std, as np.std
    assert p.eps_source == "batch_loss_std" and p.trace_source == "hutchinson"
    assert p.dim == 2080 and p.uncertainty is not None
    assert fingerprints_equal(before, model_fingerprint(model))
    assert list(p.timings) == ["eps", "spectrum", "trace", "applicability", "solve_sort", "solve_solve",
                               "solve_bootstrap", "solve_curve", "solve_total", "total"]
    with pytest.raises(ValueError, match="eps"):
        predict_sparsity(model, loss_fn, data[0], num_steps=5, num_probes=2)  # one batch: no std
    # spectrum_method="exact": dense eigenvalues of the same Hessian
    small = make_mlp((64, 3, 10), seed=1, dtype=torch.float64)
    via = predict_sparsity(small, loss_fn, data, eps=0.1, spectrum_method="exact", trace_method=None)
    eig = torch.linalg.eigvalsh(HessianOperator(small, loss_fn, data).to_dense())
    assert via.sparsity == critical_sparsity(small, eig, eps=0.1).sparsity
    assert via.spectrum_kind == "eigenvalues" and via.uncertainty is None
    # zero_mass="estimate": the sampled-row estimate, added to Φ
    est = estimate_zero_mass(HessianOperator(small, loss_fn, data))
    zm = predict_sparsity(small, loss_fn, data, eps=0.1, spectrum_method="exact", trace_method=None,
                          zero_mass="estimate")
    assert zm.zero_mass == est.fraction and zm.details["zero_mass_estimate"] == est.fraction
    assert est.fraction > 0  # digits has constant pixels: their first-layer weights are flat
    assert zm.sparsity == critical_sparsity(small, eig, eps=0.1, zero_mass=est.fraction).sparsity
    with pytest.raises(ValueError, match="trace_method"):
        predict_sparsity(model, loss_fn, data, eps=0.1, trace_method="exact")
    assert fingerprints_equal(before, model_fingerprint(model))


def test_exact_vs_slq_on_trained_mlp():
    model = trained_mlp()
    data = _data()
    loss_fn = nn.CrossEntropyLoss()
    H = HessianOperator(model, loss_fn, data)
    eig = torch.linalg.eigvalsh(H.to_dense())
    eps = 0.05
    exact = critical_sparsity(model, eig, eps=eps)
    slq_pred = predict_sparsity(model, loss_fn, data, eps=eps, num_steps=80, num_probes=10,
                                trace_method=None)
    assert 0.05 < exact.sparsity < 0.95
    assert abs(slq_pred.sparsity - exact.sparsity) < 0.01


@pytest.mark.slow
def test_prediction_matches_one_shot_threshold_l1_mlp():
    """LOMP recipe on digits (64-64-32-10 MLP, l1 = 3e-3, 100 epochs): the prediction lands within
    2 points of the measured one-shot threshold (test accuracy ≥ dense). Measured when written:
    predicted 0.9471, measured 0.937. Weaker l1 overestimates (0 → +26 points, 1e-3 → +7): the one-shot pruned point leaves S(ε)
    earlier than the quadratic-width heuristic says."""
    from phasetrans.evaluate import evaluate_accuracy
    from phasetrans.prune.threshold import find_threshold
    from phasetrans.train import train_l1

    Xtr, ytr, Xte, yte = digits_tensors(torch.float64)
    train = [(Xtr[i : i + 64], ytr[i : i + 64]) for i in range(0, len(ytr), 64)]
    test = [(Xte, yte)]
    loss_fn = nn.CrossEntropyLoss()
    model = make_mlp((64, 64, 32, 10), seed=0, dtype=torch.float64)
    train_l1(model, loss_fn, train, l1=3e-3, epochs=100, lr=0.05, progress=False, seed=0)
    pred = predict_sparsity(model, loss_fn, train, trace_method=None, bootstrap=20)
    measured = find_threshold(model, lambda m: evaluate_accuracy(m, test)).sparsity
    assert abs(pred.sparsity - measured) < 0.02


def test_estimate_eps_is_the_std_of_the_batch_losses_by_forward_passes_only(small_trained_mlp, digits64):
    """ε = population std of the per-batch training losses (the reference's np.std), computed
    without gradients: the same numbers as the losses of the gradient pass, and the ε that
    predict_sparsity(eps=None) uses."""
    Xtr, ytr, _, _ = digits64
    data = [(Xtr[i : i + 200], ytr[i : i + 200]) for i in range(0, len(ytr), 200)]  # uneven last
    H = pt.HessianOperator(small_trained_mlp, nn.CrossEntropyLoss(), data)
    losses, sizes = H.batch_losses()
    ref_losses = [float(nn.CrossEntropyLoss()(small_trained_mlp(x), y)) for x, y in data]
    assert sizes == [len(y) for _, y in data]
    assert np.allclose(losses, ref_losses, rtol=1e-12, atol=0)
    assert np.allclose(losses, H.loss_and_gradient()[2], rtol=1e-12, atol=0)
    eps = pt.estimate_eps(small_trained_mlp, nn.CrossEntropyLoss(), data)
    assert eps == pytest.approx(float(np.std(ref_losses)), rel=1e-12)
    pred = pt.predict_sparsity(small_trained_mlp, nn.CrossEntropyLoss(), data, num_steps=5,
                               num_probes=2, bootstrap=0, trace_method=None)
    assert pred.eps == eps
