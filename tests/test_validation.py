"""The validation study (studies.validation) and the exact quadratic truth it measures against
(phasetrans.theory.quadratic): exact references, a quick end-to-end run, the command line."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from phasetrans.theory import quadratic as Q

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the study lives outside the package, at the repository root
    sys.path.insert(0, str(ROOT))

import studies.validation as V  # noqa: E402


@pytest.mark.parametrize("weights", ["l1like", "gauss"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oneshot_losses_exact(weights, seed):
    H, w, lam = Q.make_quadratic(12, weights=weights, spectrum="powerlaw", seed=seed)
    assert np.allclose(np.linalg.eigvalsh(H), lam, rtol=1e-10, atol=1e-12)
    losses = Q.quadratic_oneshot_losses(H, w)
    order = np.argsort(np.abs(w), kind="stable")
    for k in range(13):
        d = np.zeros(12)
        d[order[:k]] = w[order[:k]]
        assert losses[k] == pytest.approx(0.5 * d @ H @ d, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("weights", ["l1like", "gauss"])
@pytest.mark.parametrize("seed", range(4))
def test_schur_refit_against_brute_force(weights, seed):
    """Schur-complement re-fit loss vs least squares on H^(1/2) for every magnitude support, and
    the re-fit threshold of the magnitude supports vs the best over ALL supports (brute force)."""
    D = 10
    H, w, _ = Q.make_quadratic(D, weights=weights, spectrum="powerlaw", seed=seed, big_fraction=0.3)
    eps = 0.05 * float(0.5 * w @ H @ w)
    bf = Q.brute_force_refit_threshold(H, w, eps)
    order = np.argsort(np.abs(w), kind="stable")
    for k in range(D + 1):
        keep = np.ones(D, dtype=bool)
        keep[order[:k]] = False
        assert Q.schur_refit_loss(H, w, keep) == pytest.approx(bf["magnitude_loss"][k], rel=1e-7, abs=1e-12)
        assert bf["best_loss"][k] <= bf["magnitude_loss"][k] * (1 + 1e-9) + 1e-15
    thr = Q.quadratic_thresholds(H, w, eps)
    assert thr["refit"] == bf["magnitude"]
    assert bf["best"] >= bf["magnitude"]  # the magnitude support may or may not be optimal
    assert thr["oneshot"] <= thr["refit"]  # re-fitting never hurts
    # the brute force really is over all supports: check one k by hand
    k = D // 2
    direct = min(
        Q.schur_refit_loss(H, w, np.isin(np.arange(D), S)) for S in itertools.combinations(range(D), D - k)
    )
    assert direct == pytest.approx(bf["best_loss"][k], rel=1e-7, abs=1e-12)


def test_quadratic_case_prediction_exact_vs_slq():
    r = V.run_quadratic_case("quad_l1like_powerlaw", dim=200, num_steps=60, num_probes=8)
    assert abs(r["predicted"] - r["predicted_exact"]) < 0.02
    assert r["lower"] <= r["predicted"] <= r["upper"]
    assert r["measured_oneshot"] <= r["measured_refit"]


def test_quick_study(tmp_path):
    torch.set_num_threads(1)
    rc = V.main(["--quick", "--cases", "quad_l1like_powerlaw,mlp_l1_5e-3", "--out", str(tmp_path),
                 "--no-ablations"])
    assert rc == 0
    res = json.loads((tmp_path / "validation.json").read_text())
    names = [c["name"] for c in res["cases"]]
    assert names == ["quad_l1like_powerlaw", "mlp_l1_5e-3"]
    for c in res["cases"]:
        assert 0 <= c["predicted"] <= 1 and 0 <= c["measured_oneshot"] <= 1
        assert c["timings"]
    assert res["summary"]["max_abs_diff_points"] is not None
    md = (tmp_path / "VALIDATION.md").read_text()
    assert "| `mlp_l1_5e-3` |" in md and "GPU" in md
    assert (tmp_path / "figures" / "validation_scatter.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "validation_curve.png").stat().st_size > 1000


def test_bad_case_name(tmp_path):
    assert V.main(["--cases", "nope", "--out", str(tmp_path)]) == 2
    assert V.main(["--cases", "gpu_fc5", "--out", str(tmp_path)]) == 2


def test_quadratic_inputs_are_checked():
    H, w, _ = Q.make_quadratic(6, seed=0)
    with pytest.raises(ValueError, match="dim"):
        Q.make_quadratic(0)
    with pytest.raises(ValueError, match="spectrum"):
        Q.make_quadratic(5, spectrum="flat")
    with pytest.raises(ValueError, match="weights"):
        Q.make_quadratic(5, weights="uniform")
    with pytest.raises(TypeError, match="H"):
        Q.quadratic_oneshot_losses(H[:, :3], w)
    with pytest.raises(TypeError, match="w"):
        Q.schur_refit_loss(H, w[:3], np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="keep"):
        Q.schur_refit_loss(H, w, np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="eps"):
        Q.quadratic_thresholds(H, w, -1.0)
    with pytest.raises(ValueError, match="D <= 14"):
        Q.brute_force_refit_threshold(*Q.make_quadratic(15)[:2], 0.1)


def test_schur_refit_edges():
    """Nothing pruned: loss 0; everything pruned: L(0) = ½ w*ᵀHw*."""
    H, w, _ = Q.make_quadratic(8, weights="gauss", seed=3)
    assert Q.schur_refit_loss(H, w, np.ones(8, dtype=bool)) == 0.0
    assert Q.schur_refit_loss(H, w, np.zeros(8, dtype=bool)) == pytest.approx(0.5 * w @ H @ w, rel=1e-12)


def test_rerender_reproduces_the_document(tmp_path):
    """--rerender from a stored validation.json writes the same markdown and figures again."""
    src = ROOT / "docs" / "validation.json"
    if not src.is_file():
        pytest.skip("docs/validation.json not present")
    (tmp_path / "validation.json").write_bytes(src.read_bytes())
    assert V.main(["--rerender", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "VALIDATION.md").read_text()
    assert md.startswith("# Validation: theory against experiment")
    assert "python -m studies.validation --device cuda" in md
    for name in ("validation_scatter.png", "validation_curve.png", "validation_l1.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_study_runs_as_a_module_from_the_root():
    r = subprocess.run([sys.executable, "-m", "studies.validation", "--help"], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and "--rerender" in r.stdout and "python -m studies.validation" in r.stdout


def test_the_study_is_not_in_the_package():
    """The study left the library: no phasetrans.validation, and the wheel's package discovery
    (pyproject: include = ["phasetrans*"]) finds the library's packages but not studies/."""
    import importlib.util

    setuptools = pytest.importorskip("setuptools")
    assert importlib.util.find_spec("phasetrans.validation") is None
    packages = setuptools.find_packages(str(ROOT), include=["phasetrans*"])
    assert {"phasetrans", "phasetrans.report", "phasetrans.cli"} <= set(packages)
    assert not any(p.split(".")[0] == "studies" for p in packages)


def test_teacher_hessian_data_pairs_inputs_with_their_labels():
    """The teacher–student Hessian data must be the dataset's own (input, label) pairs: two
    passes over the shuffling training loader would pair inputs with another permutation's
    labels (the bug fixed in issue 15)."""
    from studies.validation.cases import case_data

    train, (X, y), (Xte, yte), _ = case_data({"model": "teacher"}, seed=0, device="cpu", data_root=None)
    assert train.sampler.__class__.__name__ == "RandomSampler"  # the loader does shuffle
    Xd, yd = train.dataset.tensors
    assert torch.equal(X, Xd) and torch.equal(y, yd)
    # every input keeps its own label: look each batch's rows up in the dataset
    index = {tuple(row.tolist()): int(lab) for row, lab in zip(Xd, yd)}
    xb, yb = next(iter(train))
    assert all(index[tuple(r.tolist())] == int(lab) for r, lab in zip(xb, yb))
    assert Xte.shape[0] == yte.shape[0] > 0


def test_oneshot_study_window_and_summary():
    """studies.oneshot: the measurement window on a grid and the summary statistics, exactly."""
    import studies.oneshot as O

    s = np.round(np.arange(0, 1.0001, 0.1), 4)
    ok = np.array([1, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0], bool)  # holds again after the first failure
    assert O.window_of(s, ok) == (0.2, 0.8)
    assert O.window_of(s, np.ones(11, bool)) == (1.0, 1.0)
    assert O.window_of(s, np.zeros(11, bool)) == (0.0, 0.0)

    def case(name, l1, paper, est, measured, window, ratio, heldout=False, acc=0.9):
        e = {k: {"sparsity": est} for k in ("forward_1", "forward_2", "forward_4", "quadratic_2")}
        return {"name": name, "arch": name.split("_")[0], "l1": l1, "schedule": "cos", "heldout": heldout,
                "dense_acc": acc, "paper": paper, "estimates": e, "measured": measured, "window": window,
                "ratio": ratio, "spike_mass": 0.95 if l1 else 0.01}

    cases = [case("a_0", 0.0, 0.70, 0.40, 0.35, [0.30, 0.60], 9.0),
             case("a_3", 3e-3, 0.97, 0.96, 0.95, [0.95, 0.95], 1.2),
             case("b_0", 0.0, 0.50, 0.50, 0.50, [0.50, 0.50], 5.0, acc=0.2),  # collapsed: left out
             case("h_0", 0.0, 0.80, 0.50, 0.90, [0.60, 0.90], 4.0, heldout=True),
             # a second held-out group: ratio low but s* 4 points past the spike -> not applies
             {**case("g_3", 3e-3, 0.99, 0.95, 0.93, [0.93, 0.93], 1.0, heldout=True), "group": "heldout2"},
             {**case("g_1", 1e-3, 0.96, 0.95, 0.94, [0.94, 0.94], 2.0, heldout=True), "group": "heldout2"}]
    summ = O.summarize(cases)
    assert summ["collapsed"] == ["b_0"]
    cal = summ["groups"]["calibration"]
    est = cal["estimators"]["forward, τ = 2ε (predict_oneshot default)"]
    assert est["n"] == 2 and est["max"] == pytest.approx(5.0) and est["median"] == pytest.approx(3.0)
    assert est["max_window"] == pytest.approx(1.0) and est["median_window"] == pytest.approx(0.5)
    rule = cal["rules"][O.SHIPPED]
    assert rule["n_true"] == 1 and rule["worst"] == pytest.approx(2.0) and rule["worst_case"] == "a_3"
    two = summ["groups"]["held-out 2"]["rules"][O.SHIPPED]  # g_3: spike 0.95 < 0.99 − 0.03
    assert two["n_true"] == 1 and two["worst_case"] == "g_1" and two["worst"] == pytest.approx(2.0)
    assert summ["targets"]["applies: worst |s* − one-shot| ≤ 3 where True, held-out 2"] is True
    held = summ["groups"]["held-out"]["estimators"]["paper s*"]
    assert held["n"] == 1 and held["max"] == pytest.approx(10.0) and held["max_window"] == pytest.approx(0.0)
    assert summ["targets"]["applies: worst |s* − one-shot| ≤ 3 where True, calibration"] is True
    assert summ["targets"]["estimator (median ≤ 2, max ≤ 5), calibration"] is False


def test_oneshot_study_reassess_recomputes_spike_and_applies(tmp_path):
    """--reassess: the spike mass from the stored weights, applies with the current rule from the
    stored ΔL₂ terms; a missing weights file is an error, not a retraining."""
    import studies.oneshot as O
    from phasetrans import models as pt_models
    from phasetrans.theory.applicability import spike_mass

    torch.manual_seed(0)
    model = pt_models.MLP(O.ARCHS["circles"]["sizes"])
    with torch.no_grad():  # 95% of the weights in the spike
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_((torch.rand_like(m.weight) < 0.05).float())
    torch.save({"state": model.state_dict(), "meta": {}}, tmp_path / f"{O.case_name('circles', 3e-3, 'cos')}.pt")
    w = torch.cat([m.weight.reshape(-1) for m in model.modules() if isinstance(m, torch.nn.Linear)])
    base = {"arch": "circles", "l1": 3e-3, "schedule": "cos", "eps": 0.01, "implied_l1": 3e-3,
            "first_order": 0.01, "second_order": 0.005, "spike_mass": 0.0, "applies": None}
    cases = [{**base, "paper": 0.96}, {**base, "paper": 0.99}, {**base, "paper": 0.96, "second_order": 0.02}]
    O.reassess(cases, str(tmp_path))
    assert all(c["spike_mass"] == pytest.approx(spike_mass(w)) for c in cases) and cases[0]["spike_mass"] > 0.9
    assert [c["applies"] for c in cases] == [True, False, False]  # past the spike; ratio 3 > 2.5
    assert cases[0]["warnings"] == [] and "near zero" in " ".join(cases[1]["warnings"])
    with pytest.raises(FileNotFoundError, match="weights"):
        O.reassess([{**base, "arch": "hastie", "paper": 0.9}], str(tmp_path))


def _spread(measured, ff, lh, floors, tfloors=(0.0, 0.0, 0.0), train=None):
    """A stored ``spread`` entry: find_threshold's value, the window (first failure, last holding)
    and the error floors of the three rules (fractions)."""
    def one(values, fl):
        rules = ("find_threshold", "first_failure", "last_holding")
        return {"measured": values[0], "window": list(values[1:]), "error_floor": dict(zip(rules, fl)),
                "intervals": {r: [v - 0.02, v + 0.02] for r, v in zip(rules, values)}}
    train = train or (measured, ff, lh)
    return {"test": one((measured, ff, lh), floors), "test_tol1pt": one((measured, ff, lh), tfloors),
            "train": one(train, floors), "train_tol1pt": one(train, tfloors)}


def test_oneshot_study_attainability_floors_and_figure(tmp_path):
    """studies.oneshot: the error floors of the measurement per group, the smaller rule's floor
    deciding whether the estimator target is attainable, the training-set protocol's distance, and
    the floor figure."""
    import studies.oneshot as O
    from phasetrans.report.plots import plot_measurement_floor

    def case(name, est, spread, applies=False):
        e = {k: {"sparsity": est} for k in ("forward_1", "forward_2", "forward_4", "quadratic_2")}
        return {"name": name, "arch": name, "l1": 0.0, "schedule": "cos", "heldout": False, "dense_acc": 0.9,
                "paper": 0.8, "estimates": e, "estimate": est, "measured": spread["test"]["window"][1],
                "window": spread["test"]["window"], "ratio": 9.0, "spike_mass": 0.1, "applies": applies,
                "spread": spread}

    cases = [case("a", 0.40, _spread(0.50, 0.30, 0.60, (0.06, 0.09, 0.07), train=(0.45, 0.50, 0.70))),
             case("b", 0.50, _spread(0.51, 0.50, 0.52, (0.01, 0.01, 0.06))),
             case("c", 0.95, _spread(0.95, 0.95, 0.95, (0.0, 0.0, 0.0)), applies=True)]
    a = O.summarize(cases)["groups"]["calibration"]["attainability"]
    assert a["n"] == 3
    m = a["measurements"]["tolerance 0, find_threshold (the study's measured value)"]
    assert m["floor"]["max"] == pytest.approx(6.0) and m["floor"]["worst"] == "a"
    assert m["floor"]["median"] == pytest.approx(1.0) and m["floor"]["over5"] == 1
    assert m["interval_width"] == pytest.approx(4.0)
    assert m["train_protocol_error"]["max"] == pytest.approx(5.0)  # 0.45 on training vs 0.50 on test
    assert m["estimate_error"]["max"] == pytest.approx(10.0) and m["paper_error"]["max"] == pytest.approx(30.0)
    lh = a["measurements"]["tolerance 0, last holding (reference code)"]
    assert lh["floor"]["max"] == pytest.approx(7.0) and lh["train_protocol_error"]["max"] == pytest.approx(10.0)
    ff = a["measurements"]["tolerance 0, first failure"]
    assert ff["floor"]["over5"] == 1 and ff["train_protocol_error"]["max"] == pytest.approx(20.0)
    assert m["best_coverage_5"] is None  # not recorded: no column
    for c, cover in zip(cases, (0.4, 0.95, 1.0)):
        c["spread"]["test"]["best_coverage"] = {"find_threshold": {"2": cover / 2, "5": cover}}
    m = O.summarize(cases)["groups"]["calibration"]["attainability"]["measurements"][
        "tolerance 0, find_threshold (the study's measured value)"]
    assert m["best_coverage_5"] == {"min": 0.4, "under90": 1, "worst": "a"}
    key = ("measured value reproducible enough for the estimator target (bootstrap error floor: "
           "median ≤ 2, max ≤ 5 points), calibration")
    assert O.summarize(cases)["targets"][key] is False
    assert O.summarize(cases[1:])["targets"][key] is True
    fig = plot_measurement_floor(cases, path=tmp_path / "floor.png")
    assert (tmp_path / "floor.png").stat().st_size > 0 and len(fig.axes) == 2
    with pytest.raises(TypeError, match="spread"):
        plot_measurement_floor([{k: v for k, v in cases[0].items() if k != "spread"}])
