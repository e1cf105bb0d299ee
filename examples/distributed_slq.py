"""Data-parallel Hessian spectrum and prediction with torch.distributed.

Each rank loads its own shard of the data; ``HessianOperator`` all-reduces the batch sums and
sample counts, so ``H @ v``, ``slq``, ``trace`` and the prediction are the whole-data results,
identical on every rank. Only rank 0 prints and writes.

    torchrun --nproc_per_node=2 examples/distributed_slq.py            # CPU, gloo
    torchrun --nproc_per_node=4 examples/distributed_slq.py --backend nccl   # one GPU per rank
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from torch import nn

import phasetrans as pt
from phasetrans.distributed import is_main_process, shard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--num-steps", type=int, default=40)
    parser.add_argument("--num-probes", type=int, default=4)
    parser.add_argument("--out", default=None, help="write the spectrum as JSON here (rank 0 only)")
    args = parser.parse_args()

    torch.distributed.init_process_group(args.backend)
    rank = torch.distributed.get_rank()
    device = torch.device("cpu")
    if args.backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    try:
        Xtr, ytr, _, _ = pt.data.digits_tensors()
        X, y = shard((Xtr, ytr))  # this rank's contiguous (possibly uneven) shard
        data = [(X[i : i + 128], y[i : i + 128]) for i in range(0, len(y), 128)]
        torch.manual_seed(0)  # same initial weights on every rank
        model = pt.models.digits_mlp().to(device)
        H = pt.HessianOperator(model, nn.CrossEntropyLoss(), data)
        density = pt.slq(H, num_steps=args.num_steps, num_probes=args.num_probes, seed=0)
        trace = pt.trace(H, method="hutch++", num_matvecs=60, seed=0)
        if is_main_process():
            print(f"rank {rank}: dim={H.dim} samples={H.num_samples} "
                  f"top Ritz value={density.nodes.max().item():.6g} trace={trace.value:.6g}±{trace.stderr:.2g}")
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(density.to_dict(), f)
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
