"""HessianOperator against dense float64 ``torch.func.hessian`` references (THEORY §6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint

DT = torch.float64
REL = 1e-10


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5), nn.Softplus(), nn.Linear(5, 3)).to(DT)


class SmallCNN(nn.Module):
    def __init__(self, batchnorm: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv1d(3, 2, 2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(2 * 8, 3)

    def forward(self, x):
        h = torch.tanh(self.bn(self.conv1(x)))  # (N, 3, 4, 4)
        h = h.flatten(2)  # (N, 3, 16)
        h = torch.tanh(self.conv2(h))[..., ::2]  # (N, 2, 8)
        return self.fc(self.drop(h.flatten(1)))


def cnn(batchnorm=False):
    torch.manual_seed(1)
    model = SmallCNN(batchnorm).to(DT)
    if batchnorm:
        with torch.no_grad():  # non-trivial running statistics
            model.bn.running_mean.uniform_(-0.5, 0.5)
            model.bn.running_var.uniform_(0.5, 2.0)
            model.bn.weight.uniform_(0.5, 1.5)
            model.bn.bias.uniform_(-0.3, 0.3)
    return model


def dataset(kind, n=23):
    g = torch.Generator().manual_seed(2)
    X = torch.randn(n, 6, generator=g, dtype=DT) if kind == "mlp" else torch.randn(n, 1, 6, 6, generator=g, dtype=DT)
    y = torch.randint(0, 3, (n,), generator=g)
    return X, y


def uneven_batches(X, y, sizes=(10, 10, 3)):
    out, start = [], 0
    for s in sizes:
        out.append((X[start : start + s], y[start : start + s]))
        start += s
    assert start == len(y)
    return out


def dense_reference(model, loss_fn, X, y, names):
    """Hessian of the whole-data mean loss, eval mode, w.r.t. the named parameters (flattened)."""
    named = dict(model.named_parameters())
    fixed = {n: p.detach() for n, p in named.items() if n not in names}
    fixed.update({n: b.detach() for n, b in model.named_buffers()})
    shapes = [named[n].shape for n in names]
    numels = [named[n].numel() for n in names]
    w0 = torch.cat([named[n].detach().reshape(-1) for n in names])
    was_training = model.training
    model.eval()
    try:
        def f(w):
            state = dict(fixed)
            state.update({n: p.view(s) for n, p, s in zip(names, torch.split(w, numels), shapes)})
            return loss_fn(functional_call(model, state, (X,)), y)

        return hessian(f)(w0)
    finally:
        model.train(was_training)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


CASES = [
    ("mlp", mlp, "mlp"),
    ("cnn", lambda: cnn(False), "cnn"),
    ("cnn_bn", lambda: cnn(True), "cnn"),
]


@pytest.mark.parametrize("name,make,kind", CASES)
@pytest.mark.parametrize("params", [None, "all"])
@pytest.mark.parametrize("method", ["func", "backward", "auto"])
def test_hvp_matches_dense_hessian(name, make, kind, params, method):
    model = make()
    model.train()  # the operator must evaluate in eval mode regardless
    loss_fn = nn.CrossEntropyLoss()
    X, y = dataset(kind)
    data = uneven_batches(X, y)
    before = model_fingerprint(model)
    H = pt.HessianOperator(model, loss_fn, data, params=params, method=method)
    ref = dense_reference(model, loss_fn, X, y, H.param_names)
    assert ref.shape == (H.dim, H.dim)
    g = torch.Generator().manual_seed(3)
    V = torch.randn(H.dim, 4, generator=g, dtype=DT)
    assert rel_err(H @ V, ref @ V) <= REL
    assert rel_err(H @ V[:, 1], ref @ V[:, 1]) <= REL
    assert H.num_samples == len(y)
    assert fingerprints_equal(before, model_fingerprint(model))


def test_prunable_selection_and_list_of_names():
    model = cnn(True)
    assert list(pt.prunable_parameters(model)) == ["conv1.weight", "conv2.weight", "fc.weight"]
    X, y = dataset("cnn")
    names = ["bn.weight", "fc.weight"]
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), (X, y), params=names)
    assert H.param_names == names and H.dim == 3 + 16 * 3
    ref = dense_reference(model, nn.CrossEntropyLoss(), X, y, names)
    assert rel_err(H.to_dense(), ref) <= REL


def test_to_dense_symmetric_and_exact():
    model = mlp()
    X, y = dataset("mlp")
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), uneven_batches(X, y, (7, 7, 7, 2)))
    dense = H.to_dense(chunk=5)
    ref = dense_reference(model, nn.CrossEntropyLoss(), X, y, H.param_names)
    assert rel_err(dense, ref) <= REL
    assert torch.allclose(dense, dense.T, atol=1e-13)
    with pytest.raises(ValueError, match="max_dim"):
        H.to_dense(max_dim=10)


def test_uneven_last_batch_weighting_is_exact():
    """Single-sample last batch: a wrong (per-batch mean) weighting would be far off."""
    model = mlp()
    X, y = dataset("mlp", n=21)
    H1 = pt.HessianOperator(model, nn.CrossEntropyLoss(), uneven_batches(X, y, (20, 1)))
    H2 = pt.HessianOperator(model, nn.CrossEntropyLoss(), (X, y))
    v = torch.randn(H1.dim, dtype=DT, generator=torch.Generator().manual_seed(0))
    assert rel_err(H1 @ v, H2 @ v) <= REL


def test_dataloader_and_float32_inputs_cast_to_model_dtype():
    model = mlp()
    X, y = dataset("mlp")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X.float(), y), batch_size=8)
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), loader)
    ref = dense_reference(model, nn.CrossEntropyLoss(), X.float().double(), y, H.param_names)
    v = torch.randn(H.dim, dtype=DT, generator=torch.Generator().manual_seed(0))
    assert rel_err(H @ v, ref @ v) <= REL


def test_float32_model_agrees_with_float64():
    model64 = mlp()
    model32 = mlp().float()
    X, y = dataset("mlp")
    H64 = pt.HessianOperator(model64, nn.CrossEntropyLoss(), uneven_batches(X, y))
    H32 = pt.HessianOperator(model32, nn.CrossEntropyLoss(), uneven_batches(X.float(), y))
    assert H32.dtype == torch.float32 and H64.dtype == torch.float64
    v = torch.randn(H64.dim, dtype=DT, generator=torch.Generator().manual_seed(0))
    out32 = H32 @ v
    assert out32.dtype == torch.float64  # returned in the dtype of v
    assert rel_err(out32, H64 @ v) < 1e-5
    assert (H32 @ v.float()).dtype == torch.float32


def test_batchnorm_train_mode_uses_batch_statistics_and_keeps_buffers():
    model = cnn(True)
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    X, y = dataset("cnn")
    data = uneven_batches(X, y)
    before = model_fingerprint(model)
    H = pt.HessianOperator(model, loss_fn, data, batchnorm="train")
    assert H.method == "backward"  # auto resolves to double backward with batch statistics
    # reference: per-batch Hessians with batch statistics, weighted by batch size
    names = H.param_names
    named = dict(model.named_parameters())
    numels = [named[n].numel() for n in names]
    shapes = [named[n].shape for n in names]
    w0 = H.parameters_vector()
    ref = torch.zeros(H.dim, H.dim, dtype=DT)
    model.drop.eval()  # dropout off, as in the operator
    try:
        for xb, yb in data:
            fixed = {n: p.detach() for n, p in named.items() if n not in names}
            fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})

            def f(w, xb=xb, yb=yb, fixed=fixed):
                state = dict(fixed)
                state.update({n: p.view(s) for n, p, s in zip(names, torch.split(w, numels), shapes)})
                return loss_fn(functional_call(model, state, (xb,)), yb)

            ref += len(yb) * torch.autograd.functional.hessian(f, w0)
    finally:
        model.drop.train()
    ref /= len(y)
    v = torch.randn(H.dim, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    assert rel_err(H @ v, ref @ v) <= REL
    assert fingerprints_equal(before, model_fingerprint(model))
    with pytest.raises(ValueError, match="batchnorm='train'"):
        pt.HessianOperator(model, loss_fn, data, batchnorm="train", method="func")


def test_model_untouched_including_grads_and_requires_grad():
    model = cnn(True)
    model.eval()
    model.conv1.weight.requires_grad_(False)
    X, y = dataset("cnn")
    nn.CrossEntropyLoss()(model(X), y).backward()  # populate some grads
    before = model_fingerprint(model)
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), uneven_batches(X, y), params="all")
    H @ torch.ones(H.dim, dtype=DT)
    H.loss_and_gradient()
    assert fingerprints_equal(before, model_fingerprint(model))


def test_loss_and_gradient_match_autograd():
    model = mlp()
    X, y = dataset("mlp")
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), uneven_batches(X, y))
    loss, gradient, losses, sizes = H.loss_and_gradient()
    full = nn.CrossEntropyLoss()(model(X), y)
    ref = torch.autograd.grad(full, [dict(model.named_parameters())[n] for n in H.param_names])
    assert abs(loss - full.item()) < 1e-14
    assert rel_err(gradient, torch.cat([r.reshape(-1) for r in ref])) <= REL
    assert sizes == [10, 10, 3] and len(losses) == 3


def test_non_finite_loss_names_the_batch():
    model = mlp()
    X, y = dataset("mlp")
    X = X.clone()
    X[15, 0] = float("nan")
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), uneven_batches(X, y))
    for method in ("func", "backward"):
        H.method = method
        with pytest.raises(ValueError, match="batch 1"):
            H @ torch.ones(H.dim, dtype=DT)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(model="not a model"), TypeError, "model"),
        (dict(loss_fn=3), TypeError, "loss_fn"),
        (dict(data=torch.zeros(3)), TypeError, "data"),
        (dict(data=[]), ValueError, "data"),
        (dict(data=(torch.zeros(3, 6), torch.zeros(4))), ValueError, "data"),
        (dict(params="some"), ValueError, "params"),
        (dict(params=["nope.weight"]), ValueError, "params"),
        (dict(params=[]), ValueError, "params"),
        (dict(batchnorm="frozen"), ValueError, "batchnorm"),
        (dict(method="magic"), ValueError, "method"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(cache_bytes=-1), ValueError, "cache_bytes"),
        (dict(cache_bytes=1.5), TypeError, "cache_bytes"),
        (dict(distributed="yes"), TypeError, "distributed"),
        (dict(distributed=True), ValueError, "distributed"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    X, y = dataset("mlp")
    args = dict(model=mlp(), loss_fn=nn.CrossEntropyLoss(), data=uneven_batches(X, y))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        H = pt.HessianOperator(**args)
        H @ torch.ones(H.dim, dtype=DT)  # empty data is found on the first pass


def test_bad_vectors_and_one_shot_iterators():
    model = mlp()
    X, y = dataset("mlp")
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), (X, y))
    with pytest.raises(ValueError, match="shape"):
        H @ torch.ones(H.dim + 1, dtype=DT)
    with pytest.raises(TypeError, match="floating"):
        H @ torch.ones(H.dim, dtype=torch.long)
    with pytest.raises(ValueError, match="finite"):
        H @ torch.full((H.dim,), float("nan"), dtype=DT)
    with pytest.raises(TypeError, match="v must be"):
        H @ [1.0] * H.dim
    with pytest.raises(TypeError, match="one-shot iterator"):
        pt.HessianOperator(model, nn.CrossEntropyLoss(), (b for b in [(X, y)]))
    with pytest.raises(ValueError, match="prunable"):
        pt.HessianOperator(nn.Sequential(nn.Tanh()), nn.CrossEntropyLoss(), (X, y))


def test_loss_fn_returning_non_scalar_is_reported():
    model = mlp()
    X, y = dataset("mlp")
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(reduction="none"), (X, y))
    with pytest.raises(TypeError, match="scalar"):
        H @ torch.ones(H.dim, dtype=DT)


def test_dense_operator_and_scipy_operator():
    from scipy.sparse.linalg import aslinearoperator

    A = torch.randn(5, 5, dtype=DT, generator=torch.Generator().manual_seed(0))
    A = A + A.T
    op = pt.as_operator(A)
    v = torch.randn(5, 2, dtype=DT)
    assert torch.allclose(op @ v, A @ v)
    sop = pt.as_operator(aslinearoperator(A.numpy()))
    assert torch.allclose(sop @ v, A @ v)
    with pytest.raises(ValueError, match="square"):
        pt.as_operator(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="H must be"):
        pt.as_operator("matrix")


# -- graph reuse (cache_bytes) ------------------------------------------------------------------
class CountingData:
    """A re-iterable list of batches that counts the passes over it."""

    def __init__(self, batches):
        self.batches = batches
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


@pytest.mark.parametrize("name,make,kind", CASES)
@pytest.mark.parametrize("method", ["backward", "auto"])
def test_kept_graphs_give_the_dense_product_without_passing_over_the_data(name, make, kind, method):
    model = make()
    loss_fn = nn.CrossEntropyLoss()
    X, y = dataset(kind)
    data = CountingData(uneven_batches(X, y))
    before = model_fingerprint(model)
    H = pt.HessianOperator(model, loss_fn, data, params="all", method=method)
    ref = dense_reference(model, loss_fn, X, y, H.param_names)
    V = torch.randn(H.dim, 5, dtype=DT, generator=torch.Generator().manual_seed(4))
    first = H @ V  # builds the graphs
    assert data.passes == 1 and H.cached_bytes > 0
    for _ in range(2):
        again = H @ V
        assert torch.equal(again, first)  # the same graphs, the same arithmetic: bit for bit
        assert rel_err(H @ V[:, 2], ref @ V[:, 2]) <= REL
    assert rel_err(first, ref @ V) <= REL
    assert data.passes == 1  # later products never touch the data
    assert H.num_samples == len(y)
    assert fingerprints_equal(before, model_fingerprint(model))


def test_kept_graphs_equal_the_recomputed_product():
    model = cnn(True)
    X, y = dataset("cnn")
    data = uneven_batches(X, y)
    V = torch.randn(sum(p.numel() for p in model.parameters()), 3, dtype=DT,
                    generator=torch.Generator().manual_seed(5))
    cached = pt.HessianOperator(model, nn.CrossEntropyLoss(), data, params="all", method="backward")
    fresh = pt.HessianOperator(model, nn.CrossEntropyLoss(), data, params="all", method="backward",
                               cache_bytes=0)
    cached @ V
    assert cached.cached_bytes > 0 and fresh.cached_bytes == 0
    assert rel_err(cached @ V, fresh @ V) <= 1e-14


def _perturb_in_place(model):
    with torch.no_grad():
        model[0].weight.mul_(1.5)


def _replace_data(model):
    model[2].weight.data = model[2].weight.data * 0.5 + 0.1


def _replace_parameter(model):
    model[4].weight = nn.Parameter(model[4].weight.detach() * -1.0)


@pytest.mark.parametrize("change", [_perturb_in_place, _replace_data, _replace_parameter])
def test_changed_parameters_rebuild_the_graphs(change):
    model = mlp()
    loss_fn = nn.CrossEntropyLoss()
    X, y = dataset("mlp")
    data = CountingData(uneven_batches(X, y))
    H = pt.HessianOperator(model, loss_fn, data, params="all")
    v = torch.randn(H.dim, dtype=DT, generator=torch.Generator().manual_seed(6))
    H @ v
    change(model)
    ref = dense_reference(model, loss_fn, X, y, H.param_names)
    assert rel_err(H @ v, ref @ v) <= REL
    assert data.passes == 2 and H.cached_bytes > 0
    H @ v
    assert data.passes == 2


def test_changed_buffers_rebuild_the_graphs():
    model = cnn(True)
    loss_fn = nn.CrossEntropyLoss()
    X, y = dataset("cnn")
    H = pt.HessianOperator(model, loss_fn, uneven_batches(X, y), params="all")
    v = torch.randn(H.dim, dtype=DT, generator=torch.Generator().manual_seed(7))
    H @ v
    with torch.no_grad():
        model.bn.running_var.mul_(3.0)  # eval-mode BatchNorm reads it
    ref = dense_reference(model, loss_fn, X, y, H.param_names)
    assert rel_err(H @ v, ref @ v) <= REL


def test_budget_too_small_keeps_nothing_and_stays_exact():
    model = mlp()
    loss_fn = nn.CrossEntropyLoss()
    X, y = dataset("mlp")
    data = CountingData(uneven_batches(X, y))
    H = pt.HessianOperator(model, loss_fn, data, params="all", cache_bytes=1)
    ref = dense_reference(model, loss_fn, X, y, H.param_names)
    V = torch.randn(H.dim, 3, dtype=DT, generator=torch.Generator().manual_seed(8))
    for k in range(3):
        assert rel_err(H @ V, ref @ V) <= REL
        assert rel_err(H @ V[:, 0], ref @ V[:, 0]) <= REL
        assert H.cached_bytes == 0 and data.passes == 2 * (k + 1)


def test_clear_cache_reads_changed_data_again():
    model = mlp()
    loss_fn = nn.CrossEntropyLoss()
    X, y = dataset("mlp")
    data = CountingData(uneven_batches(X.clone(), y))
    H = pt.HessianOperator(model, loss_fn, data)
    v = torch.randn(H.dim, dtype=DT, generator=torch.Generator().manual_seed(9))
    H @ v
    X2 = X * 2.0
    data.batches = uneven_batches(X2, y)
    H.clear_cache()
    assert H.cached_bytes == 0
    ref = dense_reference(model, loss_fn, X2, y, H.param_names)
    assert rel_err(H @ v, ref @ v) <= REL
    assert data.passes == 2


def test_cached_bytes_count_the_saved_activations():
    """The kept graphs of an MLP hold at least its inputs and hidden activations, and twice the
    data holds about twice the bytes."""
    model = nn.Sequential(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 3)).to(DT)
    X, y = dataset("mlp", n=400)
    sizes = []
    for n in (200, 400):
        H = pt.HessianOperator(model, nn.CrossEntropyLoss(), [(X[:n], y[:n])], params="all")
        H @ torch.ones(H.dim, dtype=DT)
        assert H.cached_bytes >= n * (6 + 40 + 40) * 8
        sizes.append(H.cached_bytes)
    assert 1.8 < sizes[1] / sizes[0] < 2.2


def test_kept_graphs_loop_over_the_columns_past_the_cache_size(monkeypatch):
    """A first graph that saves a tensor of at least LOOP_BYTES serves the columns one backward
    each on one CPU thread (column_loop; autograd graphs: ``method="backward"``): the dense product, bit for bit again on every later product, and
    the batched backward's product to rounding."""
    from phasetrans.linalg import _graph_cache
    from phasetrans.linalg import hessian as hessian_module

    modes = []

    def spy(*args):
        modes.append(args[-1])  # apply_graph's ``batched``
        return _graph_cache.apply_graph(*args)

    monkeypatch.setattr(hessian_module, "apply_graph", spy)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # the rule's one-thread case
    model = nn.Sequential(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 3)).to(DT)
    loss_fn = nn.CrossEntropyLoss()
    X, y = dataset("mlp", n=1000)
    data = [(X[:600], y[:600]), (X[600:], y[600:])]  # hidden activations 600 x 40 float64: 188 KiB
    V = torch.randn(6 * 40 + 40 + 40 * 3 + 3, 4, dtype=DT, generator=torch.Generator().manual_seed(12))
    H = pt.HessianOperator(model, loss_fn, data, params="all", method="backward")
    first = H @ V
    assert H._cache.largest >= _graph_cache.LOOP_BYTES > 600 * 6 * 8
    assert modes == [False, False]  # both batches: one backward per column
    assert rel_err(first, dense_reference(model, loss_fn, X, y, H.param_names) @ V) <= REL
    assert torch.equal(H @ V, first) and modes[2:] == [False, False]
    monkeypatch.setattr(_graph_cache, "LOOP_BYTES", 1 << 40)
    batched = pt.HessianOperator(model, loss_fn, data, params="all", method="backward")
    batched_first = batched @ V
    assert rel_err(batched_first, first) <= 1e-13 and modes[4:] == ["engine", "engine"]
    monkeypatch.setattr(_graph_cache, "LOOP_BYTES", 1 << 17)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # several threads: batched
    assert torch.equal(pt.HessianOperator(model, loss_fn, data, params="all", method="backward") @ V, batched_first)
    assert modes[6:] == ["engine", "engine"]


def test_column_loop_only_on_one_cpu_thread_past_the_threshold():
    from phasetrans.linalg._graph_cache import LOOP_BYTES, column_loop

    cpu = torch.device("cpu")
    assert column_loop(LOOP_BYTES, cpu, 1) and column_loop(10 * LOOP_BYTES, cpu, 1)
    assert not column_loop(LOOP_BYTES - 1, cpu, 1) and not column_loop(0, cpu, 1)
    assert not column_loop(10 * LOOP_BYTES, cpu, 2)
    assert not column_loop(10 * LOOP_BYTES, torch.device("cuda"), 1)


def test_kept_graphs_name_the_batch_of_a_non_finite_product():
    """Through kept graphs finiteness is checked once per product; a non-finite product is
    traced back to the batch that made the sum non-finite, the batch the recomputed product
    (checked after every batch) names, and the graphs stay usable."""
    model = mlp()
    X, y = dataset("mlp")
    X = X.clone()
    X[20:] *= 100.0  # the last batch's product overflows first
    data = uneven_batches(X, y)
    kept = pt.HessianOperator(model, nn.CrossEntropyLoss(), data, params="all", method="backward")
    fresh = pt.HessianOperator(model, nn.CrossEntropyLoss(), data, params="all", method="backward",
                               cache_bytes=0)
    v = torch.ones(kept.dim, dtype=DT)
    first = kept @ v
    assert kept.cached_bytes > 0
    for H in (kept, fresh):
        with pytest.raises(ValueError, match="non-finite Hessian-vector product at batch 2 of data"):
            H @ (1e306 * v)
        with pytest.raises(ValueError, match="at batch 2 "):
            H @ torch.stack([v, 1e306 * v], 1)
    assert torch.equal(kept @ v, first) and kept.cached_bytes > 0
    assert rel_err((kept @ (1e150 * v)) / 1e150, first) <= 1e-14  # large but finite: no error


def test_func_method_keeps_no_graphs():
    model = mlp()
    X, y = dataset("mlp")
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), (X, y), method="func")
    H @ torch.ones(H.dim, 2, dtype=DT)
    assert H.cached_bytes == 0


# -- issue 16: edits through .data, buffers updated in eval mode, shuffling loaders ------------
def _dense_reference(model, loss_fn, data):
    return pt.HessianOperator(model, loss_fn, data, cache_bytes=0, method="func").to_dense()


def test_kept_graphs_see_weight_edits_through_data():
    # `.data` edits (the pruning idiom) bump no version counter: before, the kept graphs were
    # reused and H @ v was that of the old weights (55 % off on a CNN)
    model = mlp()
    X = torch.randn(30, 6, dtype=DT, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(1))
    data = [(X[i:i + 10], y[i:i + 10]) for i in range(0, 30, 10)]
    loss_fn = nn.CrossEntropyLoss()
    H = pt.HessianOperator(model, loss_fn, data)
    v = torch.randn(H.dim, 2, dtype=DT, generator=torch.Generator().manual_seed(2))
    H @ v
    assert H.cached_bytes > 0
    model[0].weight.data.mul_(0.3)  # in place through .data: no version bump, same storage
    model[2].bias.data.add_(1.0)    # a fixed (not selected) parameter, the same way
    dense = _dense_reference(model, loss_fn, data)
    assert torch.allclose(H @ v, dense @ v, rtol=REL, atol=1e-12)


class _Stateful(nn.Module):
    """A forward that updates buffers even in eval mode: a call counter and an input EMA."""

    def __init__(self):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(4, 5), nn.Linear(5, 3)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self.register_buffer("ema", torch.zeros(4))

    def forward(self, x):
        self.calls += 1
        self.ema.mul_(0.9).add_(0.1 * x.detach().mean(0))
        return self.lin2(torch.tanh(self.lin1(x - self.ema)))


@pytest.mark.parametrize("method", ["func", "backward"])
def test_products_leave_buffers_updated_in_eval_mode_alone(method):
    # before: every forward of H @ v, loss_and_gradient and batch_losses moved the counter and
    # the EMA of the user's model (and each batch saw a different EMA)
    torch.manual_seed(0)
    model = _Stateful().to(DT).eval()
    with torch.no_grad():
        model.ema.fill_(0.2)
    X = torch.randn(24, 4, dtype=DT, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 3, (24,), generator=torch.Generator().manual_seed(4))
    data = [(X[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)]
    loss_fn = nn.CrossEntropyLoss()
    before = model_fingerprint(model)
    H = pt.HessianOperator(model, loss_fn, data, method=method)
    v = torch.randn(H.dim, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    first = H @ v
    H.loss_and_gradient()
    H.batch_losses()
    assert fingerprints_equal(before, model_fingerprint(model))
    # a fixed matrix: the same product again, equal to the dense Hessian at the fixed buffers
    assert torch.equal(H @ v, first)
    names = H.param_names
    w0 = {n: p.detach() for n, p in model.named_parameters()}

    def total(flat):
        params = dict(zip(names, torch.split(flat, [w0[n].numel() for n in names])))
        params = {n: t.view_as(w0[n]) for n, t in params.items()}
        out = 0
        for xb, yb in data:
            state = {**w0, **params, "calls": model.calls.clone(), "ema": model.ema.clone()}
            out = out + loss_fn(functional_call(model, state, (xb,)), yb) * len(yb)
        return out / 24

    w = torch.cat([w0[n].reshape(-1) for n in names])
    assert torch.allclose(first, hessian(total)(w) @ v, rtol=REL, atol=1e-12)
    assert fingerprints_equal(before, model_fingerprint(model))


def test_shuffling_loader_gives_a_fixed_symmetric_H_and_eps():
    # before: each pass drew a new order, so with drop_last every product saw other samples
    # (|aᵀHb − bᵀHa| = 7.5e-2) and ε changed between calls
    model = mlp()
    X = torch.randn(50, 6, dtype=DT, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(1))
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(9)
    for generator in (None, gen):
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8,
                                             shuffle=True, drop_last=True, generator=generator)
        rng, own = torch.get_rng_state(), gen.get_state()
        H = pt.HessianOperator(model, loss_fn, loader, cache_bytes=0)
        a, b = (torch.randn(H.dim, dtype=DT, generator=torch.Generator().manual_seed(s)) for s in (2, 3))
        assert abs(a @ (H @ b) - b @ (H @ a)) <= 1e-14 * (a.norm() * b.norm() * H.to_dense().norm())
        eps = [pt.estimate_eps(model, loss_fn, loader) for _ in range(3)]
        assert eps[0] == eps[1] == eps[2]
        # the caller's random streams did not move
        assert torch.equal(torch.get_rng_state(), rng) and torch.equal(gen.get_state(), own)
