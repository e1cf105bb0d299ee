"""``pt.threshold_spread``: the measured one-shot threshold, its bootstrap spread and the error
floor it sets, against brute force and closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import digits_tensors, trained_mlp
from torch.utils.data import DataLoader, TensorDataset

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint
from phasetrans.prune.threshold_spread import (
    _grid_rules,
    _resample_counts,
    gini_mean_difference,
    threshold_rules,
)


def _rules_brute(s, holds):
    holds = list(holds)
    holds[0] = True
    first = s[-1]
    for k, h in enumerate(holds):
        if not h:
            first = s[k - 1]
            break
    last = max(s[k] for k, h in enumerate(holds) if h)
    return first, last


def test_rules_match_brute_force_on_every_pattern():
    s = np.linspace(0, 1, 6)
    patterns = np.array(list(itertools.product([False, True], repeat=6)))
    first, last = threshold_rules(s, patterns)
    for p, f, la in zip(patterns, first, last):
        assert (f, la) == _rules_brute(s, p)
    # the dense point always holds; nothing failing gives the whole grid
    assert threshold_rules(s, np.zeros(6, bool)) == (0.0, 0.0)
    assert threshold_rules(s, np.ones(6, bool)) == (1.0, 1.0)


def test_gini_mean_difference_is_the_mean_pairwise_distance():
    rng = np.random.default_rng(1)
    for b in (2, 3, 17, 200):
        x = rng.choice([0.1, 0.25, 0.7, 0.9], size=b) + rng.normal(size=b) * (b % 2)
        brute = np.mean([abs(a - c) for i, a in enumerate(x) for j, c in enumerate(x) if i != j])
        assert gini_mean_difference(x) == pytest.approx(brute, rel=1e-12, abs=1e-15)
    assert gini_mean_difference(np.array([0.3])) == 0.0


def _bootstrap_rules(s, correct, tolerance, strict, resamples, seed):
    firsts, lasts = zip(*(_grid_rules(s, correct, c, tolerance, strict)
                          for c in _resample_counts(correct.shape[1], resamples, seed)))
    return np.concatenate(firsts), np.concatenate(lasts)


def test_bootstrap_of_a_cliff_does_not_move():
    """All samples right up to grid point 3, all wrong after: every resample gives 0.3, and the
    floor is 0 (the measurement is exact)."""
    s = np.round(np.arange(11) / 10, 12)
    correct = np.zeros((11, 40), bool)
    correct[:4] = True
    first, last = _bootstrap_rules(s, correct, 0.0, False, 300, 0)
    assert np.all(first == 0.3) and np.all(last == 0.3)


def test_bootstrap_of_one_early_flip_has_its_closed_form():
    """One of n samples is wrong at s = 0.1 only; all are right up to 0.5 and wrong after. With
    tolerance 0 a resample fails at 0.1 iff it draws that sample, P = 1 − (1 − 1/n)^n: the first-
    failure rule is 0 with probability P, else 0.5; the last-holding rule is always 0.5; the Gini
    mean difference of the first is 2P(1 − P)·0.5."""
    n, b = 30, 40_000
    s = np.round(np.arange(11) / 10, 12)
    correct = np.zeros((11, n), bool)
    correct[:6] = True
    correct[1, 0] = False
    first, last = _bootstrap_rules(s, correct, 0.0, False, b, 3)
    p = 1 - (1 - 1 / n) ** n
    assert set(np.unique(first)) == {0.0, 0.5} and np.all(last == 0.5)
    assert np.mean(first == 0.0) == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / b))
    assert gini_mean_difference(first) == pytest.approx(2 * p * (1 - p) * 0.5, abs=0.01)
    # tolerance one sample (1/n): a resample fails at 0.1 iff it holds two or more copies of
    # sample 0, P(count >= 2) = 1 − (1 − 1/n)^n − (1 − 1/n)^(n−1)
    first_t, _ = _bootstrap_rules(s, correct, 1 / n, False, b, 4)
    p2 = 1 - (1 - 1 / n) ** n - (1 - 1 / n) ** (n - 1)
    assert np.mean(first_t == 0.0) == pytest.approx(p2, abs=4 * np.sqrt(p2 * (1 - p2) / b))


def test_bootstrap_matches_a_loop_over_resamples():
    """The vectorised resampling against an explicit loop on the same multinomial counts."""
    rng = np.random.default_rng(5)
    s = np.round(np.arange(21) / 20, 12)
    correct = rng.random((21, 25)) < np.linspace(0.95, 0.2, 21)[:, None]
    first, last = _bootstrap_rules(s, correct, 0.02, True, 50, 7)
    counts = np.random.default_rng(7).multinomial(25, np.full(25, 1 / 25), size=50)
    for c, f, la in zip(counts, first, last):
        acc = [(c * row).sum() / 25 for row in correct]
        holds = [a > acc[0] - 0.02 for a in acc]
        assert (f, la) == _rules_brute(s, holds)


@pytest.fixture(scope="module")
def model_and_test():
    _, _, Xte, yte = digits_tensors(torch.float64)
    return trained_mlp(), (Xte, yte)


def test_threshold_spread_measures_the_models_curve(model_and_test):
    model, test = model_and_test
    before = model_fingerprint(model)
    sp = pt.threshold_spread(model, [test], step=0.05, resamples=200, seed=0)
    assert fingerprints_equal(before, model_fingerprint(model))
    assert sp.sparsity.tolist() == pytest.approx(np.arange(21) * 0.05)
    for s, acc in zip(sp.sparsity, sp.accuracy):
        with pt.pruned(model, float(s)):
            assert acc == pytest.approx(pt.evaluate_accuracy(model, [test]), abs=1e-15)
    assert sp.baseline == sp.accuracy[0] and sp.n_samples == 500
    assert sp.window == threshold_rules(sp.sparsity, sp.accuracy >= sp.baseline - 1e-12)
    for rule in ("find_threshold", "first_failure", "last_holding"):
        lo, hi = sp.intervals[rule]
        assert 0 <= lo <= hi <= 1 and sp.draws[rule].shape == (200,)
        assert sp.error_floor[rule] == 0.5 * gini_mean_difference(sp.draws[rule])
    assert np.all(sp.draws["first_failure"] <= sp.draws["last_holding"])
    d = sp.to_dict()
    assert d["resamples"] == 200 and "draws" not in d and d["measured"] == sp.measured
    assert len(sp.to_dict(draws=True)["draws"]["last_holding"]) == 200
    again = pt.threshold_spread(model, [test], step=0.05, resamples=200, seed=0)
    assert all(np.array_equal(again.draws[r], sp.draws[r]) for r in sp.draws)
    with pytest.raises(ValueError):
        sp.accuracy[0] = 0.0  # frozen values


@pytest.mark.parametrize("tolerance, strict", [(0.0, False), (0.004, True)])
def test_find_threshold_rule_is_find_threshold_on_each_resample(model_and_test, tolerance, strict):
    """``measured`` is ``pt.find_threshold``'s answer on the set; each ``draws["find_threshold"]``
    is ``pt.find_threshold``'s answer for the accuracy of that resample (same multinomial counts)."""
    model, (X, y) = model_and_test
    sp = pt.threshold_spread(model, [(X, y)], tolerance=tolerance, strict=strict, step=0.1,
                             resolution=0.01, resamples=6, seed=2)
    acc = lambda m: pt.evaluate_accuracy(m, [(X, y)])  # noqa: E731
    thr = pt.find_threshold(model, acc, tolerance=tolerance, strict=strict, resolution=0.01)
    assert sp.measured == thr.sparsity
    counts = next(_resample_counts(500, 6, 2))
    for c, drawn in zip(counts, sp.draws["find_threshold"]):
        weights = torch.tensor(c, dtype=torch.float64)
        weighted = lambda m, w=weights: float((w * (m(X).argmax(1) == y)).sum() / w.sum())  # noqa: E731
        assert drawn == pt.find_threshold(model, weighted, tolerance=tolerance, strict=strict,
                                          resolution=0.01).sparsity


def test_evaluate_correct_agrees_with_accuracy_and_reads_a_shuffling_loader_in_one_order(model_and_test):
    model, (X, y) = model_and_test
    loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True)
    c = pt.evaluate_correct(model, loader)
    assert c.dtype == bool and c.shape == (500,)
    assert c.mean() == pytest.approx(pt.evaluate_accuracy(model, loader), abs=1e-15)
    assert np.array_equal(c, pt.evaluate_correct(model, loader))
    plain = pt.evaluate_correct(model, DataLoader(TensorDataset(X, y), batch_size=64))
    assert np.array_equal(plain, (model(X).argmax(1) == y).numpy())  # the dataset's order
    assert sorted(plain) == sorted(c)  # a shuffling loader: one fixed permutation of it


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"tolerance": -0.1}, ValueError, "tolerance"),
    ({"tolerance": "0"}, TypeError, "tolerance"),
    ({"strict": 1}, TypeError, "strict"),
    ({"step": 0.0}, ValueError, "step"),
    ({"step": 0.7}, ValueError, "step"),
    ({"resamples": 1}, ValueError, "resamples"),
    ({"resamples": 2.0}, TypeError, "resamples"),
    ({"level": 1.0}, ValueError, "level"),
    ({"seed": -1}, ValueError, "seed"),
    ({"min_per_layer": 2.0}, ValueError, "min_per_layer"),
])
def test_bad_arguments_are_named(model_and_test, kwargs, exc, name):
    model, test = model_and_test
    with pytest.raises(exc, match=name):
        pt.threshold_spread(model, [test], **kwargs)


def test_regression_targets_are_refused(model_and_test):
    model, (X, _) = model_and_test
    with pytest.raises(ValueError, match="class labels"):
        pt.threshold_spread(model, [(X, torch.rand(len(X), dtype=torch.float64))], step=0.5)


def test_a_criterion_prunes_as_in_find_threshold(model_and_test):
    """``criterion="fisher_taylor"`` reads ``criterion_data`` / ``loss_fn``; each grid point's
    accuracy is the one of ``pt.pruned`` with that criterion."""
    model, test = model_and_test
    Xtr, ytr, _, _ = digits_tensors(torch.float64)
    loss = torch.nn.CrossEntropyLoss()
    sp = pt.threshold_spread(model, [test], step=0.25, resamples=20, criterion="fisher_taylor",
                             criterion_data=[(Xtr, ytr)], loss_fn=loss)
    crit = pt.prepare_criterion("fisher_taylor", model, [(Xtr, ytr)], loss)
    for s, acc in zip(sp.sparsity, sp.accuracy):
        with pt.pruned(model, float(s), criterion=crit):
            assert acc == pt.evaluate_accuracy(model, [test])
    with pytest.raises((ValueError, TypeError), match="data"):
        pt.threshold_spread(model, [test], step=0.5, criterion="fisher_taylor")


def test_plot_threshold_spread_from_the_result_and_its_dict(model_and_test, tmp_path):
    model, test = model_and_test
    sp = pt.threshold_spread(model, [test], step=0.05, resamples=50)
    fig = pt.plots.plot_threshold_spread(sp, path=tmp_path / "spread.png")
    assert (tmp_path / "spread.png").stat().st_size > 0 and len(fig.axes) == 2
    assert len(fig.axes[1].patches) > 0  # the histograms of the draws
    fig = pt.plots.plot_threshold_spread(sp.to_dict())  # no draws: the intervals as bars
    assert len(fig.axes[1].lines) == 3
    with pytest.raises(TypeError, match="ThresholdSpread"):
        pt.plots.plot_threshold_spread({"window": [0, 1]})


def test_best_coverage_is_the_best_fixed_estimate_by_brute_force(model_and_test):
    """``best_coverage(h)`` = max over s of the share of draws within h of s (s on every draw ± h
    and a fine grid: the optimum sits at a window's edge)."""
    model, test = model_and_test
    sp = pt.threshold_spread(model, [test], step=0.05, resamples=300, seed=1)
    for rule in ("find_threshold", "last_holding"):
        m = sp.draws[rule]
        for h in (0.0, 0.02, 0.05):
            candidates = np.concatenate([m - h, m + h, np.linspace(0, 1, 2001)])
            brute = max(np.mean(np.abs(m - s) <= h + 1e-12) for s in candidates)
            assert sp.best_coverage(h, rule) == pytest.approx(brute, abs=1e-12)
    assert sp.best_coverage(1.0) == 1.0
    with pytest.raises(ValueError, match="rule"):
        sp.best_coverage(0.05, "median")
    with pytest.raises(ValueError, match="half_width"):
        sp.best_coverage(-0.1)
