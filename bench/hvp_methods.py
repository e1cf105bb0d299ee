"""Hessian-vector product methods side by side: vmap(jvp(grad)) ("func") vs graph-reusing double
backward ("backward"), for K probe columns, plus the floor ratio (one K=1 product pass / one
gradient pass). Run: python bench/hvp_methods.py [--threads 2]"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import phasetrans as pt


def timeit(fn, repeat=5):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def digits_loader(batch_size=256, image=False):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    if image:
        X = X.view(-1, 1, 8, 8)
    y = torch.tensor(y)
    return [(X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


def models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    cnn = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 10),
    )
    return {"mlp 64-256-256-10": (mlp, False), "cnn 16-32": (cnn, True)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'model':20s} {'K':>3s} {'func s':>8s} {'backward s':>10s} {'func/backward':>13s}")
    for name, (model, image) in models().items():
        data = digits_loader(image=image)
        H = pt.HessianOperator(model, nn.CrossEntropyLoss(), data)
        for K in (1, 8):
            V = torch.randn(H.dim, K)
            times = {}
            for method in ("func", "backward"):
                H.method = method
                times[method] = timeit(lambda: H @ V)
            print(f"{name:20s} {K:3d} {times['func']:8.4f} {times['backward']:10.4f} {times['func'] / times['backward']:13.2f}")
        H.method = "func"
        g = timeit(lambda: H.loss_and_gradient())
        h = timeit(lambda: H @ torch.randn(H.dim))
        print(f"{name:20s} floor: one HVP pass / one gradient pass = {h / g:.2f}")


if __name__ == "__main__":
    main()
