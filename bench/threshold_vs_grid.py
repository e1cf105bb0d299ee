"""Empirical pruning threshold: ``pt.find_threshold`` (bisection + local scan) vs the reference
code's brute-force grid (test accuracy at every s = j/1000, j = 0..1000, the largest holding s).

Model: digits MLP 64-256-256-10 trained with ``pt.train_l1`` (LOMP recipe) for ``--epochs``;
metric: test accuracy (500 held-out digits). Both use ``pt.pruned`` + ``pt.evaluate_accuracy``,
so the per-evaluation cost is the same; the grid loop is the reference's algorithm. Reports the
evaluations, wall time and the two answers (they must agree).

Run: python bench/threshold_vs_grid.py [--epochs 10] [--l1 1e-4] [--tolerance 0.0]
"""

from __future__ import annotations

import argparse
import time

import _omp  # noqa: E402  (bench/: the --omp-wait-policy flag, read before torch is imported)

_omp.apply_from_argv()

import torch  # noqa: E402
from torch import nn  # noqa: E402

import phasetrans as pt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _omp.add_argument(parser)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--l1", type=float, default=1e-4)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--tolerance", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = pt.data.digits(batch_size=64)
    torch.manual_seed(0)
    model = pt.models.digits_mlp(hidden=(256, 256))
    t = time.perf_counter()
    pt.train_l1(model, nn.CrossEntropyLoss(), train, l1=args.l1, epochs=args.epochs, lr=args.lr, progress=False)
    t_train = time.perf_counter() - t
    model.eval()

    def acc(m):
        return pt.evaluate_accuracy(m, test)

    base = acc(model)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; digits MLP 64-256-256-10, "
          f"l1 {args.l1}, {args.epochs} epochs ({t_train:.1f} s); test accuracy {base:.4f}; "
          f"tolerance {args.tolerance}")

    t = time.perf_counter()
    res = pt.find_threshold(model, acc, baseline=base, tolerance=args.tolerance, resolution=1e-3)
    t_ours = time.perf_counter() - t

    t = time.perf_counter()
    holding = 0.0
    for j in range(1001):
        s = j / 1000
        with pt.pruned(model, s):
            if acc(model) >= base - args.tolerance:
                holding = s
    t_grid = time.perf_counter() - t

    print(f"{'method':16s} {'evaluations':>11s} {'seconds':>8s} {'threshold':>9s}")
    print(f"{'find_threshold':16s} {res.evaluations:11d} {t_ours:8.2f} {res.sparsity:9.3f}")
    print(f"{'1000-point grid':16s} {1001:11d} {t_grid:8.2f} {holding:9.3f}")
    print(f"grid / find_threshold: {1001 / res.evaluations:.0f}x fewer evaluations, {t_grid / t_ours:.0f}x faster; "
          f"same answer: {abs(res.sparsity - holding) < 1e-12}")


if __name__ == "__main__":
    main()
