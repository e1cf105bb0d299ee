"""Hessian-product cost against the gradient floor.

For the digits MLP 64-256-256-10, a small CNN and a CIFAR-style ResNet-18 on synthetic images: one
``H @ V`` pass over the data with ``K`` columns, divided by one plain gradient pass
(``loss.backward()`` over the same batches, same model). Variants:

- ``cached``: the default operator (``method="auto"``), whose gradient graphs are kept after the
  first product (graph reuse): the steady state of SLQ, Lanczos and trace estimation;
- ``first``: a fresh default operator every call, i.e. the product that builds the graphs;
- ``backward``: double backward recomputed every product (``cache_bytes=0``);
- ``func``: ``vmap(jvp(grad))`` recomputed every product.

Reports the pass ratio and the per-probe ratio (pass / K / gradient pass). All peers are
interleaved in one loop (A, B, A, B, ...), best of ``--repeat``.

``--compile``: also tries ``torch.compile`` on the product (a compiled model under double
backward, and a compiled ``jvp(grad)`` function), kept out of the package unless it wins.

Run: python bench/hvp_methods.py [--threads 2] [--repeat 7] [--ks 1,4,8,16]
       [--variants cached,first,backward,func] [--models mlp,cnn,resnet18] [--device cpu] [--compile]
"""

from __future__ import annotations

import argparse
import os
import time

import _omp  # noqa: E402  (bench/: the --omp-wait-policy flag, read before torch is imported)

_omp.apply_from_argv()

import torch  # noqa: E402
from torch import nn  # noqa: E402

import phasetrans as pt  # noqa: E402


def digits_batches(batch_size=256, image=False):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    if image:
        X = X.view(-1, 1, 8, 8)
    y = torch.tensor(y)
    return [(X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


def resnet_batches(num_images=128, batch_size=32):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(num_images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (num_images,), generator=g)
    return [(X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, num_images, batch_size)]


def models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    cnn = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 10),
    )
    return {"mlp 64-256-256-10": (mlp, "digits"), "cnn 16-32": (cnn, "digits-image"),
            "resnet18 (CIFAR-style, 128 synthetic images)": (pt.models.resnet18().eval(), "synthetic")}


def batches(kind):
    if kind == "synthetic":
        return resnet_batches()
    return digits_batches(image=kind == "digits-image")


def operator(variant, model, loss_fn, data):
    if variant == "backward":
        return pt.HessianOperator(model, loss_fn, data, params="all", method="backward", cache_bytes=0)
    if variant == "func":
        return pt.HessianOperator(model, loss_fn, data, params="all", method="func")
    return pt.HessianOperator(model, loss_fn, data, params="all", cache_bytes=8 << 30)


def product(variant, H, model, loss_fn, data, V):
    if variant == "first":
        return lambda: operator("first", model, loss_fn, data) @ V
    return lambda: H @ V


def interleaved(fns, repeat):
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)
    for f in fns.values():
        f()  # warm-up
    sync()
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            sync()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def gradient_pass(model, loss_fn, data):
    def run():
        for xb, yb in data:
            loss_fn(model(xb), yb).backward()
        model.zero_grad(set_to_none=True)

    return run


def try_compile(model, loss_fn, data, repeat):
    """torch.compile on the product: (a) a compiled model under double backward, (b) a compiled
    jvp(grad) batch product. Prints what happens (errors included) and the timings."""
    from torch.func import functional_call, grad, jvp

    H = pt.HessianOperator(model, loss_fn, data, params="all")
    v = torch.randn(H.dim)
    ref = H @ v
    names = H.param_names
    params = {n: p.detach() for n, p in model.named_parameters()}
    vs = H.unflatten(v)
    N = sum(len(y) for _, y in data)

    def loss_of(p, x, y):
        return loss_fn(functional_call(model, p, (x,)), y)

    def batch_hvp(p, t, x, y):
        return jvp(lambda q: grad(loss_of)(q, x, y), (p,), (t,))[1]

    eager = {}
    for label, fn in (("eager jvp(grad)", batch_hvp), ("compiled jvp(grad)", torch.compile(batch_hvp))):
        def run(fn=fn):
            total = torch.zeros(H.dim, dtype=torch.float64)
            for x, y in data:
                out = fn(params, vs, x, y)
                total += len(y) * torch.cat([out[n].reshape(-1) for n in names]).double()
            return total / N

        try:
            t = time.perf_counter()
            out = run()
            first = time.perf_counter() - t
            err = float((out.float() - ref).norm() / ref.norm())
            eager[label] = run
            print(f"  {label:22s} first call {first:7.2f} s, rel. error vs H @ v {err:.1e}")
        except Exception as exc:  # noqa: BLE001 - report whatever compile raises
            print(f"  {label:22s} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:150]}")
    compiled_model = torch.compile(model)
    Hc = pt.HessianOperator(compiled_model, loss_fn, data, params="all")
    try:
        t = time.perf_counter()
        out = Hc @ v
        print(f"  {'compiled model, dbl bwd':22s} first call {time.perf_counter() - t:7.2f} s, rel. error "
              f"{float((out - ref).norm() / ref.norm()):.1e}")
        eager["compiled model, double backward"] = lambda: Hc @ v
    except Exception as exc:  # noqa: BLE001
        print(f"  {'compiled model, dbl bwd':22s} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:150]}")
    eager["HessianOperator backward"] = lambda: H @ v
    best = interleaved(eager, repeat)
    base = best["HessianOperator backward"]
    for k, t in best.items():
        print(f"  {k:34s} {t * 1e3:8.1f} ms  ({t / base:.2f}x HessianOperator)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _omp.add_argument(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ks", default="1,4,8,16")
    parser.add_argument("--variants", default="cached,first,backward,func")
    parser.add_argument("--models", default="mlp,cnn,resnet18")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={_omp.label()}")
    ks = [int(k) for k in args.ks.split(",")]
    variants = args.variants.split(",")
    loss_fn = nn.CrossEntropyLoss()
    device = torch.device(args.device)
    for name, (model, kind) in models().items():
        if not any(name.startswith(m) for m in args.models.split(",")):
            continue
        model = model.to(device)
        data = [(x.to(device), y.to(device)) for x, y in batches(kind)]
        fns = {"gradient": gradient_pass(model, loss_fn, data)}
        ops = {m: operator(m, model, loss_fn, data) for m in variants}
        dim = next(iter(ops.values())).dim
        for K in ks:
            V = torch.randn(dim, K, device=device)
            for m in variants:
                fns[f"{m} K={K}"] = product(m, ops[m], model, loss_fn, data, V)
        best = interleaved(fns, args.repeat)
        g = best["gradient"]
        kept = {m: H.cached_bytes for m, H in ops.items() if m == "cached"}
        print(f"\n{name}: D = {dim}, {len(data)} batches; gradient pass {g * 1e3:.1f} ms; "
              f"kept graphs {kept.get('cached', 0) / 2**20:.0f} MiB")
        print(f"{'product':14s} {'ms':>9s} {'pass/grad':>10s} {'per probe/grad':>15s}")
        for k, t in best.items():
            if k == "gradient":
                continue
            K = int(k.split("K=")[1])
            print(f"{k:14s} {t * 1e3:9.1f} {t / g:10.2f} {t / K / g:15.2f}")
        if args.compile and device.type == "cpu":
            print(f"\n{name}: torch.compile")
            try_compile(model, loss_fn, data, args.repeat)


if __name__ == "__main__":
    main()
