"""Cost of reorthogonalisation in ``pt.slq``: Lanczos alone (a cheap diagonal operator,
D = 85,002, K = 8 probes, 40 steps), so that only the recurrence and the Gram-Schmidt work count:

- ``full, 2 passes bmm (old)``: the previous ``reorth="full"``: two classical Gram-Schmidt passes
  every step, each two batched ``bmm`` over the ``(K, j+1, D)`` basis (monkeypatched here);
- ``full`` (default): one pass per probe as two matrix-vector products on its contiguous
  ``(j+1, D)`` block, a second pass only for the probes whose norm fell below 1/sqrt(2) (DGKS);
- ``partial``: Simon's partial reorthogonalisation (omega-recurrence, threshold sqrt(eps));
- ``none``: the three-term recurrence only.

Also prints the Gram-Schmidt passes per probe and the largest node difference to ``full``.
Interleaved, best of ``--repeat``.

Run: python bench/lanczos_reorth.py [--threads 2] [--repeat 3] [--dim 85002] [--probes 8] [--steps 40]
     [--dtype float64]  (ResNet-18 size: --dim 11173962 --probes 4 --steps 10 --dtype float32)
"""

from __future__ import annotations

import argparse
import math
import time

import _omp  # noqa: E402  (bench/: the --omp-wait-policy flag, read before torch is imported)

_omp.apply_from_argv()

import torch  # noqa: E402

import phasetrans as pt  # noqa: E402
from phasetrans.linalg import lanczos as lz_mod  # noqa: E402
from phasetrans.linalg import probes  # noqa: E402
from phasetrans.linalg.operator import Operator  # noqa: E402


class Diag(Operator):
    def __init__(self, d):
        self.d, self.dim, self.dtype, self.device = d, d.numel(), d.dtype, torch.device("cpu")

    def _matmat(self, V):
        return self.d[:, None] * V


def two_pass_bmm(self, W, j, probes=None):
    """The old ``_Lanczos._orthogonalise``: two passes, batched over all probes (rows ``W``)."""
    B = self.basis[:, : j + 1]
    for _ in range(2):
        c = torch.bmm(B, W.unsqueeze(-1))
        W = W - torch.bmm(B.transpose(1, 2), c).squeeze(-1)
    return W


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _omp.add_argument(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--dim", type=int, default=85002)
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"),
                        help="the operator's dtype (float32: a float32 model's products)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    op = Diag(torch.linspace(-1, 10, args.dim, dtype=getattr(torch, args.dtype)) ** 3)
    print(f"diagonal operator, D = {args.dim}, {args.dtype}; {args.probes} probes x {args.steps} steps")
    orig = lz_mod.Lanczos._orthogonalise

    def run(reorth, orth=orig):
        lz_mod.Lanczos._orthogonalise = orth
        try:
            return pt.slq(op, args.steps, args.probes, reorth=reorth)
        finally:
            lz_mod.Lanczos._orthogonalise = orig

    fns = {"full, 2 passes bmm (old)": lambda: run("full", two_pass_bmm), "full (DGKS)": lambda: run("full"),
           "partial": lambda: run("partial"), "none": lambda: run("none")}
    best, res = {k: float("inf") for k in fns}, {}
    for _ in range(args.repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            res[k] = f()
            best[k] = min(best[k], time.perf_counter() - t)
    ref = res["full (DGKS)"]
    for k in fns:
        diff = float(((res[k].nodes - ref.nodes).abs() / ref.nodes.abs().max()).max())
        print(f"{k:26s} {best[k]:6.2f} s  old/this {best['full, 2 passes bmm (old)'] / best[k]:5.2f}  "
              f"top Ritz {float(res[k].nodes.max()):.10f}  max |node - full| / |H| {diff:.1e}")
    for reorth in ("full", "partial"):
        Q0 = probes.rademacher(op.dim, args.probes, 0) / math.sqrt(op.dim)
        lz = lz_mod.Lanczos(op, Q0, args.steps, reorth, lz_mod.breakdown_tol(op))
        lz.run(args.steps)
        print(f"{reorth}: Gram-Schmidt passes per probe {lz.passes.tolist()} in {args.steps} steps; "
              f"max ||Q^T Q - I|| {float(lz.orthogonality().max()):.1e}")


if __name__ == "__main__":
    main()
