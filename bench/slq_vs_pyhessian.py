"""SLQ: phasetrans (probes in lock-step, one data pass per Lanczos step) vs PyHessian 0.1
(probes one after the other, one data pass per step per probe), same model, data, steps, probes.

Model: digits MLP 64-256-256-10 (85,002 parameters, all of them, as PyHessian uses every parameter
that requires grad), briefly trained; data: scikit-learn digits (1797 samples, pixels / 16) in a
DataLoader with batches of 256 (last batch of 5: "uneven"), and the first 1792 samples ("even").
PyHessian: ``hessian(model, CrossEntropyLoss(), dataloader=loader, cuda=False).density(iter, n_v)``
(its dataloader mode, full_dataset=True). Its release calls the removed ``torch.eig``; the bench
shims it (PyHessian only) with a ``torch.linalg.eigh`` replacement returning the old layout.

Timings are best-of-``--repeat``, the peers interleaved in one loop (A, B, A, B, ...), on a shared
machine: read the ratios, not the absolute times.

``--model resnet18``: a CIFAR-style ResNet-18 (11.2M parameters, eval mode) on ``--num-images``
synthetic 3x32x32 images in batches of ``--batch-size`` (the issue's GPU case; ``--device cuda``
runs both codes on the GPU, PyHessian with ``cuda=True``).

Run: python bench/slq_vs_pyhessian.py [--threads 2] [--steps 40] [--probes 8] [--repeat 3]
     [--variants auto/full,auto/partial,backward/full,func/full,nocache/full,batched/full,...]
     [--model mlp|resnet18] [--device cpu|cuda] [--num-images 512]
Needs: pip install --no-deps pyhessian==0.1
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import _omp  # noqa: E402  (bench/: the --omp-wait-policy flag, read before torch is imported)

_omp.apply_from_argv()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import phasetrans as pt  # noqa: E402


def _eig_shim(A, eigenvectors=False):
    """``torch.eig`` (removed in torch 2.x) for the symmetric tridiagonal PyHessian builds:
    eigenvalues as an ``(n, 2)`` (real, imaginary) tensor and eigenvectors as columns."""
    w, U = torch.linalg.eigh(A.to(torch.float64))
    vals = torch.stack([w, torch.zeros_like(w)], 1).to(A.dtype)
    return vals, (U.to(A.dtype) if eigenvectors else torch.empty(0, dtype=A.dtype))


def digits(n=None):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    if n is not None:
        X, y = X[:n], y[:n]
    return X, y


def trained_mlp(X, y, epochs=30):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 128):
            idx = perm[i : i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def pyhessian_density(model, loader, steps, probes, seed=0):
    from pyhessian import hessian

    cuda = next(model.parameters()).is_cuda
    torch.manual_seed(seed)
    eig = getattr(torch, "eig", None)
    torch.eig = _eig_shim
    try:
        h = hessian(model, nn.CrossEntropyLoss(), dataloader=loader, cuda=cuda)
        eigs, weights = h.density(iter=steps, n_v=probes)
    finally:
        if eig is None:
            del torch.eig
        else:
            torch.eig = eig
    model.zero_grad(set_to_none=True)
    return np.array(eigs, dtype=np.float64), np.array(weights, dtype=np.float64)


def ours(model, loader, steps, probes, method="auto", reorth="full", cache_bytes=None):
    """``method`` "nocache": the default method with graph reuse off (``cache_bytes=0``);
    "batched": the default method with the kept graphs' columns always in one batched backward
    (``column_loop`` off: the behaviour before issue 18's loop over columns on one CPU thread)."""
    if method == "nocache":
        method, cache_bytes = "auto", 0
    if method == "batched":
        from phasetrans.linalg import hessian

        loop = hessian.column_loop
        hessian.column_loop = lambda *args: False
        try:
            return ours(model, loader, steps, probes, "auto", reorth, cache_bytes)
        finally:
            hessian.column_loop = loop
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), loader, params="all", method=method,
                           cache_bytes=cache_bytes)
    return pt.slq(H, num_steps=steps, num_probes=probes, seed=0, reorth=reorth)


class _DeviceLoader:
    """A re-iterable list of batches already on the device (both codes get the same batches;
    PyHessian's ``.cuda()`` on them is then a no-op)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def best_of(fns, repeat):
    """Interleaved best-of-``repeat`` wall times of ``fns`` (name -> callable); last results kept."""
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)
    best = {k: float("inf") for k in fns}
    results = {}
    for _ in range(repeat):
        for k, f in fns.items():
            sync()
            t = time.perf_counter()
            results[k] = f()
            sync()
            best[k] = min(best[k], time.perf_counter() - t)
    return best, results


def timings_table(model, loader, args):
    """PyHessian and our ``--variants`` interleaved; prints best times, ratios and top Ritz
    values; returns the last results and the top Ritz values by code."""
    fns = {"pyhessian": lambda: pyhessian_density(model, loader, args.steps, args.probes)}
    for variant in args.variants.split(","):
        method, reorth = variant.split("/")
        fns[f"ours {method}/{reorth}"] = (lambda m=method, r=reorth: ours(model, loader, args.steps, args.probes, m, r))
    best, results = best_of(fns, args.repeat)
    t_py = best["pyhessian"]
    print(f"\n{'code':24s} {'best s':>8s} {'PyHessian / this':>17s} {'top Ritz':>12s}")
    top = {}
    for k, t in best.items():
        r = results[k]
        top[k] = float(np.max(r[0])) if k == "pyhessian" else float(r.nodes.max())
        print(f"{k:24s} {t:8.2f} {t_py / t:17.2f} {top[k]:12.6f}")
    return results, top


def machine():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"OMP_WAIT_POLICY={_omp.label()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _omp.add_argument(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variants", default="auto/full,auto/partial,nocache/full",
                        help="our method/reorth variants to time; method nocache = auto, cache_bytes=0; "
                             "batched = auto with the kept graphs' columns batched (column_loop off)")
    parser.add_argument("--model", default="mlp", choices=("mlp", "resnet18"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-images", type=int, default=512, help="resnet18: synthetic images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    if args.model == "resnet18":
        return resnet_case(args)
    X, y = digits()
    model = trained_mlp(X, y)
    D = sum(p.numel() for p in model.parameters())
    bs = args.batch_size
    uneven = DataLoader(TensorDataset(X, y), batch_size=bs, shuffle=False)
    n_even = (len(y) // bs) * bs
    even = DataLoader(TensorDataset(X[:n_even], y[:n_even]), batch_size=bs, shuffle=False)
    print(f"MLP 64-256-256-10, D = {D}; {args.steps} steps x {args.probes} probes; batches of {bs}: "
          f"uneven N = {len(y)} (last batch {len(y) % bs}), even N = {n_even}")

    # 1. does PyHessian weight an uneven last batch exactly? one product, both codes
    from pyhessian import hessian

    h = hessian(model, nn.CrossEntropyLoss(), dataloader=uneven, cuda=False)
    v = [torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) for p in h.params]
    _, Hv_py = h.dataloader_hv_product(v)
    model.zero_grad(set_to_none=True)
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), uneven, params="all")
    Hv = H @ torch.cat([t.reshape(-1) for t in v])
    Hv_py = torch.cat([t.reshape(-1) for t in Hv_py])
    print(f"one product on uneven batches: |H v (PyHessian) - H v (ours)| / |H v| = "
          f"{float((Hv_py - Hv).norm() / Hv.norm()):.2e}  (float32 rounding level: exact weighting in both)")

    # 2. timings, interleaved
    results, top = timings_table(model, uneven, args)

    # 2b. reorthogonalisation: Ritz values against "full", Gram-Schmidt passes of "partial"
    full = results.get("ours auto/full")
    if full is not None:
        for k, r in results.items():
            if k.startswith("ours") and k != "ours auto/full":
                top_d = (r.nodes[:, -1] - full.nodes[:, -1]).abs().max() / full.nodes[:, -1].abs().max()
                w_d = (r.weights[:, -1] - full.weights[:, -1]).abs().max() / full.weights[:, -1].abs().max()
                f = lambda x: torch.exp(-x)  # noqa: E731
                e_d = abs(r.expect(f).value - full.expect(f).value) / abs(full.expect(f).value)
                print(f"{k} vs full: top Ritz value per probe {float(top_d):.1e} rel., its weight "
                      f"{float(w_d):.1e} rel., expect(exp(-x)) {e_d:.1e} rel.")
    if "partial" in args.variants:
        from phasetrans.linalg import lanczos as lz_mod
        from phasetrans.linalg import probes

        H = pt.HessianOperator(model, nn.CrossEntropyLoss(), uneven, params="all")
        lz = lz_mod.Lanczos(H, probes.rademacher(H.dim, args.probes, 0, H.device) / D**0.5, args.steps,
                         "partial", lz_mod.breakdown_tol(H))
        with torch.no_grad():
            lz.run(args.steps)
        print(f"partial: Gram-Schmidt passes per probe {lz.passes.tolist()} in {args.steps} steps "
              f"(full: {args.steps}); max ||Q^T Q - I|| {float(lz.orthogonality().max()):.1e}")

    # 3. top Ritz values vs a converged top eigenvalue, uneven and even batches
    print("\ntop Ritz value vs pt.top_eigenvalues (relative difference)")
    for name, loader in (("uneven", uneven), ("even", even)):
        H = pt.HessianOperator(model, nn.CrossEntropyLoss(), loader, params="all")
        lam = float(pt.top_eigenvalues(H, k=1, seed=0).values[0])
        t_ours = float(ours(model, loader, args.steps, args.probes).nodes.max()) if name == "even" else top["ours auto/full"]
        t_py = float(np.max(pyhessian_density(model, loader, args.steps, args.probes)[0])) if name == "even" else top["pyhessian"]
        print(f"  {name:6s}: lambda_max = {lam:.6f}; ours {t_ours:.6f} ({abs(t_ours - lam) / lam:.1e}); "
              f"PyHessian {t_py:.6f} ({abs(t_py - lam) / lam:.1e}); ours vs PyHessian {abs(t_ours - t_py) / abs(t_py):.1e}")


def resnet_case(args):
    """SLQ timings and top Ritz values on a CIFAR-style ResNet-18, synthetic images."""
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")
    torch.manual_seed(0)
    model = pt.models.resnet18().to(device).eval()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(args.num_images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.num_images,), generator=g)
    bs = args.batch_size
    loader = _DeviceLoader([(X[i : i + bs].to(device), y[i : i + bs].to(device)) for i in range(0, len(y), bs)])
    D = sum(p.numel() for p in model.parameters())
    print(f"ResNet-18 (CIFAR-style), D = {D}; {args.steps} steps x {args.probes} probes; "
          f"{args.num_images} synthetic images in batches of {bs}; device {device}")
    timings_table(model, loader, args)
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
