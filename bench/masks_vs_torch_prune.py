"""Global magnitude masks: ``pt.magnitude_masks`` (radix selection, chunked) vs
``torch.nn.utils.prune.global_unstructured(..., L1Unstructured)`` on a model of big Linear layers.

Every measurement runs in a fresh subprocess (one method, one call): wall time of the call and
peak memory as the growth of ``ru_maxrss`` during the call (the model is built and touched before,
so the baseline includes it; torch's allocations are invisible to tracemalloc). Methods are
interleaved (ours, torch, ours, torch, ...), best of ``--repeat``. The masks of the two methods are
compared (they may differ only among exactly tied magnitudes).

Run: python bench/masks_vs_torch_prune.py [--layers 4096x4096,4096x4096] [--sparsity 0.9] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

import _omp  # noqa: E402  (bench/: the --omp-wait-policy flag, read before torch is imported)

_omp.apply_from_argv()


def child(method: str, layers: str, sparsity: float, threads: int) -> None:
    import resource
    import time

    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    mods = []
    for spec in layers.split(","):
        o, i = (int(x) for x in spec.split("x"))
        lin = nn.Linear(1, 1)
        with torch.no_grad():  # skip the slow default init: N(0, 1/i) weights, same distribution
            lin.weight = nn.Parameter(torch.randn(o, i) / i**0.5)
            lin.bias = nn.Parameter(torch.zeros(o))
        mods.append(lin)
    model = nn.Sequential(*mods)
    D = sum(m.weight.numel() for m in mods)
    from torch.nn.utils import prune

    import phasetrans as pt  # imported (and the prune module) before the clock starts

    k = pt.pruned_count(sparsity, D)  # ⌈sD⌉; torch gets the same count (an int amount)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if method == "ours":
        masks = pt.magnitude_masks(model, sparsity)
        elapsed = time.perf_counter() - t
        keep = [masks[f"{j}.weight"] for j in range(len(mods))]
    else:
        prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured,
                                  amount=k)
        elapsed = time.perf_counter() - t
        keep = [m.weight_mask.bool() for m in mods]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    digest = hashlib.sha256(b"".join(k.numpy().tobytes() for k in keep)).hexdigest()[:16]
    kept = int(sum(int(k.sum()) for k in keep))
    print(json.dumps(dict(method=method, D=D, seconds=elapsed, peak_mib=(peak - before) / 1024,
                          kept=kept, digest=digest)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _omp.add_argument(parser)
    parser.add_argument("--layers", default="4096x4096,4096x1024,1024x4096,2048x2048")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.layers, args.sparsity, args.threads)
        return
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} torch threads; layers "
          f"{args.layers}; sparsity {args.sparsity}")
    runs: dict[str, list[dict]] = {"ours": [], "torch": []}
    for _ in range(args.repeat):
        for method in runs:
            out = subprocess.run(
                [sys.executable, __file__, "--child", method, "--layers", args.layers, "--sparsity",
                 str(args.sparsity), "--threads", str(args.threads)],
                check=True, capture_output=True, text=True,
            ).stdout
            runs[method].append(json.loads(out.strip().splitlines()[-1]))
    best = {m: min(r["seconds"] for r in rs) for m, rs in runs.items()}
    peak = {m: min(r["peak_mib"] for r in rs) for m, rs in runs.items()}
    D = runs["ours"][0]["D"]
    print(f"D = {D:,} weights ({D * 4 / 2**20:.0f} MiB float32)")
    print(f"{'method':8s} {'best s':>8s} {'peak MiB':>9s} {'kept':>12s} digest")
    for m in runs:
        r = runs[m][0]
        print(f"{m:8s} {best[m]:8.3f} {peak[m]:9.0f} {r['kept']:12,d} {r['digest']}")
    same = runs["ours"][0]["digest"] == runs["torch"][0]["digest"]
    print(f"torch / ours: time {best['torch'] / best['ours']:.2f}x, peak memory "
          f"{peak['torch'] / max(peak['ours'], 1e-9):.2f}x; masks identical: {same}")


if __name__ == "__main__":
    main()
