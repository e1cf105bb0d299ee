"""The adaptive SLQ budget of ``pt.predict_sparsity`` against the fixed 80 x 10 on the validation
study's networks (studies/validation/cases.py): column products, s*, wall time, and the training
time of the same network; with ``--subsets`` also the Hessian on the first n training samples
(``hessian_samples=n``) against the full data.

Each case: trained with ``train_l1`` for ``--epochs`` epochs (timed), ε from the batch-64
training losses (``pt.estimate_eps``, the same ε for every prediction), the Hessian over the
whole training set; the predictions run interleaved (adaptive, fixed, adaptive, fixed, ...),
best of ``--repeat``. On a shared machine read the ratios; ``uptime`` is printed with each case.

Run: python bench/adaptive_budget.py [--cases mlp_l1_2e-3,...,lenet_l1_1e-3] [--epochs 60]
     [--repeat 1] [--threads 2] [--tolerance 1e-3] [--subsets 250,500,1000] [--omp-wait-policy X]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _omp  # noqa: E402  (bench/: the --omp-wait-policy flag, read before torch is imported)

_omp.apply_from_argv()

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import phasetrans as pt  # noqa: E402
from studies.validation.cases import NET_CASES, case_data  # noqa: E402

DEFAULT_CASES = "mlp_l1_2e-3,mlp_l1_3e-3,mlp_l1_5e-3,mlpwide_l1_2e-3,mlpwide_l1_3e-3,lenet_l1_1e-3"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:  # pragma: no cover
        return "?"


def train(name: str, epochs: int, seed: int = 0):
    cfg = NET_CASES[name]
    loader, hdata, _, make = case_data(cfg, seed, "cpu", None)
    torch.manual_seed(seed)
    model = make()
    t = time.perf_counter()
    pt.train_l1(model, nn.CrossEntropyLoss(), loader, l1=cfg["l1"], epochs=epochs,
                lr=cfg.get("lr", 0.05), seed=seed, progress=False)
    return model, loader, hdata, time.perf_counter() - t


def predict(model, hdata, eps, **kw):
    t = time.perf_counter()
    p = pt.predict_sparsity(model, nn.CrossEntropyLoss(), hdata, eps=eps, **kw)
    return p, time.perf_counter() - t


def run_case(name: str, args) -> dict:
    model, loader, hdata, t_train = train(name, args.epochs)
    eps = pt.estimate_eps(model, nn.CrossEntropyLoss(), loader)
    best = {"adaptive": float("inf"), "fixed": float("inf")}
    preds = {}
    for _ in range(args.repeat):  # interleaved: A, B, A, B
        preds["adaptive"], t = predict(model, hdata, eps, tolerance=args.tolerance)
        best["adaptive"] = min(best["adaptive"], t)
        preds["fixed"], t = predict(model, hdata, eps, num_steps=80, num_probes=10)
        best["fixed"] = min(best["fixed"], t)
    a, f = preds["adaptive"], preds["fixed"]
    budget = a.details["budget"]
    D = a.dim
    row = {"case": name, "dim": D, "epochs": args.epochs, "train_s": t_train,
           "fixed_s": best["fixed"], "adaptive_s": best["adaptive"],
           "fixed_products": f.products, "adaptive_products": a.products,
           "fixed_spectrum_products": 800, "adaptive_spectrum_products": budget["products"],
           "probes": budget["num_probes"], "steps": budget["num_steps"],
           "settled": budget["settled"], "fixed_sparsity": f.sparsity,
           "adaptive_sparsity": a.sparsity, "move_points": 100 * abs(a.sparsity - f.sparsity),
           "fixed_std": (f.uncertainty or {}).get("std"), "adaptive_std": (a.uncertainty or {}).get("std"),
           "depth_change": budget["depth_change"], "uptime": uptime()}
    print(f"{name:16s} D={D:6d} train {t_train:6.2f}s | fixed 80x10 {best['fixed']:7.2f}s "
          f"s*={f.sparsity:.4f} products {f.products} | adaptive {best['adaptive']:6.2f}s "
          f"s*={a.sparsity:.4f} ({budget['num_probes']}x{budget['num_steps']}, spectrum products "
          f"{budget['products']}, total {a.products}, settled {budget['settled']}) "
          f"moved {row['move_points']:.3f} pt | {row['uptime']}", flush=True)
    if args.subsets:
        full = a.sparsity
        row["subsets"] = []
        n_total = int(hdata[1].shape[0])
        for n in [int(x) for x in args.subsets.split(",")]:
            if n >= n_total:
                continue
            # a seeded permutation first: the digits training order is not class-balanced by n
            perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(0))
            shuffled = (hdata[0][perm], hdata[1][perm])
            p, t = predict(model, shuffled, eps, tolerance=args.tolerance, hessian_samples=n)
            sub = {"n": n, "sparsity": p.sparsity, "error_points": 100 * abs(p.sparsity - full),
                   "std_points": 100 * (p.uncertainty or {}).get("std", float("nan")), "seconds": t,
                   "products": p.products}
            row["subsets"].append(sub)
            print(f"    hessian_samples={n:5d} of {n_total}: s*={p.sparsity:.4f}, |error| "
                  f"{sub['error_points']:.3f} pt (SLQ std {sub['std_points']:.3f} pt), {t:.2f}s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _omp.add_argument(parser)
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--subsets", default="", help="hessian_samples values, e.g. 250,500,1000")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={_omp.label()}")
    rows = [run_case(name, args) for name in args.cases.split(",")]
    fixed = sum(r["fixed_products"] for r in rows)
    adaptive = sum(r["adaptive_products"] for r in rows)
    spec = sum(r["adaptive_spectrum_products"] for r in rows)
    print(f"\nall cases: spectrum products 800 x {len(rows)} / adaptive {spec}: "
          f"{800 * len(rows) / spec:.2f}x fewer; with the trace stage {fixed} / {adaptive}: "
          f"{fixed / adaptive:.2f}x; largest move {max(r['move_points'] for r in rows):.3f} pt")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
