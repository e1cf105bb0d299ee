"""Worker run in each of the spawned ranks by tests/test_distributed.py (gloo on 127.0.0.1)."""

from __future__ import annotations

import os

import torch
from torch import nn


def problem():
    """A float64 MLP and 37 samples (whole data), identical in every process."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 4)).double()
    g = torch.Generator().manual_seed(1)
    X = torch.randn(37, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (37,), generator=g)
    return model, X, y


def batches(X, y, batch_size=5):
    return [(X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


def worker(rank: int, world_size: int, port: int, out_dir: str, task: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        import phasetrans as pt
        from phasetrans.distributed import shard

        model, X, y = problem()
        Xs, ys = shard((X, y))  # uneven shards: 37 = 19 + 18
        H = pt.HessianOperator(model, nn.CrossEntropyLoss(), batches(Xs, ys))
        assert H.distributed
        result = {"shard": len(ys)}
        V = torch.randn(H.dim, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
        result["HV"] = H @ V
        loss, gradient, _, _ = H.loss_and_gradient()
        result["loss"], result["gradient"] = loss, gradient
        result["num_samples"] = H.num_samples
        if task == "all":
            density = pt.slq(H, num_steps=12, num_probes=3, seed=4)
            result["nodes"], result["weights"] = density.nodes, density.weights
            # per-rank memory budgets that differ (2 probes' bases on rank 0, 3 on rank 1): the
            # ranks must agree on one grouping, or their all-reduced products would not pair up
            per_probe = 12 * H.dim * 8
            grouped = pt.slq(H, num_steps=12, num_probes=3, seed=4, basis_bytes=(2 + rank) * per_probe)
            result["grouped_nodes"], result["grouped_weights"] = grouped.nodes, grouped.weights
            est = pt.trace(H, method="hutchinson", num_matvecs=20, seed=2)
            result["trace"] = (est.value, est.stderr)
            top = pt.top_eigenvalues(H, k=2, seed=1)
            result["top"] = top.values
            data = batches(Xs, ys)
            result["accuracy"] = pt.evaluate_accuracy(model, data)
            result["loss_eval"] = pt.evaluate_loss(model, nn.CrossEntropyLoss(), data)
            pred = pt.predict_sparsity(model, nn.CrossEntropyLoss(), data, num_steps=10, num_probes=3,
                                       trace_method=None, bootstrap=20)
            result["eps"], result["predicted"] = pred.eps, pred.sparsity
            found = pt.find_threshold(model, lambda m: pt.evaluate_accuracy(m, data), resolution=0.01)
            result["threshold"] = (found.sparsity, found.points)
            sweep_path = os.path.join(out_dir, "sweep.jsonl")
            result["sweep"] = pt.sweep(model, lambda m: pt.evaluate_loss(m, nn.CrossEntropyLoss(), data),
                                       [0.0, 0.5, 0.9], path=sweep_path, progress=False)
        if task == "disagree":
            # issue 16: ranks with other weights, or other settings, are refused on every rank
            errors = {}
            for name, call in (
                ("num_steps", lambda: pt.slq(H, num_steps=6 + rank, num_probes=2, seed=0)),
                ("seed", lambda: pt.trace(H, num_matvecs=8, seed=rank)),
                ("num_probes", lambda: pt.slq(H, num_steps=6, num_probes=2 + rank)),
            ):
                try:
                    call()
                    errors[name] = None
                except ValueError as exc:
                    errors[name] = str(exc)
            with torch.no_grad():
                model[0].bias[0] += rank  # rank 1 holds other (non-selected) weights
            try:
                pt.slq(H, num_steps=6, num_probes=2, seed=0)
                errors["weights"] = None
            except ValueError as exc:
                errors["weights"] = str(exc)
            result["errors"] = errors
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()
