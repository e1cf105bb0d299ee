"""Property-based tests (hypothesis): pruning masks, the critical-sparsity solver, geometry.

Each property is checked against an independent brute-force reference (a stable sort for the
masks, a scan over every pruned count for the solver), on small random inputs with many ties.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import phasetrans as pt

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = dict(allow_nan=False, allow_infinity=False)


# -- strategies ------------------------------------------------------------------------------
@st.composite
def models(draw):
    """1–3 Linear layers of 1–6 units; weights from a small set of values (many ties, signed
    zeros) or general floats."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=2, max_size=4))
    tied = draw(st.booleans())
    layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    model = nn.Sequential(*layers).double()
    with torch.no_grad():
        for layer in layers:
            n = layer.weight.numel()
            if tied:
                values = draw(st.lists(st.sampled_from([-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0]),
                                       min_size=n, max_size=n))
            else:
                values = draw(st.lists(st.floats(-10, 10, **finite), min_size=n, max_size=n))
            layer.weight.copy_(torch.tensor(values, dtype=torch.float64).reshape(layer.weight.shape))
    return model


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in pt.prunable_parameters(model).values()])


def _reference_pruned(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """Bool vector: True where pruned — the k smallest by (|w|, flat index), a stable sort."""
    order = torch.sort(magnitudes, stable=True).indices
    pruned = torch.zeros(magnitudes.numel(), dtype=torch.bool)
    pruned[order[:k]] = True
    return pruned


# -- masks -----------------------------------------------------------------------------------
@SETTINGS
@given(model=models(), sparsity=st.floats(0, 1, **finite))
def test_masks_exact_count_and_largest_kept(model, sparsity):
    masks = pt.magnitude_masks(model, sparsity)
    keep = torch.cat([m.reshape(-1) for m in masks.values()])
    D = keep.numel()
    k = pt.pruned_count(sparsity, D)
    assert int((~keep).sum()) == k
    exact = sparsity * D
    if abs(exact - round(exact)) > 1e-9:
        assert k == math.ceil(exact)
    else:
        assert k == round(exact)
    mags = _flat(model).abs()
    if 0 < k < D:
        assert mags[~keep].max() <= mags[keep].min()
    # ties: exactly the stable-sort reference (lower flat index pruned first)
    assert torch.equal(~keep, _reference_pruned(mags, k))
    # deterministic, and the model is only read
    again = pt.magnitude_masks(model, sparsity)
    assert all(torch.equal(masks[n], again[n]) for n in masks)


@SETTINGS
@given(model=models(), sparsity=st.floats(0, 1, **finite), floor=st.floats(0, 1, **finite))
def test_masks_layer_floor(model, sparsity, floor):
    params = pt.prunable_parameters(model)
    D = sum(p.numel() for p in params.values())
    k = pt.pruned_count(sparsity, D)
    floors = {n: pt.pruned_count(floor, p.numel()) for n, p in params.items()}
    if D - sum(floors.values()) < k:
        with pytest.raises(ValueError, match="min_per_layer"):
            pt.magnitude_masks(model, sparsity, min_per_layer=floor)
        return
    masks = pt.magnitude_masks(model, sparsity, min_per_layer=floor)
    assert sum(int((~m).sum()) for m in masks.values()) == k
    for n, p in params.items():
        kept = masks[n].reshape(-1)
        assert int(kept.sum()) >= floors[n]
        # within a layer the kept weights are its largest, ties by index
        mags = p.detach().abs().reshape(-1)
        assert torch.equal(~kept, _reference_pruned(mags, int((~kept).sum())))
    # layers not held at their floor are pruned by the global threshold: any weight pruned in
    # a free layer is no larger than any weight kept in another free layer
    free = [n for n in params if int(masks[n].sum()) > floors[n]]
    pruned_free = [params[n].detach().abs()[~masks[n]] for n in free]
    kept_free = [params[n].detach().abs()[masks[n]] for n in free]
    pf = torch.cat(pruned_free) if pruned_free else torch.zeros(0)
    kf = torch.cat(kept_free) if kept_free else torch.zeros(0)
    if pf.numel() and kf.numel():
        assert pf.max() <= kf.min()


# -- the solver ------------------------------------------------------------------------------
weights_st = st.integers(2, 40).flatmap(
    lambda D: st.tuples(
        st.lists(st.floats(-5, 5, **finite), min_size=D, max_size=D),
        st.lists(st.floats(-2, 50, **finite), min_size=D, max_size=D),
    )
)
eps_st = st.floats(1e-3, 10.0, **finite)


def _brute_force_root(w: np.ndarray, eig: np.ndarray, eps: float) -> float:
    """Scan every pruned count k: the smallest k with k/D >= Φ(R_k), then the sign change of
    s − Φ(R(s)) on the step ((k−1)/D, k/D] (THEORY §3), Φ from geometry.projected_width_sq."""
    D = w.size
    sq = np.sort(w.astype(np.float64) ** 2)
    cum = np.concatenate([[0.0], np.cumsum(sq)])
    for k in range(1, D + 1):
        phi = pt.geometry.projected_width_sq(eig, None, eps, math.sqrt(cum[k])) / D
        if k / D - phi >= 0:
            return min(k / D, max((k - 1) / D, phi))
    raise AssertionError("no root")  # pragma: no cover - Φ <= 1 guarantees one


@SETTINGS
@given(data=weights_st, eps=eps_st)
def test_solver_root(data, eps):
    w, eig = (np.array(x) for x in data)
    pred = pt.critical_sparsity(torch.tensor(w), eig, eps, bootstrap=0)
    s = pred.sparsity
    assert 0.0 <= s <= 1.0
    assert pred.lower <= s <= pred.upper
    assert s == pytest.approx(_brute_force_root(w, eig, eps), abs=1e-12)
    # s = Φ(R(s)) where the root lies inside a step of R; otherwise s sits on a jump of R
    D = w.size
    phi = pt.width_fraction(eig, eps, pred.radius)
    k = pt.pruned_count(s, D)
    if (k - 1) / D + 1e-12 < s < k / D - 1e-12:
        assert s == pytest.approx(phi, abs=1e-9)


@SETTINGS
@given(data=weights_st, eps=eps_st, factor=st.floats(1.01, 100.0, **finite))
def test_solver_monotone_in_eps_and_scale(data, eps, factor):
    w, eig = (np.array(x) for x in data)
    assume(np.any(w != 0))
    base = pt.critical_sparsity(torch.tensor(w), eig, eps, bootstrap=0).sparsity
    more_eps = pt.critical_sparsity(torch.tensor(w), eig, eps * factor, bootstrap=0).sparsity
    bigger_w = pt.critical_sparsity(torch.tensor(w * factor), eig, eps, bootstrap=0).sparsity
    assert more_eps >= base - 1e-12  # a larger tolerance admits more pruning
    assert bigger_w <= base + 1e-12  # larger weights (larger R) admit less


# -- geometry --------------------------------------------------------------------------------
@SETTINGS
@given(
    eig=st.lists(st.floats(-1e3, 1e3, **finite), min_size=1, max_size=30),
    eps=st.floats(1e-3, 1e3, **finite),
    R=st.lists(st.floats(0, 1e3, **finite), min_size=2, max_size=6),
)
def test_projected_width_sq_decreasing_in_R_and_in_range(eig, eps, R):
    D = len(eig)
    R = np.sort(np.array(R))
    values = pt.geometry.projected_width_sq(eig, eps=eps, R=R)
    assert np.all(values > 0) and np.all(values <= D * (1 + 1e-12))
    assert np.all(np.diff(values) <= 1e-12 * D)
    assert pt.geometry.projected_width_sq(eig, eps=eps, R=0.0) == pytest.approx(D)


@SETTINGS
@given(radii=st.lists(st.floats(0, 1e300, **finite), min_size=1, max_size=40))
def test_ellipsoid_width_between_bounds(radii):
    """Also for radii whose squares under- or overflow (found by this test: 5e-197)."""
    w = pt.geometry.ellipsoid_width(radii)
    lo, hi = pt.geometry.ellipsoid_width_bounds(radii)
    assert lo * (1 - 1e-9) <= w <= hi * (1 + 1e-9)
    assert math.isfinite(hi)
    scale = max(radii)
    if scale > 0:
        assert hi == pytest.approx(scale * math.sqrt(sum((r / scale) ** 2 for r in radii)))


@SETTINGS
@given(D=st.integers(2, 10_000), alpha=st.floats(0, math.pi / 2, **finite))
def test_circular_cone_statdim_in_range(D, alpha):
    delta = pt.geometry.circular_cone_statdim(D, alpha)
    assert -1e-9 <= delta <= D + 1e-9


@SETTINGS
@given(d=st.integers(1, 2000), frac=st.floats(0, 1, **finite))
def test_l1_descent_cone_statdim_in_range(d, frac):
    s = min(d, int(frac * d))
    delta = pt.geometry.l1_descent_cone_statdim(d, s)
    assert -1e-9 <= delta <= d + 1e-9
