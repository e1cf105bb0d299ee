"""Validation study: the predicted critical sparsity against measured pruning thresholds.

The paper's central table (Zhang, Zhang, Sun, Liu, NeurIPS 2024, arXiv:2306.05857: predicted vs
actual critical sparsity) redone on what runs here, reproducibly::

    python -m phasetrans.validation [--out docs] [--quick] [--cases NAME,...] [--seed 0]
                                    [--device cpu|cuda] [--data-root DIR]

writes ``OUT/VALIDATION.md`` (tables, figures, discussion), ``OUT/validation.json`` (every number)
and ``OUT/figures/validation_*.png``, atomically.

Cases
- ``quad_*``: quadratic losses ``L(w) = ½ (w − w*)ᵀ H (w − w*)`` with a chosen spectrum and a
  Haar-random rotation. The one-shot loss is exact, and the best loss on a support ``S`` is the
  Schur complement ``½ w*_Pᵀ (H/H_SS) w*_P`` (``P`` the pruned set), so both the one-shot and the
  re-fit thresholds over the magnitude supports are exact (:func:`quadratic_thresholds`).
- ``mlp_*``, ``mlpwide_*``, ``lenet_*``, ``teacher_*``: networks trained with an l1 penalty
  (:func:`~phasetrans.train_l1`), predicted with SLQ (and exact eigenvalues where ``D`` allows),
  measured by one-shot global magnitude pruning (:func:`~phasetrans.find_threshold`).
- ``gpu_*``: FC5 / ResNet-20 on synthetic CIFAR-shaped data (or CIFAR-10 from ``--data-root``);
  need ``--device cuda``.
Ablations (``ablation_*``) run on the 64-64-32-10 digits MLP.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import data as pt_data
from . import models as pt_models
from ._bisect import last_true
from ._io import atomic_write_json, atomic_write_text
from .operators import DenseOperator, HessianOperator
from .prediction import critical_sparsity, estimate_eps, estimate_zero_mass
from .pruning import apply_masks, pruned, pruned_count
from .spectral import slq
from .threshold import find_loss_threshold, find_threshold
from .training import evaluate_accuracy, evaluate_loss, train_l1

__all__ = [
    "make_quadratic",
    "quadratic_oneshot_losses",
    "schur_refit_loss",
    "quadratic_thresholds",
    "brute_force_refit_threshold",
    "run_quadratic_case",
    "run_network_case",
    "run_study",
    "main",
]

EXACT_MAX_DIM = 7000  # dense Hessian + eigvalsh up to this D (6464: ~30 s on one thread)


# ==========================================================================================
# quadratics with exact truth
# ==========================================================================================
def make_quadratic(dim: int, weights: str = "l1like", spectrum: str = "powerlaw", seed: int = 0,
                   big_fraction: float = 0.15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, w*, eigenvalues)``: ``H = Q diag(λ) Qᵀ`` (``Q`` Haar-random) and planted weights.

    ``spectrum``: ``"powerlaw"`` ``λ_i = 10 i^-1``; ``"bulk"`` 10 % outliers uniform in [1, 100]
    and a bulk at 1e-3 (the shape of trained-network spectra). ``weights``: ``"l1like"`` (a
    ``big_fraction`` of entries N(0, 1), the rest Laplace of scale 1e-3: what l1 training leaves)
    or ``"gauss"`` (dense N(0, 1))."""
    rng = np.random.default_rng(seed)
    if spectrum == "powerlaw":
        lam = 10.0 / np.arange(1, dim + 1, dtype=np.float64)
    elif spectrum == "bulk":
        lam = np.full(dim, 1e-3)
        lam[: max(1, dim // 10)] = rng.uniform(1.0, 100.0, max(1, dim // 10))
    else:
        raise ValueError(f"spectrum must be 'powerlaw' or 'bulk', got {spectrum!r}")
    Q, R = np.linalg.qr(rng.standard_normal((dim, dim)))
    Q = Q * np.sign(np.diag(R))
    H = (Q * lam) @ Q.T
    H = 0.5 * (H + H.T)
    if weights == "l1like":
        w = rng.laplace(0.0, 1e-3, dim)
        big = rng.permutation(dim)[: max(1, round(big_fraction * dim))]
        w[big] = rng.standard_normal(big.size)
    elif weights == "gauss":
        w = rng.standard_normal(dim)
    else:
        raise ValueError(f"weights must be 'l1like' or 'gauss', got {weights!r}")
    return H, w, np.sort(lam)


def _magnitude_order(w: np.ndarray) -> np.ndarray:
    return np.argsort(np.abs(w), kind="stable")  # smallest first: pruned first


def quadratic_oneshot_losses(H: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``L(w^(k))`` for ``k = 0..D`` pruned (magnitude order): ``½ d_kᵀ H d_k``, ``d_k`` the
    ``k`` smallest entries of ``w*`` (exact, all ``k`` at once by prefix sums)."""
    order = _magnitude_order(w)
    wp = w[order]
    P = H[np.ix_(order, order)] * np.outer(wp, wp)
    # S_k = S_{k-1} + 2 Σ_{j<k} P_kj + P_kk  (k 1-based)
    row = np.tril(P, -1).sum(axis=1) * 2.0 + np.diag(P)
    return 0.5 * np.concatenate([[0.0], np.cumsum(row)])


def schur_refit_loss(H: np.ndarray, w: np.ndarray, keep: np.ndarray) -> float:
    """``min {L(v) : v_P = 0} = ½ w*_Pᵀ (H_PP − H_PS H_SS⁻¹ H_SP) w*_P`` (``keep`` = the support
    ``S`` as a boolean mask, ``P`` its complement)."""
    keep = np.asarray(keep, dtype=bool)
    P = ~keep
    if not P.any():
        return 0.0
    wP = w[P]
    HPP = H[np.ix_(P, P)]
    if not keep.any():
        return float(0.5 * wP @ HPP @ wP)
    HSS = H[np.ix_(keep, keep)]
    HSP = H[np.ix_(keep, P)]
    x = np.linalg.solve(HSS, HSP @ wP)
    return float(0.5 * (wP @ HPP @ wP - (HSP @ wP) @ x))


def _largest_holding(holds, D: int) -> int:
    """Largest ``k`` in [0, D] with ``holds(k)`` for a monotone predicate true at 0 (bisection)."""
    return D if holds(D) else last_true(holds, 0, D)


def quadratic_thresholds(H: np.ndarray, w: np.ndarray, eps: float) -> dict:
    """Exact thresholds over the magnitude supports of ``w*``:

    - ``oneshot``: largest ``k/D`` with ``L(w^(j)) ≤ ε`` for all ``j ≤ k`` (first crossing);
      ``oneshot_last``: largest ``k/D`` with ``L(w^(k)) ≤ ε`` (they differ only if the one-shot
      loss is not monotone along the magnitude path);
    - ``refit``: largest ``k/D`` with ``min_{v: v_P=0} L(v) ≤ ε`` on the magnitude support
      (monotone: the supports are nested), by bisection on ``k`` with :func:`schur_refit_loss`.
    """
    D = w.size
    losses = quadratic_oneshot_losses(H, w)
    ok = losses <= eps
    first_fail = int(np.argmin(ok)) if not ok.all() else D + 1
    k_one = first_fail - 1
    k_last = int(np.nonzero(ok)[0].max())
    order = _magnitude_order(w)

    def refit_holds(k: int) -> bool:
        keep = np.ones(D, dtype=bool)
        keep[order[:k]] = False
        return schur_refit_loss(H, w, keep) <= eps

    k_ref = _largest_holding(refit_holds, D)
    return {"oneshot": k_one / D, "oneshot_last": k_last / D, "refit": k_ref / D,
            "oneshot_count": k_one, "refit_count": k_ref, "oneshot_losses": losses}


def brute_force_refit_threshold(H: np.ndarray, w: np.ndarray, eps: float) -> dict:
    """Brute force for tiny ``D`` (≤ 14): for every ``k``, the minimum re-fit loss over ALL
    supports with ``k`` pruned (``C(D, k)`` of them), each minimised directly by least squares
    on ``H^{1/2}`` (a path independent of the Schur formula). Returns the largest ``k/D`` with
    ``min ≤ ε`` (``best``), the per-``k`` minima, the magnitude-support losses by least squares,
    and whether the magnitude support attains the minimum at each ``k``."""
    D = w.size
    if D > 14:
        raise ValueError(f"brute force over all supports needs D <= 14, got {D}")
    lam, V = np.linalg.eigh(H)
    A = (V * np.sqrt(np.clip(lam, 0, None))) @ V.T  # H^{1/2}
    b = A @ w

    def lsq_loss(keep_idx: tuple[int, ...]) -> float:
        if not keep_idx:
            return float(0.5 * b @ b)
        cols = A[:, list(keep_idx)]
        x, *_ = np.linalg.lstsq(cols, b, rcond=None)
        r = cols @ x - b
        return float(0.5 * r @ r)

    order = _magnitude_order(w)
    best_loss, mag_loss, mag_optimal = [], [], []
    for k in range(D + 1):
        m = min(lsq_loss(tuple(sorted(set(range(D)) - set(P)))) for P in itertools.combinations(range(D), k))
        keep_mag = tuple(sorted(order[k:].tolist()))
        ml = lsq_loss(keep_mag)
        best_loss.append(m)
        mag_loss.append(ml)
        mag_optimal.append(bool(ml <= m * (1 + 1e-9) + 1e-15))
    best_ok = np.asarray(best_loss) <= eps
    k_best = int(np.nonzero(best_ok)[0].max())
    mag_ok = np.asarray(mag_loss) <= eps
    k_mag = int(np.nonzero(mag_ok)[0].max())
    return {"best": k_best / D, "magnitude": k_mag / D, "best_loss": best_loss,
            "magnitude_loss": mag_loss, "magnitude_optimal": mag_optimal}


QUAD_CASES = {
    "quad_l1like_powerlaw": dict(weights="l1like", spectrum="powerlaw"),
    "quad_l1like_bulk": dict(weights="l1like", spectrum="bulk"),
    "quad_gauss_powerlaw": dict(weights="gauss", spectrum="powerlaw"),
    "quad_gauss_bulk": dict(weights="gauss", spectrum="bulk"),
}


def run_quadratic_case(name: str, dim: int = 400, seed: int = 0, eps_fraction: float = 0.01,
                       num_steps: int = 80, num_probes: int = 10) -> dict:
    """One quadratic case. ``ε = eps_fraction · L(0)`` (``L(0) = ½ w*ᵀHw*``, the loss of the
    empty network). Predicted with exact eigenvalues and with SLQ on a ``DenseOperator``."""
    cfg = QUAD_CASES[name]
    times: dict[str, float] = {}
    t = time.perf_counter()
    H, w, lam = make_quadratic(dim, seed=seed, **cfg)
    L0 = float(0.5 * w @ H @ w)
    eps = eps_fraction * L0
    times["build"] = time.perf_counter() - t
    t = time.perf_counter()
    spec = slq(DenseOperator(torch.from_numpy(H)), num_steps=min(num_steps, dim), num_probes=num_probes,
               seed=seed)
    times["slq"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = critical_sparsity(torch.from_numpy(w), spec, eps, seed=seed)
    pred_exact = critical_sparsity(torch.from_numpy(w), torch.from_numpy(lam), eps, bootstrap=0)
    times["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    thr = quadratic_thresholds(H, w, eps)
    times["measure"] = time.perf_counter() - t
    losses = thr.pop("oneshot_losses")
    grid = np.linspace(0, 1, 101)
    curve = {"sparsity": grid.tolist(),
             "loss": [float(losses[pruned_count(float(s), dim)]) for s in grid]}
    return {
        "name": name, "kind": "quadratic", "in_target": cfg["weights"] == "l1like", "dim": dim, "eps": eps,
        "eps_source": f"{eps_fraction} * L(0)", "config": {**cfg, "seed": seed},
        "predicted": pred.sparsity, "predicted_exact": pred_exact.sparsity,
        "lower": pred.lower, "upper": pred.upper,
        "predicted_std": (pred.uncertainty or {}).get("std"),
        "measured_oneshot": thr["oneshot"], "measured_oneshot_tol1": None,
        "measured_loss": thr["oneshot"], "measured_oneshot_last": thr["oneshot_last"],
        "measured_refit": thr["refit"], "measured_refit_loss": thr["refit"], "dense_metric": None, "curve": curve, "timings": times,
        "measure_note": "exact: one-shot L(w^(s)) <= eps (first crossing); re-fit by Schur complement",
    }


# ==========================================================================================
# networks
# ==========================================================================================
NET_CASES: dict[str, dict] = {
    "mlp_l1_2e-3": dict(model="mlp", hidden=(64, 32), l1=2e-3, epochs=100),
    "mlp_l1_3e-3": dict(model="mlp", hidden=(64, 32), l1=3e-3, epochs=100),
    # l1 = 1e-2 under-fits this MLP (dense test accuracy 0.736): 5e-3 is the strongest that trains
    "mlp_l1_5e-3": dict(model="mlp", hidden=(64, 32), l1=5e-3, epochs=100),
    "mlpwide_l1_2e-3": dict(model="mlp", hidden=(128, 64), l1=2e-3, epochs=100),
    "mlpwide_l1_3e-3": dict(model="mlp", hidden=(128, 64), l1=3e-3, epochs=100),
    # l1 = 1e-2 (wide MLP) and 3e-3 (LeNet) collapse these nets to all-zero weights (dense accuracy
    # 0.078): every sparsity then "holds" trivially, so they are not used
    "lenet_l1_1e-3": dict(model="lenet", l1=1e-3, epochs=100),
    "teacher_l1_3e-3": dict(model="teacher", l1=3e-3, epochs=100),
    "gpu_fc5": dict(model="fc5", l1=1e-4, epochs=30, gpu=True),
    "gpu_resnet20": dict(model="resnet20", l1=1e-4, epochs=30, gpu=True),
}
ABLATION_L1 = [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
ABLATION_SCALES = [0.25, 0.5, 1.0, 2.0, 4.0]


def _case_data(cfg: dict, seed: int, device: str, data_root: str | None):
    """``(train loader at batch 64, hessian data, test tensors, make_model)``."""
    kind = cfg["model"]
    if kind in ("mlp", "lenet"):
        flat = kind == "mlp"
        train, _ = pt_data.digits(batch_size=64, seed=seed, flatten=flat)
        Xtr, ytr, Xte, yte = pt_data.digits_tensors(flatten=flat)
        if kind == "mlp":
            def make():
                return pt_models.digits_mlp(hidden=cfg["hidden"])
        else:
            def make():
                return pt_models.lenet(in_channels=1, num_classes=10, image_size=8)
        return train, (Xtr, ytr), (Xte, yte), make
    if kind == "teacher":
        train, test, _ = pt_data.teacher_student(num_samples=3000, dim_in=20, hidden=(32,), num_classes=4,
                                                 teacher_sparsity=0.8, seed=seed, batch_size=64)
        X = torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])
        Xte = torch.cat([x for x, _ in test]), torch.cat([y for _, y in test])

        def make():
            return pt_models.MLP((20, 64, 4))
        return train, X, Xte, make
    # GPU cases: synthetic CIFAR-shaped data, or CIFAR-10 from data_root
    if data_root is not None:
        train, test = pt_data.cifar10(data_root, batch_size=128)
    else:
        train, test = pt_data.synthetic_images(num_samples=10_000, batch_size=128, seed=seed)
    Xte = torch.cat([x for x, _ in test]), torch.cat([y for _, y in test])

    def make():
        return pt_models.fc5() if kind == "fc5" else pt_models.resnet20()
    return train, train, Xte, make


def _batch_eps(model: nn.Module, loss_fn, loader) -> float:
    """ε = std of the mini-batch training losses at ``w*`` (the reference code's choice)."""
    return estimate_eps(model, loss_fn, loader)


def _thresholds(model, loss_fn, train, test, eps, refit_steps, n_test, times) -> dict:
    acc = lambda m: evaluate_accuracy(m, test)  # noqa: E731
    out: dict[str, Any] = {}
    t = time.perf_counter()
    thr = find_threshold(model, acc)
    times["threshold"] = time.perf_counter() - t
    out["oneshot"] = thr
    t = time.perf_counter()
    out["tol1"] = find_threshold(model, acc, baseline=thr.baseline, tolerance=1.0 / n_test + 1e-12)
    times["threshold_tol1"] = time.perf_counter() - t
    t = time.perf_counter()
    out["loss"] = find_loss_threshold(model, loss_fn, train, eps)
    times["threshold_loss"] = time.perf_counter() - t
    if refit_steps:
        t = time.perf_counter()
        out["refit"] = find_threshold(model, acc, baseline=thr.baseline, refit=refit_steps,
                                      refit_loss_fn=loss_fn, refit_data=train)
        times["threshold_refit"] = time.perf_counter() - t
        t = time.perf_counter()
        out["refit_loss"] = find_loss_threshold(model, loss_fn, train, eps, refit=refit_steps)
        times["threshold_refit_loss"] = time.perf_counter() - t
    return out


def train_case(cfg: dict, seed: int, device: str, data_root: str | None, epochs: int | None = None):
    train, hdata, test, make = _case_data(cfg, seed, device, data_root)
    torch.manual_seed(seed)
    model = make().to(device)
    t = time.perf_counter()
    hist = train_l1(model, nn.CrossEntropyLoss(), train, l1=cfg["l1"], epochs=epochs or cfg["epochs"],
                    lr=cfg.get("lr", 0.05), seed=seed, progress=False)
    return model, train, hdata, test, time.perf_counter() - t, hist


def run_network_case(name: str, seed: int = 0, quick: bool = False, device: str = "cpu",
                     data_root: str | None = None, exact: bool = True, refit_steps: int = 100,
                     num_steps: int = 80, num_probes: int = 10, keep_model: bool = False,
                     cfg: dict | None = None) -> dict:
    """Train with l1, predict (SLQ; exact eigenvalues where ``D ≤ EXACT_MAX_DIM``), measure."""
    cfg = dict(cfg or NET_CASES[name])
    loss_fn = nn.CrossEntropyLoss()
    times: dict[str, float] = {}
    epochs = cfg["epochs"]  # quick mode keeps the training (digits: ~3 s): l1 needs convergence
    model, train, hdata, test, times["train"], hist = train_case(cfg, seed, device, data_root, epochs)
    return measure_model(name, model, loss_fn, train, hdata, test, cfg={**cfg, "epochs": epochs},
                         seed=seed, exact=exact and not quick, refit_steps=refit_steps,
                         num_steps=num_steps, num_probes=num_probes, times=times,
                         keep_model=keep_model)


def measure_model(name, model, loss_fn, train, hdata, test, cfg, seed=0, exact=True, refit_steps=100,
                  num_steps=80, num_probes=10, times=None, keep_model=False, eps=None) -> dict:
    times = dict(times or {})
    t = time.perf_counter()
    if eps is None:
        eps = _batch_eps(model, loss_fn, train)
    times["eps"] = time.perf_counter() - t
    H = HessianOperator(model, loss_fn, hdata)
    t = time.perf_counter()
    spec = slq(H, num_steps=num_steps, num_probes=num_probes, seed=seed)
    times["slq"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = critical_sparsity(model, spec, eps, seed=seed)
    times["predict"] = time.perf_counter() - t
    pred_exact, eig = None, None
    if exact and H.dim <= EXACT_MAX_DIM:
        t = time.perf_counter()
        eig = torch.linalg.eigvalsh(H.to_dense().to(torch.float64))
        pred_exact = critical_sparsity(model, eig, eps, bootstrap=0).sparsity
        times["exact_eig"] = time.perf_counter() - t
    n_test = int(test[1].shape[0])
    thr = _thresholds(model, loss_fn, train, test, eps, refit_steps, n_test, times)
    t = time.perf_counter()
    grid = np.linspace(0, 1, 101)
    curve: dict[str, list] = {"sparsity": grid.tolist(), "accuracy": [], "train_loss": []}
    for s in grid:
        with pruned(model, float(s)):
            curve["accuracy"].append(evaluate_accuracy(model, test))
            curve["train_loss"].append(evaluate_loss(model, loss_fn, train))
    times["curve"] = time.perf_counter() - t
    res = {
        "name": name, "kind": "network", "dim": H.dim,
        # a collapsed net (all weights ~0, chance accuracy) holds at every sparsity: vacuous
        "in_target": not cfg.get("gpu", False) and thr["oneshot"].baseline >= 0.5,
        "eps": eps, "eps_source": "std of batch-64 training losses",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "predicted": pred.sparsity, "predicted_exact": pred_exact,
        "exact_note": None if pred_exact is not None else (
            f"skipped: D = {H.dim} > {EXACT_MAX_DIM} (dense Hessian too slow here)" if exact else "skipped"),
        "lower": pred.lower, "upper": pred.upper,
        "predicted_std": (pred.uncertainty or {}).get("std"),
        "trace": pred.trace, "radius": pred.radius,
        "dense_metric": thr["oneshot"].baseline, "n_test": n_test,
        "train_loss": -thr["loss"].baseline,
        "measured_oneshot": thr["oneshot"].sparsity, "measured_oneshot_tol1": thr["tol1"].sparsity,
        "measured_loss": thr["loss"].sparsity,
        "measured_refit": thr["refit"].sparsity if "refit" in thr else None,
        "measured_refit_loss": thr["refit_loss"].sparsity if "refit_loss" in thr else None,
        "refit_steps": refit_steps, "threshold_points": thr["oneshot"].points,
        "curve": curve, "timings": times,
    }
    if keep_model:
        res["_model"] = model
        res["_spectrum"] = spec
        res["_eig"] = eig
    return res


# ==========================================================================================
# ablations (on the 64-64-32-10 digits MLP)
# ==========================================================================================
def _rescaled(model: nn.Module, c: float) -> nn.Module:
    """Copy with layer 1 (weight and bias) times ``c`` and layer 2's weight times ``1/c``:
    the same function (ReLU is positively homogeneous), different weights and Hessian."""
    m = copy.deepcopy(model)
    lins = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    with torch.no_grad():
        lins[0].weight.mul_(c)
        lins[0].bias.mul_(c)
        lins[1].weight.div_(c)
    return m


def _random_threshold(model, test, baseline, seed, resolution=0.005) -> dict:
    """Largest ``s`` (grid step ``resolution``, first failure) at which a random nested mask of
    the prunable weights keeps test accuracy ≥ ``baseline``."""
    from .params import prunable_parameters

    names = list(prunable_parameters(model))
    sizes = [dict(model.named_parameters())[n].numel() for n in names]
    D = sum(sizes)
    perm = torch.randperm(D, generator=torch.Generator().manual_seed(seed))
    points = []
    best = 0.0
    for s in np.arange(resolution, 1.0, resolution):
        k = pruned_count(float(s), D)
        keep = torch.ones(D, dtype=torch.bool)
        keep[perm[:k]] = False
        masks = {n: part.view_as(dict(model.named_parameters())[n])
                 for n, part in zip(names, torch.split(keep, sizes))}
        m = copy.deepcopy(model)
        apply_masks(m, masks)
        acc = evaluate_accuracy(m, test)
        points.append((float(s), acc))
        if acc >= baseline:
            best = float(s)
        else:
            break
    return {"sparsity": best, "points": points}


def run_ablations(base: dict, seed: int, l1_cases: dict, quick: bool = False) -> dict:
    """Ablations on ``base`` (a network result with ``_model``/``_spectrum``/``_eig``)."""
    model, spec, eig = base["_model"], base["_spectrum"], base["_eig"]
    loss_fn = nn.CrossEntropyLoss()
    eps = base["eps"]
    cfg = NET_CASES["mlp_l1_3e-3"]
    train, hdata, test, _ = _case_data(cfg, seed, "cpu", None)
    out: dict[str, Any] = {"base": base["name"]}
    t0 = time.perf_counter()

    # negative-eigenvalue policy
    rows = []
    for pol in ("abs", "drop", "flat"):
        r = {"negative": pol, "slq": critical_sparsity(model, spec, eps, negative=pol, bootstrap=0).sparsity}
        if eig is not None:
            r["exact"] = critical_sparsity(model, eig, eps, negative=pol, bootstrap=0).sparsity
        rows.append(r)
    neg_mass = float((spec.weights.numpy() * (spec.nodes.numpy() < 0)).sum() / spec.weights.shape[0])
    out["negative"] = {"rows": rows, "slq_negative_mass": neg_mass,
                       "exact_negative_fraction": None if eig is None else float((eig < 0).double().mean())}

    # zero mass
    H = HessianOperator(model, loss_fn, hdata)
    zm = estimate_zero_mass(H, num_rows=100)
    p0 = min(zm.fraction, 0.995)
    out["zero_mass"] = {"estimate": zm.fraction, "rows": [
        {"zero_mass": 0.0, "slq": critical_sparsity(model, spec, eps, bootstrap=0).sparsity},
        {"zero_mass": p0, "slq": critical_sparsity(model, spec, eps, zero_mass=p0, bootstrap=0).sparsity},
    ]}

    # choice of eps
    train128, _ = pt_data.digits(batch_size=128, seed=seed)
    eps_rows = []
    for label, e in (("std, batch 64", eps), ("std, batch 128", _batch_eps(model, loss_fn, train128)),
                     ("fixed 0.01", 0.01), ("fixed 0.1", 0.1)):
        eps_rows.append({"eps_choice": label, "eps": e,
                         "slq": critical_sparsity(model, spec, e, bootstrap=0).sparsity,
                         "measured_loss": find_loss_threshold(model, loss_fn, train, e).sparsity})
    out["eps"] = {"rows": eps_rows, "measured_oneshot": base["measured_oneshot"]}

    # reference emulation vs the exact solve
    ref = {"exact_solve_slq": base["predicted"],
           "reference_slq": critical_sparsity(model, spec, eps, reference_emulation=True).sparsity}
    if eig is not None:
        ref["exact_solve_eig"] = base["predicted_exact"]
        ref["reference_eig"] = critical_sparsity(model, eig, eps, reference_emulation=True).sparsity
    out["reference"] = ref

    # l1 strength
    l1_rows = []
    for l1 in ABLATION_L1:
        hit = [r for r in l1_cases.values() if r["config"].get("hidden") == [64, 32] and r["config"]["l1"] == l1]
        if hit:
            r = hit[0]
        else:
            c = {"model": "mlp", "hidden": (64, 32), "l1": l1, "epochs": 100 if l1 >= 3e-3 else 60}
            r = run_network_case(f"mlp_l1_{l1:g}", seed=seed, quick=quick, exact=False, cfg=c)
        l1_rows.append({k: r[k] for k in ("name", "predicted", "lower", "upper", "measured_oneshot",
                                          "measured_oneshot_tol1", "measured_loss", "measured_refit",
                                          "measured_refit_loss",
                                          "dense_metric", "eps", "trace")} | {"l1": l1, "epochs": r["config"]["epochs"]})
    out["l1"] = l1_rows

    # weight scale: same function, different R and H
    sc_rows = []
    X, y = test
    with torch.no_grad():
        ref_out = model(X)
    for c in ABLATION_SCALES:
        m = _rescaled(model, c)
        with torch.no_grad():
            diff = float((m(X) - ref_out).abs().max())
        r = measure_model(f"scale_{c:g}", m, loss_fn, train, hdata, test, cfg={**cfg, "scale": c},
                          seed=seed, exact=False, refit_steps=0, eps=eps)
        sc_rows.append({"scale": c, "max_output_change": diff, "predicted": r["predicted"],
                        "trace": r["trace"], "radius": r["radius"], "norm": float(
                            torch.cat([p.detach().reshape(-1) for n, p in m.named_parameters()
                                       if n.endswith("weight")]).norm()),
                        "measured_oneshot": r["measured_oneshot"], "measured_loss": r["measured_loss"]})
    out["scale"] = sc_rows

    # magnitude vs random pruning
    rnd = [_random_threshold(model, test, base["dense_metric"], seed + i)["sparsity"] for i in range(3)]
    out["random"] = {"magnitude": base["measured_oneshot"], "random": rnd}
    out["seconds"] = time.perf_counter() - t0
    return out


def quadratic_bruteforce_study(num: int = 20, dim: int = 10, seed: int = 0) -> dict:
    """How often is the magnitude support the best support (tiny D, brute force)?"""
    rows = []
    for i in range(num):
        for weights in ("l1like", "gauss"):
            H, w, _ = make_quadratic(dim, weights=weights, spectrum="powerlaw", seed=seed + i, big_fraction=0.3)
            eps = 0.05 * float(0.5 * w @ H @ w)
            bf = brute_force_refit_threshold(H, w, eps)
            sch = quadratic_thresholds(H, w, eps)
            rows.append({"seed": seed + i, "weights": weights, "schur_refit": sch["refit"],
                         "lsq_magnitude": bf["magnitude"], "best_support": bf["best"],
                         "oneshot": sch["oneshot"],
                         "magnitude_optimal_all_k": all(bf["magnitude_optimal"])})
    return {"dim": dim, "rows": rows}


# ==========================================================================================
# the study, the document, the figures
# ==========================================================================================
QUICK_CASES = ["quad_l1like_powerlaw", "mlp_l1_5e-3"]
FULL_CASES = [*QUAD_CASES, *[n for n, c in NET_CASES.items() if not c.get("gpu")]]


def _summary(cases: list[dict]) -> dict:
    tgt = [c for c in cases if c["in_target"]]
    d = np.array([abs(c["predicted"] - c["measured_oneshot"]) * 100 for c in tgt])
    dr = np.array([abs(c["predicted"] - c["measured_refit_loss"]) * 100 for c in tgt
                   if c.get("measured_refit_loss") is not None])
    cpu = [c for c in cases if not c["config"].get("gpu")]
    da = np.array([abs(c["predicted"] - c["measured_oneshot"]) * 100 for c in cpu])
    dar = np.array([abs(c["predicted"] - c["measured_refit_loss"]) * 100 for c in cpu
                    if c.get("measured_refit_loss") is not None])
    return {"target_cases": [c["name"] for c in tgt],
            "all_cpu_cases": [c["name"] for c in cpu],
            "all_cpu_median_abs_diff_points": float(np.median(da)) if da.size else None,
            "all_cpu_max_abs_diff_points": float(da.max()) if da.size else None,
            "all_cpu_median_abs_diff_refit_points": float(np.median(dar)) if dar.size else None,
            "all_cpu_max_abs_diff_refit_points": float(dar.max()) if dar.size else None,
            "median_abs_diff_points": float(np.median(d)) if d.size else None,
            "max_abs_diff_points": float(d.max()) if d.size else None,
            "median_abs_diff_refit_points": float(np.median(dr)) if dr.size else None,
            "max_abs_diff_refit_points": float(dr.max()) if dr.size else None,
            "target_met": bool(d.size and np.median(d) <= 1.0 and d.max() <= 3.0)}


def _fig_scatter(cases, path):
    from .plots import _new_axes, save_figure_atomic

    fig, ax = _new_axes(None, (5.6, 5.2))
    lo = min(min(c["predicted"], c["measured_oneshot"]) for c in cases) - 0.05
    lo = max(0.0, lo)
    xs = np.linspace(lo, 1, 50)
    ax.fill_between(xs, xs - 0.03, xs + 0.03, color="tab:gray", alpha=0.2, label="±3 points")
    ax.plot(xs, xs, "k-", lw=0.8, label="y = x")
    for c in cases:
        mk = "s" if c["kind"] == "quadratic" else "o"
        ax.plot(c["predicted"], c["measured_oneshot"], mk, color="tab:blue", ms=6)
        if c.get("measured_refit_loss") is not None:
            ax.plot(c["predicted"], c["measured_refit_loss"], mk, mfc="none", color="tab:red", ms=6)
        ax.annotate(c["name"], (c["predicted"], c["measured_oneshot"]), fontsize=6,
                    xytext=(3, -8), textcoords="offset points")
    ax.plot([], [], "o", color="tab:blue", label="one-shot (networks: test acc. ≥ dense)")
    ax.plot([], [], "s", color="tab:blue", label="one-shot (quadratics: exact)")
    ax.plot([], [], "o", mfc="none", color="tab:red", label="re-fit on the magnitude support (L ≤ L*+ε)")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_xlabel("predicted critical sparsity (SLQ)")
    ax.set_ylabel("measured critical sparsity")
    ax.set_title("Theory vs experiment (CPU cases)")
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, alpha=0.3)
    save_figure_atomic(fig, path, bbox_inches="tight")


def _fig_curve(case, path):
    from .plots import _new_axes, save_figure_atomic

    fig, ax = _new_axes(None, (6.8, 4.2))
    cv = case["curve"]
    s = np.asarray(cv["sparsity"])
    ax.axvspan(case["lower"], case["upper"], color="tab:red", alpha=0.12, label="predicted window")
    ax.axvline(case["predicted"], color="tab:red", lw=1.5, label=f"predicted (SLQ) {case['predicted']:.3f}")
    if case.get("predicted_exact") is not None:
        ax.axvline(case["predicted_exact"], color="tab:red", lw=1, ls=":",
                   label=f"predicted (exact eig.) {case['predicted_exact']:.3f}")
    ax.axvline(case["measured_oneshot"], color="k", ls="--", lw=1.3,
               label=f"measured one-shot {case['measured_oneshot']:.3f}")
    if case.get("measured_refit_loss") is not None:
        ax.axvline(case["measured_refit_loss"], color="tab:purple", ls="-.", lw=1.2,
                   label=f"measured re-fit (L ≤ L*+ε) {case['measured_refit_loss']:.3f}")
    pts = sorted(list(zip(s.tolist(), cv["accuracy"])) + [tuple(p) for p in case.get("threshold_points", [])])
    ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", ms=3, color="tab:blue",
            label="test accuracy (one-shot)")
    ax.axhline(case["dense_metric"], color="gray", ls=":", lw=0.8)
    ax.set_xlabel("sparsity s")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.semilogy(s, cv["train_loss"], color="tab:orange", lw=1, label="train loss")
    ax2.axhline(case["train_loss"] + case["eps"], color="tab:orange", ls=":", lw=0.8)
    ax2.set_ylabel("train loss (log); dotted: L* + ε", color="tab:orange")
    ax.legend(fontsize="small", loc="lower left")
    x0 = max(0.0, min(case["lower"], case["measured_oneshot"]) - 0.05)
    ax.set_xlim(x0, 1.0)
    ax.set_title(f"{case['name']}: accuracy vs sparsity, D = {case['dim']} (zoomed to s ≥ {x0:.2f})")
    ax.grid(True, alpha=0.3)
    save_figure_atomic(fig, path, bbox_inches="tight")


def _fig_l1(rows, path):
    from .plots import _new_axes, save_figure_atomic

    fig, ax = _new_axes(None, (6.4, 4.2))
    x = np.arange(len(rows))
    ax.fill_between(x, [r["lower"] for r in rows], [r["upper"] for r in rows], color="tab:red", alpha=0.12,
                    label="predicted window")
    ax.plot(x, [r["predicted"] for r in rows], "o-", color="tab:red", label="predicted (SLQ)")
    ax.plot(x, [r["measured_oneshot"] for r in rows], "s--", color="k", label="one-shot (acc ≥ dense)")
    ax.plot(x, [r["measured_oneshot_tol1"] for r in rows], "^:", color="gray", label="one-shot (1 sample tol.)")
    ax.plot(x, [r["measured_loss"] for r in rows], "v:", color="tab:orange", label="one-shot (L ≤ L*+ε)")
    if all(r.get("measured_refit_loss") is not None for r in rows):
        ax.plot(x, [r["measured_refit_loss"] for r in rows], "d-.", color="tab:purple",
                label="re-fit 100 steps (L ≤ L*+ε)")
    ax.set_xticks(x, [f"{r['l1']:g}" for r in rows])
    ax.set_xlabel("l1 strength λ₁ (digits MLP 64-64-32-10)")
    ax.set_ylabel("critical sparsity")
    ax.set_title("l1 strength: theory tracks one-shot only in the strong-l1 regime")
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, alpha=0.3)
    save_figure_atomic(fig, path, bbox_inches="tight")


def _f(x, nd=3):
    return "—" if x is None else f"{x:.{nd}f}"


def _pts(a, b):
    return "—" if a is None or b is None else f"{(a - b) * 100:+.1f}"


def render_markdown(res: dict) -> str:
    cases, summ = res["cases"], res["summary"]
    L = []
    A = L.append
    A("# Validation: theory against experiment")
    A("")
    A("The central table of Zhang, Zhang, Sun & Liu (NeurIPS 2024, arXiv:2306.05857) — predicted vs "
      "actual critical sparsity of one-shot global magnitude pruning — redone on what runs on this "
      "machine (CPU, one thread). Generated by")
    A("")
    A(f"    {res['command']}")
    A("")
    A(f"in {res['seconds']:.0f} s ({res['machine']}); every number is also in `validation.json`. "
      "Do not edit this file by hand: rerun the command.")
    A("")
    A("## Protocol")
    A("")
    A("- **Predicted**: root of `s = Φ(R(s))` (`pt.critical_sparsity`), spectrum from SLQ "
      "(80 Lanczos steps × 10 probes, seed as given) on the dataset-level Hessian of the training loss "
      "w.r.t. the prunable weights; *exact* = the same with all eigenvalues of the dense Hessian "
      f"(`HessianOperator.to_dense` + `eigvalsh`, only for D ≤ {EXACT_MAX_DIM}). ε = standard deviation "
      "of the batch-64 training losses at w* (the reference code's choice); quadratics: ε = 1 % of "
      "L(0) = ½ w*ᵀHw*. Window = kinematic window at η = 0.01.")
    A("- **Measured one-shot**: largest s with test accuracy of the magnitude-pruned net ≥ dense "
      "accuracy (`pt.find_threshold`, resolution 1e-3, no fine-tuning). Also with a tolerance of one "
      "test sample, and the loss criterion L_train(w^(s)) ≤ L_train(w*) + ε (`find_loss_threshold`). "
      "Quadratics: exact, L(w^(s)) ≤ ε (first crossing along the magnitude path).")
    A("- **Measured re-fit**: the same after 100 SGD steps (lr 0.01, batch 64) on the fixed kept "
      "support at every evaluated s. Quadratics: exact, `min_{w_P = 0} L = ½ w*_Pᵀ (H/H_SS) w*_P` "
      "(Schur complement) ≤ ε on the magnitude support, by bisection (nested supports: monotone).")
    A("- Networks: trained with `pt.train_l1` (SGD, lr 0.05, momentum 0.9, cosine, batch 64) to the "
      "epochs listed. Digits: 1297 train / 500 test. Teacher–student: `pt.data.teacher_student` "
      "(20 inputs, hidden 32, 4 classes, teacher 80 % sparse, 2400 train / 600 test), student "
      "MLP 20-64-4. LeNet on 8×8 digits (`flatten=False`).")
    A("")
    A("## The table")
    A("")
    A("Differences in points (100 × sparsity). *Target set* (the CPU cases the target is stated "
      f"over): {', '.join('`' + n + '`' for n in summ['target_cases'])}.")
    A("")
    A("| case | D | l1 (epochs) | dense acc | ε | predicted SLQ [window] | exact eig | one-shot | "
      "pred − one-shot | one-shot, 1-sample tol. | one-shot, L ≤ L*+ε | re-fit (acc) | re-fit (L ≤ L*+ε) | pred − re-fit (L) |")
    A("|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in cases:
        cfg = c["config"]
        l1 = f"{cfg['l1']:g} ({cfg['epochs']})" if "l1" in cfg else f"{cfg['weights']}, {cfg['spectrum']}"
        A(f"| `{c['name']}` | {c['dim']} | {l1} | {_f(c['dense_metric'])} | {c['eps']:.3g} | "
          f"{_f(c['predicted'])} [{_f(c['lower'])}, {_f(c['upper'])}] | {_f(c['predicted_exact'])} | "
          f"{_f(c['measured_oneshot'])} | {_pts(c['predicted'], c['measured_oneshot'])} | "
          f"{_f(c['measured_oneshot_tol1'])} | {_f(c['measured_loss'])} | {_f(c['measured_refit'])} | "
          f"{_f(c.get('measured_refit_loss'))} | {_pts(c['predicted'], c.get('measured_refit_loss'))} |")
    A("")
    notes = [f"`{c['name']}`: exact eigenvalues {c['exact_note']}" for c in cases if c.get("exact_note")]
    if notes:
        A("Exact-eigenvalue column: " + "; ".join(notes) + ".")
        A("")
    A(f"**Over the target set: median |predicted − measured one-shot| = "
      f"{_f(summ['median_abs_diff_points'], 2)} points, max = {_f(summ['max_abs_diff_points'], 2)} points** "
      f"(target: median ≤ 1, max ≤ 3 — **{'met' if summ['target_met'] else 'NOT met'}**). Against the "
      f"re-fit threshold (loss criterion after the re-fit): median {_f(summ['median_abs_diff_refit_points'], 2)}, max "
      f"{_f(summ['max_abs_diff_refit_points'], 2)} points.")
    if summ.get("all_cpu_median_abs_diff_points") is not None:
        A("")
        A(f"Over all CPU cases, including the controls outside the target set: median "
          f"{_f(summ['all_cpu_median_abs_diff_points'], 2)}, max {_f(summ['all_cpu_max_abs_diff_points'], 2)} "
          f"points against one-shot; median {_f(summ['all_cpu_median_abs_diff_refit_points'], 2)}, max "
          f"{_f(summ['all_cpu_max_abs_diff_refit_points'], 2)} against re-fit.")
    A("")
    A("![predicted vs measured](figures/validation_scatter.png)")
    A("")
    base = next((c for c in cases if c["name"] == res.get("curve_case")), None)
    if base is not None:
        A(f"Accuracy along the one-shot pruning path for `{base['name']}`, with the prediction:")
        A("")
        A("![accuracy vs sparsity](figures/validation_curve.png)")
        A("")
    A("Runtime per case (seconds):")
    A("")
    stages = sorted({k for c in cases for k in c["timings"]})
    A("| case | " + " | ".join(stages) + " |")
    A("|---|" + "---:|" * len(stages))
    for c in cases:
        A(f"| `{c['name']}` | " + " | ".join(_f(c["timings"].get(k), 1) for k in stages) + " |")
    A("")
    bf = res.get("bruteforce")
    if bf:
        rows = bf["rows"]
        A(f"## Quadratics: is the magnitude support the best support? (brute force, D = {bf['dim']})")
        A("")
        A("For tiny D the re-fit threshold over *all* supports is computed by brute force (every "
          "support of every size, each minimised by least squares on H^{1/2}, independently of the "
          "Schur formula). Power-law spectrum, ε = 5 % of L(0), random rotations.")
        A("")
        A("| weights | instances | Schur = least squares (magnitude support) | magnitude support optimal at every k | "
          "best-support threshold > magnitude threshold | mean gap (points) |")
        A("|---|---:|---:|---:|---:|---:|")
        for wk in ("l1like", "gauss"):
            rr = [r for r in rows if r["weights"] == wk]
            if not rr:
                continue
            agree = sum(abs(r["schur_refit"] - r["lsq_magnitude"]) < 1e-12 for r in rr)
            opt = sum(r["magnitude_optimal_all_k"] for r in rr)
            better = sum(r["best_support"] > r["lsq_magnitude"] for r in rr)
            gap = np.mean([100 * (r["best_support"] - r["lsq_magnitude"]) for r in rr])
            A(f"| {wk} | {len(rr)} | {agree}/{len(rr)} | {opt}/{len(rr)} | {better}/{len(rr)} | {gap:.1f} |")
        A("")
    ab = res.get("ablations")
    if ab:
        A(f"## Ablations (on `{ab['base']}`)")
        A("")
        A("**Negative-eigenvalue policy** (SLQ negative mass "
          f"{ab['negative']['slq_negative_mass']:.3g}; exact fraction of negative eigenvalues "
          f"{_f(ab['negative']['exact_negative_fraction'])}):")
        A("")
        A("| policy | predicted (SLQ) | predicted (exact) |")
        A("|---|---:|---:|")
        for r in ab["negative"]["rows"]:
            A(f"| {r['negative']} | {_f(r['slq'], 4)} | {_f(r.get('exact'), 4)} |")
        A("")
        z = ab["zero_mass"]
        A(f"**Zero mass**: the reference estimator (100 Hessian rows at magnitude quantiles, L1 norm "
          f"< 1e-7) gives p0 = {z['estimate']:.3f}.")
        A("")
        A("| p0 | predicted (SLQ) |")
        A("|---:|---:|")
        for r in z["rows"]:
            A(f"| {r['zero_mass']:.3f} | {_f(r['slq'], 4)} |")
        A("")
        A("**Choice of ε** (measured one-shot on accuracy: "
          f"{_f(ab['eps']['measured_oneshot'])}; the loss-criterion threshold moves with ε too):")
        A("")
        A("| ε | value | predicted (SLQ) | one-shot, L ≤ L*+ε |")
        A("|---|---:|---:|---:|")
        for r in ab["eps"]["rows"]:
            A(f"| {r['eps_choice']} | {r['eps']:.4g} | {_f(r['slq'], 4)} | {_f(r['measured_loss'])} |")
        A("")
        rf = ab["reference"]
        A("**Reference emulation vs the exact solve** (`reference_emulation=True`: grid-smoothed "
          "density, R rounded to an integer, 1000-ratio grid):")
        A("")
        A("| spectrum | exact solve | reference emulation |")
        A("|---|---:|---:|")
        A(f"| SLQ | {_f(rf['exact_solve_slq'], 4)} | {_f(rf['reference_slq'], 4)} |")
        if "reference_eig" in rf:
            A(f"| exact eigenvalues | {_f(rf['exact_solve_eig'], 4)} | {_f(rf['reference_eig'], 4)} |")
        A("")
        A("**l1 strength** (digits MLP 64-64-32-10; 60 epochs below 3e-3, 100 from 3e-3):")
        A("")
        A("| l1 | dense acc | ε | predicted [window] | one-shot | 1-sample tol. | L ≤ L*+ε | re-fit | pred − one-shot | pred − re-fit |")
        A("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in ab["l1"]:
            A(f"| {r['l1']:g} | {_f(r['dense_metric'])} | {r['eps']:.3g} | {_f(r['predicted'])} "
              f"[{_f(r['lower'])}, {_f(r['upper'])}] | {_f(r['measured_oneshot'])} | "
              f"{_f(r['measured_oneshot_tol1'])} | {_f(r['measured_loss'])} | {_f(r['measured_refit'])} | "
              f"{_pts(r['predicted'], r['measured_oneshot'])} | {_pts(r['predicted'], r['measured_refit'])} |")
        A("")
        A("![l1 ablation](figures/validation_l1.png)")
        A("")
        A("**Weight scale** (layer 1 × c, layer 2 × 1/c: the same function — max output change "
          "listed — but different magnitudes R and Hessian; ε unchanged since the losses are):")
        A("")
        A("| c | max output change | ‖w‖ | Tr H | predicted | R(s*) | one-shot | L ≤ L*+ε |")
        A("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in ab["scale"]:
            A(f"| {r['scale']:g} | {r['max_output_change']:.1e} | {r['norm']:.2f} | {r['trace']:.3g} | "
              f"{_f(r['predicted'])} | {r['radius']:.3f} | {_f(r['measured_oneshot'])} | {_f(r['measured_loss'])} |")
        A("")
        rd = ab["random"]
        A(f"**Magnitude vs random pruning**: one-shot threshold {_f(rd['magnitude'])} with magnitude "
          f"masks; with random nested masks (3 seeds, grid 0.005): "
          f"{', '.join(_f(x) for x in rd['random'])}.")
        A("")
    A(res.get("discussion", ""))
    return "\n".join(L) + "\n"


def _discussion(res: dict) -> str:
    """Plain statements, each with the numbers it rests on (filled from the results)."""
    cases = {c["name"]: c for c in res["cases"]}
    summ = res["summary"]
    lines = ["## Where theory and experiment part, and why", ""]
    worst = sorted([c for c in res["cases"] if c["in_target"]],
                   key=lambda c: -abs(c["predicted"] - c["measured_oneshot"]))[:3]
    lines.append("- **Largest disagreements in the target set** (predicted − one-shot): " + "; ".join(
        f"`{c['name']}` {_pts(c['predicted'], c['measured_oneshot'])} points" for c in worst) + ".")
    q = [c for c in res["cases"] if c["kind"] == "quadratic"]
    if q:
        lines.append(
            "- **Quadratics** (exact truth): " + "; ".join(
                f"`{c['name']}` predicted {c['predicted']:.3f} (exact eig. {c['predicted_exact']:.3f}), "
                f"one-shot {c['measured_oneshot']:.3f}, re-fit {c['measured_refit']:.3f}" for c in q) + ". "
            "With l1-like weights (few large, many tiny) R(s) stays tiny until the large weights are "
            "reached, so prediction, one-shot and re-fit all sit near the knee of the magnitude curve. "
            "With dense Gaussian weights there is no knee and the one-shot point leaves S(ε) early, "
            "but the prediction follows the exact re-fit (existence) threshold: |predicted − re-fit| = "
            + ", ".join(f"{abs(c['predicted'] - c['measured_refit']) * 100:.1f}" for c in q
                        if c["config"]["weights"] == "gauss")
            + " points for the Gaussian quadratics (not in the target set: no l1-trained network has "
            "such weights).")
    ab = res.get("ablations")
    weak = [r for r in (ab or {}).get("l1", []) if r["l1"] < 2e-3]
    both = [c for c in res["cases"] if c.get("predicted_exact") is not None]
    tol = [c for c in res["cases"] if c.get("measured_oneshot_tol1") is not None]
    lines += [
        "- **One-shot vs re-fit.** The theory (THEORY §4) speaks about the existence of an s-sparse "
        "point in S(ε), i.e. prune then re-fit on the kept support; the reference measurement uses the "
        "pruned point itself. In the strong-l1 regime the two coincide to a few points; without or "
        "with weak l1 the prediction tracks the re-fit threshold, not one-shot (l1 ablation above).",
        "- **Networks trained without/with weak l1** are outside the paper's regime: the weights are "
        "dense, R(s) grows from the start, and the one-shot threshold falls below the prediction by "
        + ", ".join(f"{(r['predicted'] - r['measured_oneshot']) * 100:.1f} (l1 = {r['l1']:g})" for r in weak)
        + " points, while predicted − re-fit (loss criterion after 100 steps) is "
        + ", ".join(f"{(r['predicted'] - r['measured_refit_loss']) * 100:+.1f}" for r in weak
                    if r.get("measured_refit_loss") is not None)
        + " points. These runs are reported (ablation) but are not in the target set.",
        "- **The re-fit measured on test accuracy with zero tolerance is unreliable**: 100 SGD steps "
        "without the l1 term move test accuracy by a sample or two even at low sparsity, so the "
        "bisection can fail at its first points and report ~0 (see the re-fit (acc) column, e.g. "
        + ", ".join(f"`{c['name']}` {c['measured_refit']:.3f}" for c in res["cases"]
                    if c["kind"] == "network" and c["measured_refit"] is not None
                    and c["measured_refit"] < c["measured_oneshot"] - 0.02)
        + "). The re-fit comparison therefore uses the loss criterion L_train ≤ L* + ε after the "
        "re-fit, which is what the existence statement is about (it is generous: the re-fit drops "
        "the l1 term, so the training loss can go below L*).",
        "- **The zero-tolerance accuracy criterion is noisy**: on 500 test samples one flipped sample "
        "is 0.2 % accuracy, and accuracy along the pruning path is not monotone, so the threshold can "
        "jump by many points (one-shot vs 1-sample tolerance differ by up to "
        + (f"{max(abs(c['measured_oneshot_tol1'] - c['measured_oneshot']) for c in tol) * 100:.1f}" if tol else "—")
        + " points in the table, more in the weak-l1 ablation). The loss "
        "criterion L ≤ L* + ε is the quantity the theory actually models and is smoother.",
        "- **The projected-width heuristic is biased** (docs/GEOMETRY.md): Φ·D underestimates the "
        "statistical dimension of the cone by 13–50 % for a point in generic position, which makes the "
        "prediction conservative (too low) for existence. On the quadratics, where existence on the "
        "magnitude support is exact, predicted − re-fit = "
        + ", ".join(f"{(c['predicted'] - c['measured_refit']) * 100:+.1f}" for c in res["cases"]
                    if c["kind"] == "quadratic")
        + " points: the sign is not consistently negative, so other approximations (the quadratic "
        "ellipsoid seen from one pruned point, the generic-position assumption, the magnitude support "
        "not being the best support — see the brute-force table) matter as much. The one-shot "
        "point is below the existence threshold by construction; in the strong-l1 regime the gap is "
        "small, which is why the prediction lands near one-shot there.",
        "- **Ablations, in one line each** (base case above): the negative-eigenvalue policy moves "
        "the prediction by ≤ "
        + (f"{max(abs(r['slq'] - ab['negative']['rows'][0]['slq']) for r in ab['negative']['rows']) * 100:.1f}" if ab else "—")
        + " points; the reference zero-mass estimate adds "
        + (f"{(ab['zero_mass']['rows'][1]['slq'] - ab['zero_mass']['rows'][0]['slq']) * 100:+.1f}" if ab else "—")
        + " points (and double-counts flat directions SLQ already sees); ε from batch 128 instead of 64 "
        + (f"{(ab['eps']['rows'][1]['slq'] - ab['eps']['rows'][0]['slq']) * 100:+.1f}" if ab else "—")
        + " points; reference emulation vs exact solve "
        + (f"{(ab['reference']['reference_slq'] - ab['reference']['exact_solve_slq']) * 100:+.1f}" if ab else "—")
        + " points (the 1000-ratio grid and rounding of R). Rescaling layers (same function) changes "
        "the prediction by "
        + (f"{(max(r['predicted'] for r in ab['scale']) - min(r['predicted'] for r in ab['scale'])) * 100:.1f}" if ab else "—")
        + " points and the measured one-shot threshold by "
        + (f"{(max(r['measured_oneshot'] for r in ab['scale']) - min(r['measured_oneshot'] for r in ab['scale'])) * 100:.1f}" if ab else "—")
        + " points: R and Tr H move in opposite directions and mostly compensate, as the two-factor "
        "form says, but the prediction is not exactly invariant while the function is. Random masks "
        "fail almost at once ("
        + (", ".join(f"{x:.3f}" for x in ab["random"]["random"]) if ab else "—")
        + " vs magnitude "
        + (f"{ab['random']['magnitude']:.3f}" if ab else "—")
        + "): the magnitude ordering is what the theory's R(s) is about.",
        "- **SLQ vs exact eigenvalues** agree to within "
        + (f"{max(abs(c['predicted'] - c['predicted_exact']) for c in both) * 100:.2f}" if both else "—")
        + " points wherever both ran: the spectral estimate is not where the error is.",
    ]
    if summ["target_met"]:
        lines.append(f"- **Target** (median ≤ 1, max ≤ 3 points over the target set): met "
                     f"(median {summ['median_abs_diff_points']:.2f}, max {summ['max_abs_diff_points']:.2f}).")
    else:
        lines.append(f"- **Target** (median ≤ 1, max ≤ 3 points over the target set): **not met** "
                     f"(median {summ['median_abs_diff_points']:.2f}, max {summ['max_abs_diff_points']:.2f}); "
                     "see the table for which cases miss and by how much.")
    lines += ["", "## GPU cases (not run here)", "",
              "No accelerator was lent to the session that produced this file. The code path exists: "
              "`python -m phasetrans.validation --device cuda --cases gpu_fc5,gpu_resnet20 "
              "[--data-root DIR]` trains FC5 (3072-1000-600-300-100-10) and a CIFAR-style ResNet-20 with "
              "l1 on synthetic CIFAR-shaped data (`pt.data.synthetic_images`, for timing) — or on "
              "CIFAR-10 read from local files under `--data-root` — and runs the same prediction "
              "(SLQ only: D is far beyond a dense Hessian) and measurements. Nothing here depends on its result.",
              ""]
    del cases
    return "\n".join(lines)


def _draw_figures(res: dict, out: Path) -> None:
    results = res["cases"]
    figdir = Path(out) / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    res["figures"] = []
    _fig_scatter([r for r in results if r["in_target"]] or results, figdir / "validation_scatter.png")
    res["figures"].append("figures/validation_scatter.png")
    curve_case = next((r for r in results if r["name"] == res.get("curve_case")), None)
    if curve_case:
        _fig_curve(curve_case, figdir / "validation_curve.png")
        res["figures"].append("figures/validation_curve.png")
    if res.get("ablations"):
        _fig_l1(res["ablations"]["l1"], figdir / "validation_l1.png")
        res["figures"].append("figures/validation_l1.png")


def run_study(out: str | Path = "docs", quick: bool = False, cases: list[str] | None = None, seed: int = 0,
              device: str = "cpu", data_root: str | None = None, ablations: bool | None = None,
              bruteforce: bool | None = None, log=print) -> dict:
    t0 = time.perf_counter()
    out = Path(out)
    names = cases or (QUICK_CASES if quick else FULL_CASES)
    unknown = [n for n in names if n not in QUAD_CASES and n not in NET_CASES]
    if unknown:
        raise ValueError(f"cases: unknown case(s) {unknown}; known: {[*QUAD_CASES, *NET_CASES]}")
    if any(NET_CASES.get(n, {}).get("gpu") for n in names) and device != "cuda":
        raise ValueError("gpu_* cases need --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available on this machine")
    ablations = (not quick and cases is None) if ablations is None else ablations
    bruteforce = (cases is None) if bruteforce is None else bruteforce
    results: list[dict] = []
    for n in names:
        t = time.perf_counter()
        if n in QUAD_CASES:
            r = run_quadratic_case(n, dim=200 if quick else 400, seed=seed,
                                   num_steps=40 if quick else 80, num_probes=5 if quick else 10)
        else:
            dev = device if NET_CASES[n].get("gpu") else "cpu"
            r = run_network_case(n, seed=seed, quick=quick, device=dev, data_root=data_root,
                                 refit_steps=50 if quick else 100, num_steps=40 if quick else 80,
                                 num_probes=5 if quick else 10, keep_model=(n == "mlp_l1_3e-3"))
        r["seconds"] = time.perf_counter() - t
        log(f"[validation] {n}: D={r['dim']} predicted={r['predicted']:.3f} one-shot={r['measured_oneshot']:.3f} "
            f"refit={_f(r['measured_refit'])} ({r['seconds']:.1f} s)")
        results.append(r)
    res: dict[str, Any] = {
        "command": "python -m phasetrans.validation " + " ".join(sys.argv[1:]) if __name__ == "__main__"
        else f"run_study(out={str(out)!r}, quick={quick}, cases={cases}, seed={seed})",
        "seed": seed, "quick": quick, "device": device,
        "machine": f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU",
    }
    bases = [r for r in results if r["name"] == "mlp_l1_3e-3"]
    if ablations and bases:
        t = time.perf_counter()
        res["ablations"] = run_ablations(bases[0], seed, {r["name"]: r for r in results if r["kind"] == "network"},
                                         quick=quick)
        log(f"[validation] ablations ({time.perf_counter() - t:.1f} s)")
    if bruteforce:
        t = time.perf_counter()
        res["bruteforce"] = quadratic_bruteforce_study(num=3 if quick else 20, dim=8 if quick else 10, seed=seed)
        res["bruteforce"]["seconds"] = time.perf_counter() - t
    for r in results:
        for k in [k for k in r if k.startswith("_")]:
            del r[k]
    res["cases"] = results
    res["summary"] = _summary(results)
    nets = [r for r in results if r["kind"] == "network" and r.get("curve")]
    curve_case = next((r for r in nets if r["name"] == "mlp_l1_3e-3"), nets[0] if nets else None)
    res["curve_case"] = curve_case["name"] if curve_case else None
    _draw_figures(res, out)
    res["seconds"] = time.perf_counter() - t0
    res["discussion"] = _discussion(res)
    atomic_write_json(out / "validation.json", res)
    atomic_write_text(out / "VALIDATION.md", render_markdown(res))
    log(f"[validation] wrote {out / 'VALIDATION.md'} and {out / 'validation.json'} "
        f"({res['seconds']:.0f} s; median |pred - one-shot| = {_f(res['summary']['median_abs_diff_points'], 2)} "
        f"points, max = {_f(res['summary']['max_abs_diff_points'], 2)})")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m phasetrans.validation",
                                description="Predicted vs measured critical sparsity: the validation study.")
    p.add_argument("--out", default="docs", help="directory for VALIDATION.md, validation.json, figures/")
    p.add_argument("--quick", action="store_true", help="two small cases, shorter training (≲ 60 s)")
    p.add_argument("--cases", default=None, help=f"comma-separated case names: {', '.join([*QUAD_CASES, *NET_CASES])}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--data-root", default=None, help="local CIFAR-10 files for the gpu_* cases")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--rerender", action="store_true",
                   help="only rewrite OUT/VALIDATION.md from OUT/validation.json (no runs)")
    a = p.parse_args(argv)
    if a.rerender:
        from ._io import read_json

        res = read_json(Path(a.out) / "validation.json")
        _draw_figures(res, Path(a.out))
        res["discussion"] = _discussion(res)
        atomic_write_json(Path(a.out) / "validation.json", res)
        atomic_write_text(Path(a.out) / "VALIDATION.md", render_markdown(res))
        return 0
    torch.set_num_threads(a.threads)
    cases = None if a.cases is None else [c.strip() for c in a.cases.split(",") if c.strip()]
    try:
        run_study(a.out, quick=a.quick, cases=cases, seed=a.seed, device=a.device, data_root=a.data_root,
                  ablations=False if a.no_ablations else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
