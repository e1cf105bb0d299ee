"""The criterion argument wired through the pruning calls (issue 19): ``criterion_masks``,
``pruned`` (OBS's update inside, bit-exact restore), ``find_threshold``, ``sweep``,
``pruning_curve``, ``validate`` and the CLI; ``pruning_radius`` (R(s) per criterion) against a
direct computation; a criterion prepared once per call; the default path unchanged."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint
from phasetrans.cli import main
from phasetrans.prune.criteria import prepare_criterion, score_masks

D64 = torch.float64
NAMES = ["magnitude", "fisher_taylor", "obs", "layer_adaptive"]
OPTIONS = {"layer_adaptive": {"levels": 4}, "obs": {"damp": 1e-2}}


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).to(D64)


def stateful(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).to(D64)
    m.train()
    with torch.no_grad():
        m(torch.randn(8, 5, dtype=D64))
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    m[0].bias.requires_grad_(False)
    return m


def batches(seed=1, sizes=(6, 5, 4)):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 5, generator=g, dtype=D64), torch.randint(3, (n,), generator=g))
            for n in sizes]


DATA = batches()


def weights(model):
    return list(pt.prunable_parameters(model).items())


def prepared(name, model):
    return prepare_criterion(name, model, data=DATA, loss_fn=F.cross_entropy, **OPTIONS.get(name, {}))


def by_hand(model, crit, s):
    """A copy of ``model`` at ``crit``'s pruned point, built from its masks and weights."""
    m = copy.deepcopy(model)
    masks = crit.masks(s)
    new = crit.weights(masks)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if new is not None and n in new:
                p.copy_(new[n])
            if n in masks:
                p.mul_(masks[n])
    return m, masks


def accuracy(m):
    return pt.evaluate_accuracy(m, DATA)


def flat(model):
    return torch.cat([p.detach().reshape(-1) for _, p in weights(model)])


# ---------------------------------------------------------------- masks and pruned


def test_default_and_magnitude_criterion_are_magnitude_masks():
    model = mlp()
    for s in (0.0, 0.3, 0.71, 0.85):
        ref = pt.magnitude_masks(model, s, min_per_layer=0.1)
        for got in (pt.criterion_masks(model, s, min_per_layer=0.1),
                    pt.criterion_masks(model, s, prepared("magnitude", model), min_per_layer=0.1)):
            assert list(got) == list(ref) and all(torch.equal(got[n], ref[n]) for n in ref)


@pytest.mark.parametrize("name", NAMES)
def test_pruned_sets_the_criterions_point_and_restores_bit_for_bit(name):
    model = stateful()
    before = model_fingerprint(model)
    crit = prepared(name, model)
    ref, masks = by_hand(model, crit, 0.4)
    with pt.pruned(model, 0.4, criterion=name, data=DATA, loss_fn=F.cross_entropy,
                   criterion_options=OPTIONS.get(name)) as got:
        assert all(torch.equal(got[n], masks[n]) for n in masks)
        for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
            assert torch.equal(p, q), n
        if name == "obs":  # the kept weights moved (the update), the pruned ones are exactly 0
            kept = torch.cat([m.reshape(-1) for m in got.values()])
            assert not torch.equal(flat(model)[kept], flat(stateful())[kept])
            assert bool((flat(model)[~kept] == 0).all())
        with torch.no_grad():
            model[0].weight.add_(1.0)  # changes inside the block are undone too
        model.eval()
    assert fingerprints_equal(before, model_fingerprint(model))
    with pytest.raises(KeyboardInterrupt):
        with pt.pruned(model, 0.6, criterion=crit):
            raise KeyboardInterrupt
    assert fingerprints_equal(before, model_fingerprint(model))


# ---------------------------------------------------------------- R(s)


def dense_obs_point(model, s, lam):
    """OBS's pruned point from the dense damped inverse of the batch-gradient Fisher (float64)."""
    rows = []
    for x, y in DATA:
        g = torch.autograd.grad(F.cross_entropy(model(x), y), [p for _, p in weights(model)])
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    G = torch.stack(rows)
    finv = torch.linalg.inv(lam * torch.eye(G.shape[1], dtype=D64) + G.T @ G / G.shape[0])
    w = flat(model)
    rho = w.square() / (2 * finv.diagonal())
    k = -(-round(s * 100) * w.numel() // 100)
    q = torch.sort(rho, stable=True).indices[:k]
    e = torch.zeros_like(w)
    e[q] = w[q] / finv.diagonal()[q]
    new = w - finv @ e
    new[q] = 0
    return new


def test_pruning_radius_per_criterion_against_direct_computation():
    model = mlp(3)
    w = flat(model)
    grid = [0.0, 0.2, 0.5, 0.8, 1.0]
    # magnitude: the magnitude curve sqrt(sum of the ⌈sD⌉ smallest w²)
    torch.testing.assert_close(torch.tensor(pt.pruning_radius(model, grid), dtype=D64),
                               torch.tensor([float(pt.MagnitudeCurve(model).radius(s)) for s in grid],
                                            dtype=D64), rtol=1e-12, atol=1e-15)
    # Fisher–Taylor and a user's scores: sqrt of the pruned w², the set ranked by hand
    grads = []
    for x, y in DATA:
        for i in range(x.shape[0]):
            g = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]),
                                    [p for _, p in weights(model)])
            grads.append(torch.cat([t.reshape(-1) for t in g]))
    G = torch.stack(grads)
    fts = (w * G.mean(0) + 0.5 * G.square().mean(0) * w.square()).abs()
    for s in grid:
        k = -(-round(s * 10) * w.numel() // 10)
        ref = float(w[torch.sort(fts, stable=True).indices[:k]].square().sum()) ** 0.5
        got = pt.pruning_radius(model, s, criterion="fisher_taylor", data=DATA, loss_fn=F.cross_entropy)
        assert got == pytest.approx(ref, rel=1e-12, abs=1e-15)
    # OBS: the distance includes the update of the kept weights (dense formula)
    for s in (0.3, 0.6):
        ref = float((w - dense_obs_point(model, s, 1e-2)).norm())
        got = pt.pruning_radius(model, s, "obs", DATA, F.cross_entropy, criterion_options={"damp": 1e-2})
        assert got == pytest.approx(ref, rel=1e-8)
        assert got > pt.pruning_radius(model, s)  # magnitude is the closest point with ⌈sD⌉ zeros
    # layer-adaptive: the pruned w² of its masks
    crit = prepared("layer_adaptive", model)
    for s in grid:
        masks = crit.masks(s)
        ref = float(sum(p.detach()[~masks[n]].square().sum() for n, p in weights(model))) ** 0.5
        assert pt.pruning_radius(model, s, crit) == pytest.approx(ref, rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------- threshold and sweep


@pytest.mark.parametrize("name", NAMES)
def test_find_threshold_with_each_criterion_is_the_brute_force_answer(name):
    """Metric ``−‖w − w*‖²`` with tolerance t: holds iff ``R_c(s)² ≤ t``; with t between a
    prefix of the grid and the rest (R_c need not be monotone: layer-adaptive), the search must
    return the brute-force answer."""
    model = mlp(1)
    w0 = flat(model).clone()

    def closeness(m):
        return -float((flat(m) - w0).square().sum())

    kwargs = dict(data=DATA, loss_fn=F.cross_entropy, criterion_options=OPTIONS.get(name))
    grid = [j / 20 for j in range(21)]
    radii = pt.pruning_radius(model, grid, criterion=name, **kwargs)
    j = next(j for j in range(14, 3, -1) if max(radii[: j + 1]) < min(radii[j + 1 :]))
    tol = (max(radii[: j + 1]) ** 2 + min(radii[j + 1 :]) ** 2) / 2
    thr = pt.find_threshold(model, closeness, tolerance=tol, resolution=0.05, criterion=name, **kwargs)
    assert thr.sparsity == pytest.approx(grid[j])
    assert thr.extra == ({} if name == "magnitude" else {"criterion": name})
    for s, metric in thr.points:  # every evaluated point is the criterion's pruned point
        assert metric == pytest.approx(-radii[round(s * 20)] ** 2, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_sweep_with_each_criterion_matches_pruning_by_hand(name, tmp_path):
    model = stateful(2)
    before = model_fingerprint(model)
    crit = prepared(name, model)
    grid = [0.0, 0.25, 0.5, 0.9]
    got = pt.sweep(model, accuracy, grid, path=tmp_path / "s.jsonl", criterion=name, data=DATA,
                   loss_fn=F.cross_entropy, criterion_options=OPTIONS.get(name))
    ref = [(s, accuracy(by_hand(model, crit, s)[0])) for s in grid]
    assert got == ref
    header = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])["header"]
    assert ("criterion" in header) == (name != "magnitude")
    assert fingerprints_equal(before, model_fingerprint(model))


def test_a_criterion_is_prepared_once_per_call():
    calls = [0]

    def counting_loss(o, t):
        calls[0] += 1
        return F.cross_entropy(o, t)

    model = mlp()
    pt.sweep(model, accuracy, [0.1, 0.5], criterion="fisher_taylor", data=DATA, loss_fn=counting_loss)
    two = calls[0]
    calls[0] = 0
    pt.sweep(model, accuracy, [0.1, 0.3, 0.5, 0.7, 0.9], criterion="fisher_taylor", data=DATA,
             loss_fn=counting_loss)
    assert calls[0] == two > 0
    scored = [0]

    def scores(m):
        scored[0] += 1
        return {n: p.detach().abs().flip(-1) for n, p in weights(m)}

    thr = pt.find_threshold(model, accuracy, resolution=0.05, criterion=scores)
    assert scored[0] == 1 and thr.extra == {"criterion": "scores"}
    ref = score_masks(scores(model), 0.4)
    got = pt.criterion_masks(model, 0.4, scores)
    assert all(torch.equal(got[n], ref[n]) for n in ref)


def test_default_results_unchanged_and_loss_threshold_takes_its_data():
    model = mlp(4)
    a = pt.find_threshold(model, accuracy, resolution=0.01)
    b = pt.find_threshold(model, accuracy, resolution=0.01, criterion="magnitude", data=DATA,
                          loss_fn=F.cross_entropy)
    assert a == b
    lt = pt.find_loss_threshold(model, F.cross_entropy, DATA, eps=0.05, resolution=0.05,
                                criterion="obs", criterion_options={"damp": 1e-2})
    crit = prepared("obs", model)
    loss = pt.evaluate_loss(by_hand(model, crit, lt.sparsity)[0], F.cross_entropy, DATA)
    assert loss <= -lt.baseline + 0.05 and lt.extra["criterion"] == "obs"


def test_pruning_curve_and_validate_with_a_criterion():
    model = stateful(5)
    before = model_fingerprint(model)
    crit = prepared("obs", model)
    curve = pt.pruning_curve(model, [0.2, 0.6], DATA, loss_fn=F.cross_entropy, criterion=crit)
    assert curve["accuracy"] == [accuracy(by_hand(model, crit, s)[0]) for s in (0.2, 0.6)]
    report = pt.validate(model, F.cross_entropy, DATA, DATA, eps=0.1, num_steps=4, num_probes=2,
                         curve_points=3, resolution=0.05, predict_kwargs={"bootstrap": 0},
                         criterion="fisher_taylor")
    assert report.config["criterion"] == "fisher_taylor" and "criterion" in report.timings
    assert report.threshold.extra == {"criterion": "fisher_taylor"}
    assert "criterion fisher_taylor" in report.summary()
    assert fingerprints_equal(before, model_fingerprint(model))


# ---------------------------------------------------------------- the command line


def test_cli_criterion(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "w.pt"
    torch.save(pt.models.digits_mlp().state_dict(), path)
    code = main(["sweep", "--checkpoint", str(path), "--sparsities", "0,0.5", "--criterion",
                 "fisher_taylor", "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    d = json.loads(out)
    assert d["criterion"] == "fisher_taylor" and [p[0] for p in d["points"]] == [0.0, 0.5]
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--checkpoint", str(path), "--criterion", "snip", "--quiet"])
    assert exc.value.code == 2
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"criterion": "snip", "checkpoint": str(path)}))
    assert main(["validate", "--config", str(cfg), "--quiet", "--num-steps", "3"]) == 2
    assert "criterion" in capsys.readouterr().err


def test_plot_criteria(tmp_path):
    from phasetrans.report.plots import plot_criteria

    case = {"name": "c", "predicted": 0.7, "lower": 0.6, "upper": 0.8, "dense_metric": 0.9,
            "note": "theory applies",
            "criteria": [{"name": n, "threshold": 0.5 + 0.05 * i,
                          "curve": {"sparsity": [0.0, 0.5, 1.0], "accuracy": [0.9, 0.9, 0.1]}}
                         for i, n in enumerate(NAMES)]}
    fig = plot_criteria([case, case], path=tmp_path / "c.png")
    assert len(fig.axes) == 2 and (tmp_path / "c.png").stat().st_size > 0
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["theory applies"]
    with pytest.raises(TypeError, match="cases"):
        plot_criteria([])
