"""Ablations of the validation study, on the 64-64-32-10 digits MLP trained with l1 = 3e-3
(``mlp_l1_3e-3``), one function each: the negative-eigenvalue policy, the zero mass, the choice
of ε, the reference emulation, the l1 strength, the weight scale, magnitude vs random masks; and
the brute-force check on tiny quadratics (is the magnitude support the best support?)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from phasetrans import data as pt_data
from phasetrans._timing import Stopwatch
from phasetrans.evaluate import evaluate_accuracy
from phasetrans.linalg.hessian import HessianOperator
from phasetrans.params import prunable_parameters, pruned_count
from phasetrans.predict import estimate_zero_mass
from phasetrans.prune.masks import apply_masks
from phasetrans.prune.threshold import find_loss_threshold
from phasetrans.theory.critical import critical_sparsity
from phasetrans.theory.quadratic import (
    brute_force_refit_threshold,
    make_quadratic,
    quadratic_thresholds,
)

from .cases import NET_CASES, batch_eps, case_data, measure_model, run_network_case

__all__ = ["ABLATION_L1", "ABLATION_SCALES", "run_ablations", "quadratic_bruteforce_study"]

ABLATION_L1 = [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
ABLATION_SCALES = [0.25, 0.5, 1.0, 2.0, 4.0]


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


def _negative_policy(model, spec, eig, eps) -> dict:
    """The prediction under each negative-eigenvalue policy (SLQ, and exact eigenvalues)."""
    rows = []
    for pol in ("abs", "drop", "flat"):
        r = {"negative": pol, "slq": critical_sparsity(model, spec, eps, negative=pol, bootstrap=0).sparsity}
        if eig is not None:
            r["exact"] = critical_sparsity(model, eig, eps, negative=pol, bootstrap=0).sparsity
        rows.append(r)
    neg_mass = float((spec.weights.numpy() * (spec.nodes.numpy() < 0)).sum() / spec.weights.shape[0])
    return {"rows": rows, "slq_negative_mass": neg_mass,
            "exact_negative_fraction": None if eig is None else float((eig < 0).double().mean())}


def _zero_mass(model, spec, eps, loss_fn, hdata) -> dict:
    """The reference zero-mass estimate (100 Hessian rows) and the prediction with and without."""
    H = HessianOperator(model, loss_fn, hdata)
    zm = estimate_zero_mass(H, num_rows=100)
    p0 = min(zm.fraction, 0.995)
    return {"estimate": zm.fraction, "rows": [
        {"zero_mass": 0.0, "slq": critical_sparsity(model, spec, eps, bootstrap=0).sparsity},
        {"zero_mass": p0, "slq": critical_sparsity(model, spec, eps, zero_mass=p0, bootstrap=0).sparsity},
    ]}


def _eps_choice(model, spec, eps, loss_fn, train, seed, measured_oneshot) -> dict:
    """Prediction and loss-criterion threshold for ε from batch 64 / 128 and two fixed values."""
    train128, _ = pt_data.digits(batch_size=128, seed=seed)
    eps_rows = []
    for label, e in (("std, batch 64", eps), ("std, batch 128", batch_eps(model, loss_fn, train128)),
                     ("fixed 0.01", 0.01), ("fixed 0.1", 0.1)):
        eps_rows.append({"eps_choice": label, "eps": e,
                         "slq": critical_sparsity(model, spec, e, bootstrap=0).sparsity,
                         "measured_loss": find_loss_threshold(model, loss_fn, train, e).sparsity})
    return {"rows": eps_rows, "measured_oneshot": measured_oneshot}


def _reference(base: dict, model, spec, eig, eps) -> dict:
    """The reference emulation against the exact solve, on SLQ and on exact eigenvalues."""
    ref = {"exact_solve_slq": base["predicted"],
           "reference_slq": critical_sparsity(model, spec, eps, reference_emulation=True).sparsity}
    if eig is not None:
        ref["exact_solve_eig"] = base["predicted_exact"]
        ref["reference_eig"] = critical_sparsity(model, eig, eps, reference_emulation=True).sparsity
    return ref


_L1_KEYS = ("name", "predicted", "lower", "upper", "measured_oneshot", "measured_oneshot_tol1",
            "measured_loss", "measured_refit", "measured_refit_loss", "dense_metric", "eps", "trace")


def _l1_strength(seed: int, l1_cases: dict, quick: bool) -> list[dict]:
    """The MLP trained at each l1 strength (reusing the study's cases where they match)."""
    l1_rows = []
    for l1 in ABLATION_L1:
        hit = [r for r in l1_cases.values() if r["config"].get("hidden") == [64, 32] and r["config"]["l1"] == l1]
        if hit:
            r = hit[0]
        else:
            c = {"model": "mlp", "hidden": (64, 32), "l1": l1, "epochs": 100 if l1 >= 3e-3 else 60}
            r = run_network_case(f"mlp_l1_{l1:g}", seed=seed, quick=quick, exact=False, cfg=c)
        l1_rows.append({k: r[k] for k in _L1_KEYS} | {"l1": l1, "epochs": r["config"]["epochs"]})
    return l1_rows


def _weight_scale(model, eps, loss_fn, train, hdata, test, cfg, seed) -> list[dict]:
    """Same function, different R and H: layer 1 × c, layer 2 × 1/c."""
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
    return sc_rows


def run_ablations(base: dict, seed: int, l1_cases: dict, quick: bool = False) -> dict:
    """Ablations on ``base`` (a network result with ``_model``/``_spectrum``/``_eig``)."""
    model, spec, eig = base["_model"], base["_spectrum"], base["_eig"]
    loss_fn = nn.CrossEntropyLoss()
    eps = base["eps"]
    cfg = NET_CASES["mlp_l1_3e-3"]
    train, hdata, test, _ = case_data(cfg, seed, "cpu", None)
    out: dict[str, Any] = {"base": base["name"]}
    clock = Stopwatch()
    out["negative"] = _negative_policy(model, spec, eig, eps)
    out["zero_mass"] = _zero_mass(model, spec, eps, loss_fn, hdata)
    out["eps"] = _eps_choice(model, spec, eps, loss_fn, train, seed, base["measured_oneshot"])
    out["reference"] = _reference(base, model, spec, eig, eps)
    out["l1"] = _l1_strength(seed, l1_cases, quick)
    out["scale"] = _weight_scale(model, eps, loss_fn, train, hdata, test, cfg, seed)
    # magnitude vs random pruning
    rnd = [_random_threshold(model, test, base["dense_metric"], seed + i)["sparsity"] for i in range(3)]
    out["random"] = {"magnitude": base["measured_oneshot"], "random": rnd}
    out["seconds"] = clock.elapsed
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
