"""Columns of ``H @ V`` through convolutions: the native double backward, the loop over columns
and the batched backward chosen by ``linalg/_conv_rules.ColumnsChoice``, by batch size.

The small CNN of ``bench/hvp_methods.py`` (conv 16-32 on the 8x8 digits, all parameters, kept
graphs), every product after the first. Variants, all on one operator each:

- ``native``: graphs built without ``ConvRules`` (the previous code: native
  ``_convolution_double_backward``, a loop over columns);
- ``loop``: graphs under ``ConvRules``, a loop over columns;
- ``rule``: the default operator (batched backwards of ``c`` columns when the rule says so).

Prints gradient passes per column (product time / K / one plain gradient pass), timed as process
CPU time (``time.process_time``, steadier than wall time on a shared machine; with ``--threads 1``
they agree), peers interleaved, best of ``--repeat``; and the rule's choice per batch size.
These are the numbers of the comment at ``COLUMN_BYTES`` in ``phasetrans/linalg/_conv_rules.py``.

Run (from the repository root, so that this checkout is imported):
  PYTHONPATH=. python bench/conv_columns.py [--threads 1] [--batch-sizes 16,32,64,128,256] [--ks 4,8,16]
         [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from hvp_methods import digits_batches, gradient_pass, models
from torch import nn

import phasetrans as pt


def operators(model, loss_fn, data):
    ops = {}
    for variant in ("native", "loop", "rule"):
        H = pt.HessianOperator(model, loss_fn, data, params="all", cache_bytes=8 << 30)
        if variant == "native":
            H._has_conv = False  # graphs without ConvRules: the native double backward
        H @ torch.randn(H.dim, 2)  # builds and keeps the graphs
        if variant == "loop":
            H._columns = (False, None)
        ops[variant] = H
    return ops


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", default="16,32,64,128,256")
    parser.add_argument("--ks", default="4,8,16")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.ks.split(",")]
    model = models()["cnn 16-32"][0]
    loss_fn = nn.CrossEntropyLoss()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; gradient passes per column, "
          "native | loop | rule")
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        data = digits_batches(bs, image=True)
        ops = operators(model, loss_fn, data)
        fns = {"gradient": gradient_pass(model, loss_fn, data)}
        for K in ks:
            V = torch.randn(ops["rule"].dim, K)
            for name, H in ops.items():
                fns[(name, K)] = lambda H=H, V=V: H @ V
        for f in fns.values():
            f()
        best = {k: float("inf") for k in fns}
        for _ in range(args.repeat):
            for k, f in fns.items():
                t = time.process_time()
                f()
                best[k] = min(best[k], time.process_time() - t)
        g = best["gradient"]
        cells = " | ".join(
            " / ".join(f"{best[(name, K)] / K / g:.2f}" for K in ks) for name in ops
        )
        print(f"batches of {bs:4d} (rule {ops['rule']._columns}): K = {args.ks}: {cells}")


if __name__ == "__main__":
    main()
