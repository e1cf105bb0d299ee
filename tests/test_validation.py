"""The validation study (phasetrans.validation): exact quadratic truth and a quick end-to-end run."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from phasetrans import validation as V


@pytest.mark.parametrize("weights", ["l1like", "gauss"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oneshot_losses_exact(weights, seed):
    H, w, lam = V.make_quadratic(12, weights=weights, spectrum="powerlaw", seed=seed)
    assert np.allclose(np.linalg.eigvalsh(H), lam, rtol=1e-10, atol=1e-12)
    losses = V.quadratic_oneshot_losses(H, w)
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
    H, w, _ = V.make_quadratic(D, weights=weights, spectrum="powerlaw", seed=seed, big_fraction=0.3)
    eps = 0.05 * float(0.5 * w @ H @ w)
    bf = V.brute_force_refit_threshold(H, w, eps)
    order = np.argsort(np.abs(w), kind="stable")
    for k in range(D + 1):
        keep = np.ones(D, dtype=bool)
        keep[order[:k]] = False
        assert V.schur_refit_loss(H, w, keep) == pytest.approx(bf["magnitude_loss"][k], rel=1e-7, abs=1e-12)
        assert bf["best_loss"][k] <= bf["magnitude_loss"][k] * (1 + 1e-9) + 1e-15
    thr = V.quadratic_thresholds(H, w, eps)
    assert thr["refit"] == bf["magnitude"]
    assert bf["best"] >= bf["magnitude"]  # the magnitude support may or may not be optimal
    assert thr["oneshot"] <= thr["refit"]  # re-fitting never hurts
    # the brute force really is over all supports: check one k by hand
    k = D // 2
    direct = min(
        V.schur_refit_loss(H, w, np.isin(np.arange(D), S)) for S in itertools.combinations(range(D), D - k)
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
