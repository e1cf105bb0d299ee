"""The adaptive SLQ budget (issue 18): GrowingSLQ against slq, the stop rule on operators with a
known spectrum, predict_sparsity's default budget, explicit settings bit for bit, and the Hessian
on a subset of the data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import phasetrans as pt
from phasetrans.linalg.growing_slq import GrowingSLQ
from phasetrans.linalg.operator import DenseOperator
from phasetrans.predict import hessian_subset
from phasetrans.theory.budget import adaptive_spectrum, depth_checks, depth_window
from phasetrans.theory.magnitude import magnitude_curve


def known(dim: int = 400, seed: int = 0, distinct: int | None = None):
    """``H = U diag(λ) Uᵀ`` with a chosen spectrum (``distinct`` values: Lanczos breaks down
    after that many steps), and weights ``w``."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.linspace(0.0, 3.0, dim, dtype=torch.float64) ** 2
    if distinct is not None:
        lam = torch.tensor([0.1, 1.0, 4.0], dtype=torch.float64)[torch.arange(dim) % distinct]
    U, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    w = torch.randn(dim, generator=g, dtype=torch.float64) * 0.1
    return DenseOperator((U * lam) @ U.T), lam, w


@pytest.mark.parametrize("reorth", ["full", "none"])
def test_growing_slq_is_slq_bit_for_bit(reorth):
    H, _, _ = known(120)
    run = GrowingSLQ(H, max_steps=30, seed=5, reorth=reorth)
    run.add_probes(3)
    run.advance(8)
    run.add_probes(2)  # joins at depth 8
    run.advance(20)
    for m in (8, 13, 20):
        ref = pt.slq(H, num_steps=m, num_probes=5, seed=5, reorth=reorth)
        got = run.density(m)
        assert torch.equal(got.nodes, ref.nodes) and torch.equal(got.weights, ref.weights)
    assert run.products == 5 * 20
    with pytest.raises(ValueError, match="steps"):
        run.density(21)


def test_stop_rule_settles_to_the_exact_answer():
    """Against the exact root from all D eigenvalues: the settled s* is within the tolerance
    (plus the 1/D step of the count and a 3-sigma margin for the probe error the bootstrap
    estimates), and the rule was met at the stop."""
    H, lam, w = known(1000)
    eps = 0.01
    exact = pt.critical_sparsity(w, lam, eps, bootstrap=0).sparsity
    tol = 4e-3
    spec, rec = adaptive_spectrum(H, magnitude_curve(w), eps, tolerance=tol, seed=1)
    assert rec.settled and rec.bootstrap_std + rec.depth_change <= tol
    assert abs(rec.sparsity - exact) <= tol + 3 * rec.bootstrap_std + 1 / 1000
    # the record's s* is critical_sparsity's on the returned spectrum
    assert pt.critical_sparsity(w, spec, eps, bootstrap=0).sparsity == rec.sparsity
    assert rec.products == int(spec.lengths.sum()) == rec.history[-1]["products"]
    assert spec.num_probes == rec.num_probes and spec.num_steps == rec.num_steps
    # cheaper than the fixed 80 x 10, and a tighter tolerance costs more
    assert rec.products < 800
    _, tight = adaptive_spectrum(H, magnitude_curve(w), eps, tolerance=tol / 4, seed=1)
    assert tight.products > rec.products


def test_stop_rule_stops_once_settled():
    """A loose tolerance: the first two checks have no earlier depth within the last third
    (10 < 20 / 1.5), the third compares with 20, and it stops there on 2 probes."""
    H, _, w = known(300)
    _, rec = adaptive_spectrum(H, magnitude_curve(w), 0.01, tolerance=0.5)
    assert rec.settled and (rec.num_probes, rec.num_steps, rec.products) == (2, 30, 60)
    assert [h["steps"] for h in rec.history] == [10, 20, 30]
    assert math.isinf(rec.history[0]["depth_change"]) and math.isinf(rec.history[1]["depth_change"])


def test_depth_part_is_the_largest_move_over_the_last_third():
    """Every recorded depth change is max |s*(m) − s*(m')| over the checked m' in [m/1.5, m),
    recomputed here from slq at those depths (the same recurrence, stopped earlier)."""
    H, _, w = known(1000, seed=3)
    mag = magnitude_curve(w)
    _, rec = adaptive_spectrum(H, mag, 0.002, tolerance=1e-9, num_probes=2, max_steps=60,
                               check_every=10)
    assert [h["steps"] for h in rec.history] == [10, 20, 30, 40, 50, 60]
    roots = {m: pt.critical_sparsity(w, pt.slq(H, num_steps=m, num_probes=2, seed=0), 0.002,
                                     bootstrap=0).sparsity for m in (10, 20, 30, 40, 50, 60)}
    assert roots[60] == rec.sparsity
    for row in rec.history[2:]:
        m = row["steps"]
        window = [d for d in roots if d < m and 1.5 * d >= m]
        assert row["depth_change"] == pytest.approx(max(abs(roots[m] - roots[d]) for d in window),
                                                    abs=1e-12)
    assert max(h["depth_change"] for h in rec.history[2:]) > 0  # the check can fail
    assert depth_checks(10, 45, 10) == [10, 20, 30, 40, 45] and depth_window([10, 20, 30, 40, 45], 4) == [30, 40]
    assert depth_checks(10, 180, 10)[-3:] == [160, 170, 180] and depth_checks(10, 7, 10) == [7]
    with pytest.raises(ValueError, match="check_every"):
        adaptive_spectrum(H, mag, 0.01, check_every=0)


def test_stop_rule_exact_quadrature_after_breakdown():
    """Three distinct eigenvalues: every probe's Krylov space is invariant after 3 steps, the
    Gauss rules are exact (no depth error), and s* is the exact root."""
    H, lam, w = known(300, distinct=3)
    exact = pt.critical_sparsity(w, lam, 0.05, bootstrap=0).sparsity
    _, rec = adaptive_spectrum(H, magnitude_curve(w), 0.05, tolerance=0.02)
    assert rec.depth_change == 0.0 and rec.num_steps == 10 and rec.products <= 3 * rec.num_probes
    assert abs(rec.sparsity - exact) <= 0.02 + 3 * rec.bootstrap_std + 1 / 300


def test_stop_rule_caps_and_fixed_dimensions():
    H, _, w = known(200)
    mag = magnitude_curve(w)
    # a tolerance below one weight's step (1/D) is raised to it; the caps bound the growth
    for max_steps, max_probes in ((20, 8), (10, 10)):
        _, rec = adaptive_spectrum(H, mag, 0.01, tolerance=1e-9, max_steps=max_steps,
                                   max_probes=max_probes)
        assert rec.num_steps <= max_steps and rec.num_probes <= max_probes
        assert rec.settled == (rec.bootstrap_std + rec.depth_change <= 1 / 200)
        if not rec.settled:  # at the depth cap; probes only added while they can settle it
            assert rec.num_steps == max_steps
            assert rec.num_probes == max_probes or rec.depth_change >= 1 / 200
    # fixed steps: only the probes grow; fixed probes: only the depth grows
    _, rec = adaptive_spectrum(H, mag, 0.002, tolerance=1e-9, num_steps=12)
    assert {h["steps"] for h in rec.history} == {12} and rec.num_probes <= 10
    _, rec = adaptive_spectrum(H, mag, 0.002, tolerance=1e-9, num_probes=3, max_steps=23)
    assert {h["probes"] for h in rec.history} == {3} and rec.num_steps <= 23
    with pytest.raises(ValueError, match="tolerance"):
        adaptive_spectrum(H, mag, 0.01, tolerance=0.0)


# -- predict_sparsity ------------------------------------------------------------------------
def _net_and_data(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(240, 6, generator=g, dtype=torch.float64)
    Y = torch.randint(0, 3, (240,), generator=g)
    return model, [(X[i : i + 60], Y[i : i + 60]) for i in range(0, 240, 60)], X, Y


LOSS = nn.functional.cross_entropy


def test_explicit_settings_are_unchanged_bit_for_bit():
    """num_steps and num_probes given: the spectrum is slq's, the answer critical_sparsity's on
    it (the pipeline before the adaptive budget), and products = steps x probes + trace."""
    model, data, _, _ = _net_and_data()
    pred = pt.predict_sparsity(model, LOSS, data, eps=0.05, num_steps=30, num_probes=6)
    H = pt.HessianOperator(model, LOSS, data)
    spec = pt.slq(H, num_steps=30, num_probes=6, seed=0)
    ref = pt.critical_sparsity(model, spec, 0.05)
    assert torch.equal(pred.spectrum.nodes, spec.nodes) and torch.equal(pred.spectrum.weights, spec.weights)
    assert pred.sparsity == ref.sparsity and pred.uncertainty == ref.uncertainty
    assert pred.products == 30 * 6 and "budget" not in pred.details  # trace from the spectrum
    assert pred.to_dict()["products"] == pred.products
    hutch = pt.predict_sparsity(model, LOSS, data, eps=0.05, num_steps=30, num_probes=6,
                                trace_method="hutch++")
    assert hutch.products == 30 * 6 + 100 and hutch.trace_source == "hutch++"
    assert hutch.sparsity == pred.sparsity and pred.trace_source == "spectrum"


def test_default_budget_is_adaptive():
    model, data, _, _ = _net_and_data()
    fixed = pt.predict_sparsity(model, LOSS, data, eps=0.05, num_steps=80, num_probes=10, trace_method=None)
    pred = pt.predict_sparsity(model, LOSS, data, eps=0.05, trace_method=None)
    budget = pred.details["budget"]
    assert pred.products == budget["products"] <= 800  # never past the fixed 80 x 10
    assert pred.spectrum.num_probes == budget["num_probes"]
    assert {"depth_change", "tolerance", "settled"} <= set(pred.uncertainty)
    assert abs(pred.sparsity - fixed.sparsity) <= 2 / pred.dim + 3 * fixed.uncertainty["std"]
    loose = pt.predict_sparsity(model, LOSS, data, eps=0.05, trace_method=None, tolerance=0.03)
    assert loose.details["budget"]["settled"] and loose.products < 400
    # one dimension fixed: it keeps its meaning
    pred = pt.predict_sparsity(model, LOSS, data, eps=0.05, num_probes=3, num_steps=None,
                               trace_method=None, tolerance=0.03)
    assert pred.spectrum.num_probes == 3 and pred.details["budget"]["num_probes"] == 3


def test_hessian_samples_is_the_hessian_of_the_first_samples():
    model, data, X, Y = _net_and_data()
    sub = [(X[:60], Y[:60]), (X[60:100], Y[60:100])]
    got = pt.predict_sparsity(model, LOSS, data, eps=0.05, num_steps=20, num_probes=4,
                              hessian_samples=100)
    ref = pt.predict_sparsity(model, LOSS, sub, eps=0.05, num_steps=20, num_probes=4)
    assert got.sparsity == ref.sparsity and torch.equal(got.spectrum.nodes, ref.spectrum.nodes)
    assert got.details["hessian_samples"] == 100
    # ε comes from all the data's batches
    eps_pred = pt.predict_sparsity(model, LOSS, data, num_steps=5, num_probes=2, hessian_samples=100)
    assert eps_pred.eps == pt.estimate_eps(model, LOSS, data)
    # the subset is held (a fixed matrix), with the batch structure cut at n
    held = hessian_subset(data, 130)
    assert [len(y) for _, y in held] == [60, 60, 10]
    assert all(torch.equal(a, b[: len(a)]) for (a, _), (b, _) in zip(held, data))
    assert sum(len(y) for _, y in hessian_subset(data, 10_000)) == 240


def test_bad_budget_arguments():
    model, data, _, _ = _net_and_data()
    for kw, exc, name in [({"tolerance": 0.0}, ValueError, "tolerance"),
                          ({"tolerance": "x"}, TypeError, "tolerance"),
                          ({"hessian_samples": 0}, ValueError, "hessian_samples"),
                          ({"hessian_samples": 1.5}, TypeError, "hessian_samples")]:
        with pytest.raises(exc, match=name):
            pt.predict_sparsity(model, LOSS, data, eps=0.05, **kw)
    assert np.isfinite(pt.predict_sparsity(model, LOSS, data, eps=0.05, tolerance=0.05).sparsity)


class _Interrupt(Exception):
    pass


class _Counting(DenseOperator):
    """A dense operator that counts its column products and raises after ``stop_after``."""

    def __init__(self, A, stop_after=None):
        super().__init__(A)
        self.columns, self.stop_after = 0, stop_after

    def _matmat(self, V):
        if self.stop_after is not None and self.columns + V.shape[1] > self.stop_after:
            raise _Interrupt
        self.columns += V.shape[1]
        return super()._matmat(V)


def test_adaptive_budget_resumes_from_its_checkpoint(tmp_path):
    """Interrupted at several points of its growth, rerun with the same arguments: the same
    spectrum and record bit for bit, with only the products the checkpoint lacked; a finished
    checkpoint answers without any product; other settings are refused."""
    H, _, w = known(1000)
    A = H.to_dense()
    mag, eps = magnitude_curve(w), 0.01
    ref, ref_rec = adaptive_spectrum(H, mag, eps, tolerance=4e-3, seed=1)
    assert len(ref_rec.history) >= 3  # grew several times
    for k, stop in enumerate((25, ref_rec.products // 2, ref_rec.products - 3)):
        path = tmp_path / f"grown{k}.pt"
        with pytest.raises(_Interrupt):
            adaptive_spectrum(_Counting(A, stop), mag, eps, tolerance=4e-3, seed=1, checkpoint=path)
        assert path.is_file()
        op = _Counting(A)
        spec, rec = adaptive_spectrum(op, mag, eps, tolerance=4e-3, seed=1, checkpoint=path)
        assert torch.equal(spec.nodes, ref.nodes) and torch.equal(spec.weights, ref.weights)
        assert rec == ref_rec
        assert 0 < op.columns < ref_rec.products
    op = _Counting(A)
    again, rec = adaptive_spectrum(op, mag, eps, tolerance=4e-3, seed=1, checkpoint=path)
    assert op.columns == 0 and torch.equal(again.nodes, ref.nodes) and rec == ref_rec
    with pytest.raises(ValueError, match="different arguments.*tolerance"):
        adaptive_spectrum(H, mag, eps, tolerance=2e-3, seed=1, checkpoint=path)
    with pytest.raises(ValueError, match="different arguments"):
        adaptive_spectrum(H, mag, 0.02, tolerance=4e-3, seed=1, checkpoint=path)


def test_predict_sparsity_adaptive_with_checkpoint_is_the_plain_prediction(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3)).double()
    g = torch.Generator().manual_seed(1)
    X = torch.randn(64, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=g)
    data = [(X[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    plain = pt.predict_sparsity(model, nn.CrossEntropyLoss(), data, eps=0.05)
    path = tmp_path / "slq.pt"
    first = pt.predict_sparsity(model, nn.CrossEntropyLoss(), data, eps=0.05, checkpoint=path)
    again = pt.predict_sparsity(model, nn.CrossEntropyLoss(), data, eps=0.05, checkpoint=path)
    assert path.is_file() and "budget" in first.details
    for p in (first, again):
        assert p.sparsity == plain.sparsity and p.products == plain.products
        assert p.details["budget"] == plain.details["budget"]
