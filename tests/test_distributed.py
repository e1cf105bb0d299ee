"""Data-parallel Hessian products over torch.distributed: 2 CPU processes (gloo on 127.0.0.1)
with uneven shards must reproduce the single-process whole-data results (issue 9)."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
from _dist_worker import batches, problem, worker
from torch import nn

import phasetrans as pt
from phasetrans.distributed import get_rank, get_world_size, is_main_process, shard, shard_range


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    mp.start_processes(worker, args=(2, free_port(), str(out), "all"), nprocs=2, join=True, start_method="spawn")
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def two_rank_results(two_rank_run):
    return two_rank_run[1]


@pytest.mark.slow
def test_only_rank_zero_writes_the_sweep_file(two_rank_run):
    out, results = two_rank_run
    lines = (out / "sweep.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 3  # one header and one record per point: rank 1 wrote nothing


@pytest.mark.slow
def test_two_ranks_match_single_process(two_rank_results):
    results = two_rank_results
    model, X, y = problem()
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), batches(X, y))
    assert not H.distributed
    V = torch.randn(H.dim, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ref = H @ V
    loss, gradient, _, _ = H.loss_and_gradient()
    assert [r["shard"] for r in results] == [19, 18]
    for r in results:
        assert r["num_samples"] == 37
        assert rel(r["HV"], ref) <= 1e-10
        assert abs(r["loss"] - loss) <= 1e-12 * abs(loss)
        assert rel(r["gradient"], gradient) <= 1e-10
    # identical on every rank, bit for bit
    assert torch.equal(results[0]["HV"], results[1]["HV"])
    density = pt.slq(H, num_steps=12, num_probes=3, seed=4)
    est = pt.trace(H, method="hutchinson", num_matvecs=20, seed=2)
    top = pt.top_eigenvalues(H, k=2, seed=1)
    grouped = pt.slq(H, num_steps=12, num_probes=3, seed=4, basis_bytes=2 * 12 * H.dim * 8)
    for r in results:
        assert torch.allclose(r["grouped_nodes"], grouped.nodes, rtol=1e-9, atol=1e-12)
        assert torch.allclose(r["grouped_weights"], grouped.weights, rtol=1e-9, atol=1e-12)
        assert torch.allclose(r["nodes"], density.nodes, rtol=1e-9, atol=1e-12)
        assert torch.allclose(r["weights"], density.weights, rtol=1e-9, atol=1e-12)
        assert abs(r["trace"][0] - est.value) <= 1e-9 * abs(est.value)
        assert torch.allclose(torch.as_tensor(r["top"]), torch.as_tensor(top.values), rtol=1e-9)
    # evaluation, eps, prediction, threshold and sweep are data-parallel: equal to one process
    # that sees every rank's batches (same batch partition, rank order)
    from phasetrans.distributed import shard as shard_of

    all_batches = []
    for rank in range(2):
        Xs, ys = shard_of((X, y), rank, 2)
        all_batches += batches(Xs, ys)
    loss_fn = nn.CrossEntropyLoss()
    acc = pt.evaluate_accuracy(model, all_batches)
    loss_eval = pt.evaluate_loss(model, loss_fn, all_batches)
    pred = pt.predict_sparsity(model, loss_fn, all_batches, num_steps=10, num_probes=3,
                               trace_method=None, bootstrap=20)
    found = pt.find_threshold(model, lambda m: pt.evaluate_accuracy(m, all_batches), resolution=0.01)
    sweep_ref = pt.sweep(model, lambda m: pt.evaluate_loss(m, loss_fn, all_batches), [0.0, 0.5, 0.9],
                         progress=False)
    for r in results:
        assert abs(r["accuracy"] - acc) < 1e-15
        assert abs(r["loss_eval"] - loss_eval) <= 1e-12 * loss_eval
        assert abs(r["eps"] - pred.eps) <= 1e-12 * pred.eps
        assert abs(r["predicted"] - pred.sparsity) <= 1e-9
        assert r["threshold"][0] == found.sparsity
        assert [p[0] for p in r["threshold"][1]] == [p[0] for p in found.points]
        assert [a for a, _ in r["sweep"]] == [a for a, _ in sweep_ref]
        assert all(abs(m - mr) <= 1e-12 * abs(mr) for (_, m), (_, mr) in zip(r["sweep"], sweep_ref))
    for key in ("nodes", "weights", "grouped_nodes", "grouped_weights", "top"):
        assert torch.equal(torch.as_tensor(results[0][key]), torch.as_tensor(results[1][key]))
    assert results[0]["trace"] == results[1]["trace"]


@pytest.mark.slow
def test_ranks_that_disagree_are_refused_on_every_rank(tmp_path):
    # issue 16: before, ranks with other weights or another num_steps averaged silently
    mp.start_processes(worker, args=(2, free_port(), str(tmp_path), "disagree"), nprocs=2,
                       join=True, start_method="spawn")
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r in results:
        for key in ("num_steps", "seed", "num_probes", "weights"):
            message = r["errors"][key]
            assert message is not None, key
            assert "ranks of the data-parallel run disagree" in message and key in message, message


def test_shards_are_contiguous_uneven_and_cover_everything():
    ranges = [shard_range(37, r, 4) for r in range(4)]
    assert [len(r) for r in ranges] == [10, 9, 9, 9]
    assert [i for r in ranges for i in r] == list(range(37))
    X = torch.arange(10)
    assert torch.equal(shard(X, 1, 3), torch.tensor([4, 5, 6]))
    with pytest.raises(ValueError, match="world_size"):
        shard_range(2, 0, 3)
    with pytest.raises(ValueError, match="rank"):
        shard_range(10, 3, 3)
    with pytest.raises(TypeError, match="tensors"):
        shard([1, 2, 3])


def test_single_process_defaults():
    assert get_rank() == 0 and get_world_size() == 1 and is_main_process()
