"""Cost of full reorthogonalisation in ``pt.slq``: Lanczos alone (a cheap diagonal operator,
D = 85,002, K = 8 probes, 40 steps): two Gram-Schmidt passes (current ``reorth="full"``), DGKS
(second pass only when a probe's norm drops below 1/sqrt(2); monkeypatched here, a suggestion for
spectral.py), and ``reorth="none"``. Interleaved, best of 3.

Run: python bench/lanczos_reorth.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import phasetrans as pt  # noqa: E402
from phasetrans import spectral as sp  # noqa: E402
from phasetrans.operators import Operator  # noqa: E402


class Diag(Operator):
    def __init__(self, d):
        self.d, self.dim, self.dtype, self.device = d, d.numel(), torch.float64, torch.device("cpu")

    def _matmat(self, V):
        return self.d[:, None] * V


def dgks(self, w, j):
    B = self.basis[:, : j + 1]
    n0 = torch.linalg.vector_norm(w, dim=0)
    w = w - torch.bmm(B.transpose(1, 2), torch.bmm(B, w.T.unsqueeze(-1))).squeeze(-1).T
    if bool((torch.linalg.vector_norm(w, dim=0) < 0.7071 * n0).any()):
        w = w - torch.bmm(B.transpose(1, 2), torch.bmm(B, w.T.unsqueeze(-1))).squeeze(-1).T
    return w


def main():
    torch.set_num_threads(2)
    op = Diag(torch.linspace(-1, 10, 85002, dtype=torch.float64) ** 3)
    orig = sp._Lanczos._orthogonalise

    def run(orth, reorth):
        sp._Lanczos._orthogonalise = orth
        try:
            return pt.slq(op, 40, 8, reorth=reorth)
        finally:
            sp._Lanczos._orthogonalise = orig

    fns = {"full (2 passes)": lambda: run(orig, "full"), "full DGKS": lambda: run(dgks, "full"),
           "none": lambda: run(orig, "none")}
    best, res = {k: float("inf") for k in fns}, {}
    for _ in range(3):
        for k, f in fns.items():
            t = time.perf_counter()
            res[k] = f()
            best[k] = min(best[k], time.perf_counter() - t)
    for k in fns:
        print(f"{k:18s} {best[k]:6.2f} s  top Ritz {float(res[k].nodes.max()):.10f}")
    diff = float((res["full (2 passes)"].nodes - res["full DGKS"].nodes).abs().max())
    print(f"max |node difference| full vs DGKS: {diff:.1e}")


if __name__ == "__main__":
    main()
