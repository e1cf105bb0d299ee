"""Interop with users' own models and code (issue 17): parameter selections by name, Parameter or
module; ``batch_fn`` for dict/tuple batches; any SciPy ``LinearOperator`` or ``v -> H v``
callable into the estimators and ``aslinearoperator(H)``; models pruned with
``torch.nn.utils.prune``; attention (math SDPA kernel) and the documented prunable set.

Every comparison is against an exact answer: a dense float64 ``torch.func.hessian``, the same
computation on the plain model / plain batches, or a dense matrix.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import prune

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint

F64 = torch.float64
LOSS = nn.CrossEntropyLoss()


def _xy(n=30, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randint(0, c, (n,), generator=g)


X, Y = _xy()
DATA = [(X[i : i + 8], Y[i : i + 8]) for i in range(0, len(Y), 8)]  # uneven last batch


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def dense_hessian(model, names, data, loss_fn=LOSS):
    """The exact dataset-mean Hessian (batches weighted by size) by ``torch.func.hessian``."""
    named = dict(model.named_parameters())
    shapes = [named[n].shape for n in names]
    sizes = [named[n].numel() for n in names]
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in names}
    fixed.update({n: b.detach() for n, b in model.named_buffers()})
    w0 = torch.cat([named[n].detach().reshape(-1) for n in names])
    total, count = 0, 0

    def loss_of(flat, x, y):
        state = dict(fixed)
        state.update({n: p.reshape(s) for n, p, s in zip(names, torch.split(flat, sizes), shapes)})
        return loss_fn(functional_call(model, state, (x,)), y)

    with pt.preserve_model(model):
        model.eval()
        for x, y in data:
            n = len(y)
            total = total + n * torch.func.hessian(loss_of)(w0, x, y)
            count += n
    return total / count


# -- 1. parameter selections -----------------------------------------------------------------
def test_select_by_parameter_module_and_generator():
    m = mlp()
    assert pt.select_parameters(m, [m[2].weight, m[0].weight]) == ["2.weight", "0.weight"]
    assert pt.select_parameters(m, m[0].weight) == ["0.weight"]
    assert pt.select_parameters(m, m[0]) == ["0.weight", "0.bias"]
    assert pt.select_parameters(m, m.parameters()) == pt.select_parameters(m, "all")
    assert pt.select_parameters(m, [m[0], "2.weight"]) == ["2.weight", "0.weight", "0.bias"]
    assert pt.select_parameters(m, pt.prunable_parameters(m)) == ["0.weight", "2.weight"]


def test_select_tied_modules_merge_and_duplicates_raise():
    emb = nn.Embedding(4, 3)
    head = nn.Linear(3, 4, bias=False)
    head.weight = emb.weight  # tied
    m = nn.Sequential(emb, head)
    assert pt.select_parameters(m, [m[0], m[1]]) == ["0.weight"]
    with pytest.raises(ValueError, match="more than once"):
        pt.select_parameters(m, [m[0].weight, m[1].weight])


@pytest.mark.parametrize("bad, pattern", [
    (lambda m: [mlp(1)[0].weight], r"params\[0\] is an nn.Parameter of shape \(6, 5\) that is not"),
    (lambda m: [m[0].weight.detach().clone()], r"params\[0\] is a plain tensor"),
    (lambda m: [nn.Linear(2, 2)], r"params\[0\] is an nn.Module \(Linear\) that is not a submodule"),
    (lambda m: [m[1]], r"params\[0\] is an nn.Module \(Tanh\) without floating parameters"),
])
def test_select_foreign_objects_raise(bad, pattern):
    m = mlp()
    with pytest.raises(ValueError, match=pattern):
        pt.select_parameters(m, bad(m))


def test_select_wrong_types_and_sets_raise():
    m = mlp()
    with pytest.raises(TypeError, match="params"):
        pt.select_parameters(m, [1.0])
    with pytest.raises(TypeError, match="params"):
        pt.select_parameters(m, {"0.weight"})


def test_parameter_selection_everywhere_matches_names():
    m = mlp()
    by_obj = [m[2].weight, m[0]]
    names = pt.select_parameters(m, by_obj)
    v = torch.randn(sum(dict(m.named_parameters())[n].numel() for n in names), 2, dtype=F64)
    H1 = pt.HessianOperator(m, LOSS, DATA, params=by_obj)
    H2 = pt.HessianOperator(m, LOSS, DATA, params=names)
    assert H1.param_names == names
    torch.testing.assert_close(H1 @ v, H2 @ v, rtol=0, atol=0)
    torch.testing.assert_close(H1.to_dense(), dense_hessian(m, names, DATA))
    masks1 = pt.magnitude_masks(m, 0.5, params=[m[0].weight, m[2].weight])
    masks2 = pt.magnitude_masks(m, 0.5, params=["0.weight", "2.weight"])
    assert masks1.keys() == masks2.keys() and all(torch.equal(masks1[k], masks2[k]) for k in masks1)
    kw = dict(spectrum_method="exact", trace_method=None, bootstrap=0, eps=0.05)
    p1 = pt.predict_sparsity(m, LOSS, DATA, params=[m[0].weight, m[2].weight], **kw)
    p2 = pt.predict_sparsity(m, LOSS, DATA, **kw)
    assert p1.sparsity == p2.sparsity
    a, b = mlp(), mlp()
    pt.train_l1(a, LOSS, DATA, l1=1e-3, epochs=1, lr=0.1, progress=False, params=[a[0].weight])
    pt.train_l1(b, LOSS, DATA, l1=1e-3, epochs=1, lr=0.1, progress=False, params=["0.weight"])
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# -- 2. batch_fn -----------------------------------------------------------------------------
class KwModel(nn.Module):
    """A HuggingFace-style model: keyword inputs, a mask, logits out."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(5, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, features, mask=None):
        h = torch.tanh(self.body(features))
        if mask is not None:
            h = h * mask
        return self.head(h)


def dict_batches():
    g = torch.Generator().manual_seed(3)
    out = []
    for x, y in DATA:
        mask = (torch.rand(len(y), 6, generator=g) > 0.2).to(F64)
        out.append({"features": x, "attention_mask": mask, "labels": y, "id": "not a tensor"})
    return out


def to_inputs(b):
    return {"features": b["features"], "mask": b["attention_mask"]}, b["labels"]


def tuple_of_model(b):
    return (b["features"], b["attention_mask"]), b["labels"]


def test_batch_fn_dict_batches_hessian_is_exact():
    m = KwModel().double()
    batches = dict_batches()
    H = pt.HessianOperator(m, LOSS, batches, params="all", batch_fn=to_inputs)
    plain = [(b["features"], b["attention_mask"], b["labels"]) for b in batches]

    def call(state, xm):
        return functional_call(m, state, (xm[0],), {"mask": xm[1]})

    names = pt.select_parameters(m, "all")
    truth = _dense_with_call(m, names, [((x, mk), y) for x, mk, y in plain], call)
    torch.testing.assert_close(H.to_dense(), truth)
    # positional (tuple) inputs give the same operator
    H2 = pt.HessianOperator(m, LOSS, batches, params="all", batch_fn=tuple_of_model, method="func")
    torch.testing.assert_close(H2.to_dense(), truth)


def _dense_with_call(model, names, data, call):
    named = dict(model.named_parameters())
    shapes = [named[n].shape for n in names]
    sizes = [named[n].numel() for n in names]
    w0 = torch.cat([named[n].detach().reshape(-1) for n in names])
    total, count = 0, 0
    for inputs, y in data:
        def loss_of(flat, inputs=inputs, y=y):
            state = {n: p.reshape(s) for n, p, s in zip(names, torch.split(flat, sizes), shapes)}
            return LOSS(call(state, inputs), y)

        total = total + len(y) * torch.func.hessian(loss_of)(w0)
        count += len(y)
    return total / count


class Positional(nn.Module):
    """The same model reading the plain ``(x, mask)`` tuple (positional arguments)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, mask):
        return self.inner(x, mask=mask)


def plain_batches(batches):
    """The dict batches as plain ``((features, mask), labels)`` tuples."""
    return [((b["features"], b["attention_mask"]), b["labels"]) for b in batches]


def test_batch_fn_threads_through_evaluation_eps_prediction_and_training():
    m = KwModel().double()
    batches = dict_batches()

    plain = plain_batches(batches)
    ref = Positional(m)
    assert pt.evaluate_accuracy(m, batches, batch_fn=to_inputs) == pt.evaluate_accuracy(ref, plain)
    assert pt.evaluate_loss(m, LOSS, batches, batch_fn=to_inputs) == pt.evaluate_loss(ref, LOSS, plain)
    assert pt.estimate_eps(m, LOSS, batches, batch_fn=to_inputs) == pt.estimate_eps(ref, LOSS, plain)
    kw = dict(spectrum_method="exact", trace_method=None, bootstrap=0)
    a = pt.predict_sparsity(m, LOSS, batches, batch_fn=to_inputs, **kw)
    b = pt.predict_sparsity(ref, LOSS, plain, **kw)
    assert a.sparsity == b.sparsity and a.eps == b.eps
    t1 = pt.find_loss_threshold(m, LOSS, batches, 0.05, resolution=0.05, batch_fn=to_inputs)
    t2 = pt.find_loss_threshold(ref, LOSS, plain, 0.05, resolution=0.05)
    assert t1.sparsity == t2.sparsity and t1.points == t2.points
    m1, m2 = KwModel().double(), Positional(KwModel().double())
    pt.train_l1(m1, LOSS, batches, l1=1e-3, epochs=2, lr=0.1, progress=False, batch_fn=to_inputs)
    pt.train_l1(m2, LOSS, plain, l1=1e-3, epochs=2, lr=0.1, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    masks = pt.magnitude_masks(m1, 0.5)
    pt.finetune_masked(m1, masks, LOSS, batches, steps=3, batch_fn=to_inputs)
    pt.finetune_masked(m2, {"inner." + k: v for k, v in masks.items()}, LOSS, plain, steps=3)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))


def test_batch_fn_longer_tuples_and_one_dict_batch():
    m = mlp()
    weighted = [(x, y, torch.ones(len(y))) for x, y in DATA]  # (inputs, targets, weights)
    H = pt.HessianOperator(m, LOSS, weighted, batch_fn=lambda b: (b[0], b[1]))
    torch.testing.assert_close(H.to_dense(), pt.HessianOperator(m, LOSS, DATA).to_dense(), rtol=0, atol=0)
    one = {"x": X, "y": Y}
    acc = pt.evaluate_accuracy(m, one, batch_fn=lambda b: (b["x"], b["y"]))
    assert acc == pt.evaluate_accuracy(m, (X, Y))


def _hv(d):
    H = pt.HessianOperator(KwModel().double(), LOSS, d)
    return H @ torch.ones(H.dim, dtype=F64)


@pytest.mark.parametrize("call", [
    _hv,
    lambda d: pt.evaluate_accuracy(KwModel().double(), d),
    lambda d: pt.evaluate_loss(KwModel().double(), LOSS, d),
    lambda d: pt.train_l1(KwModel().double(), LOSS, d, l1=0.0, epochs=1, lr=0.1, progress=False),
    lambda d: pt.estimate_eps(KwModel().double(), LOSS, d),
])
def test_dict_batches_without_batch_fn_say_so(call):
    with pytest.raises(TypeError, match="batch_fn"):
        call(dict_batches())
    with pytest.raises(TypeError, match="batch_fn"):
        call(dict_batches()[0])


def test_batch_fn_must_return_a_pair():
    with pytest.raises(TypeError, match="batch_fn must return an"):
        pt.evaluate_accuracy(mlp(), DATA, batch_fn=lambda b: b[0])


def test_validate_with_batch_fn_equals_plain_batches():
    m = KwModel().double()
    batches = dict_batches()
    kw = dict(num_steps=5, num_probes=2, curve_points=0, resolution=0.05, loss_criterion=False,
              predict_kwargs={"bootstrap": 0})
    a = pt.validate(m, LOSS, batches, batches, batch_fn=to_inputs, **kw)

    plain = plain_batches(batches)
    b = pt.validate(Positional(m), LOSS, plain, plain, **kw)
    assert a.prediction.sparsity == b.prediction.sparsity
    assert a.threshold.sparsity == b.threshold.sparsity


# -- 3. operators in, operators out ----------------------------------------------------------
def sym(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=F64)
    return A + A.T


def test_callables_and_scipy_operators_give_the_dense_answers():
    A = sym()
    fn = pt.FunctionOperator(lambda v: A @ v, A.shape[0])
    batched = pt.FunctionOperator(lambda V: A @ V, A.shape[0], batched=True)
    numpy_fn = pt.FunctionOperator(lambda v: A.numpy() @ v.numpy(), A.shape[0])

    class WithDim:
        dim = A.shape[0]

        def __call__(self, v):
            return A @ v

    lin = spla.aslinearoperator(A.numpy())
    ref = pt.slq(A, num_steps=6, num_probes=3, seed=1)
    for op in (fn, batched, numpy_fn, WithDim(), lin):
        s = pt.slq(op, num_steps=6, num_probes=3, seed=1)
        torch.testing.assert_close(s.nodes, ref.nodes)
        torch.testing.assert_close(s.weights, ref.weights)
        torch.testing.assert_close(pt.trace(op, num_matvecs=12, seed=0).value,
                                   pt.trace(A, num_matvecs=12, seed=0).value)
        top = pt.top_eigenvalues(op, k=2, seed=0).values
        torch.testing.assert_close(top, torch.linalg.eigvalsh(A).flip(0)[:2])


def test_function_operator_errors():
    with pytest.raises(TypeError, match="dim"):
        pt.slq(lambda v: v, num_steps=3)
    bad = pt.FunctionOperator(lambda v: v[:-1], 4)
    with pytest.raises(ValueError, match="matvec returned"):
        bad @ torch.ones(4, dtype=F64)
    with pytest.raises(TypeError, match="matvec must return"):
        pt.FunctionOperator(lambda v: 3.0, 4) @ torch.ones(4, dtype=F64)


def test_aslinearoperator_of_a_hessian_operator():
    m = mlp()
    H = pt.HessianOperator(m, LOSS, DATA)
    L = spla.aslinearoperator(H)
    assert L.dtype == np.float64 and L.shape == (H.dim, H.dim)
    assert H.dtype is torch.float64  # everyone else still sees the torch dtype
    dense = dense_hessian(m, H.param_names, DATA).numpy()
    v = np.random.default_rng(0).standard_normal(H.dim)
    np.testing.assert_allclose(L.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(L @ np.eye(H.dim)[:, :3], dense[:, :3], rtol=1e-10, atol=1e-12)
    top = spla.eigsh(L, k=1, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(top, np.linalg.eigvalsh(dense)[-1:], rtol=1e-8)
    assert isinstance(H.matvec(v), np.ndarray) and isinstance(H.matvec(torch.from_numpy(v)), torch.Tensor)
    f32 = pt.HessianOperator(mlp().float(), LOSS, [(x.float(), y) for x, y in DATA])
    assert spla.aslinearoperator(f32).dtype == np.float32


# -- 4. torch.nn.utils.prune -----------------------------------------------------------------
def torch_pruned(amount=0.4):
    m = mlp()
    prune.l1_unstructured(m[0], "weight", amount=amount)
    prune.random_unstructured(m[2], "weight", amount=0.3)
    return m


def removed(m):
    """The plain model with the effective weights (``copy.deepcopy`` fails on a model pruned
    with ``torch.nn.utils.prune``: its ``weight`` is a non-leaf tensor)."""
    values = pt.params.effective_values(m, list(dict(m.named_parameters())))
    plain = mlp()
    with torch.no_grad():
        for name, p in plain.named_parameters():
            p.copy_(values[name] if name in values else values[name + "_orig"])
    return plain


def test_torch_pruned_model_reads_as_masked():
    m = torch_pruned()
    plain = removed(m)
    assert list(pt.prunable_parameters(m)) == ["0.weight_orig", "2.weight_orig"]
    rename = {"0.weight_orig": "0.weight", "2.weight_orig": "2.weight"}
    already = 1 - sum(int(b.sum()) for b in pt.from_torch_prune(m).values()) / 48
    for s in (0.0, already, 0.7):
        got = pt.magnitude_masks(m, s)
        want = pt.magnitude_masks(plain, s)
        assert {rename[k]: v for k, v in got.items()}.keys() == want.keys()
        assert all(torch.equal(got[k], want[rename[k]]) for k in got)
    # the already-pruned entries are pruned first
    masks = pt.magnitude_masks(m, 0.7)
    assert all(not (masks[k] & ~old).any() for k, old in pt.from_torch_prune(m).items())


def test_torch_pruned_hessian_and_prediction_equal_the_plain_model():
    m = torch_pruned()
    plain = removed(m)
    before = model_fingerprint(m)
    weight_attr = m[0].weight
    for method in ("func", "backward"):
        H = pt.HessianOperator(m, LOSS, DATA, method=method)
        P = pt.HessianOperator(plain, LOSS, DATA, method=method)
        torch.testing.assert_close(H.parameters_vector(), P.parameters_vector(), rtol=0, atol=0)
        torch.testing.assert_close(H.to_dense(), P.to_dense())
    torch.testing.assert_close(H.to_dense(), dense_hessian(plain, P.param_names, DATA))
    kw = dict(spectrum_method="exact", trace_method=None, bootstrap=0)
    a, b = pt.predict_sparsity(m, LOSS, DATA, **kw), pt.predict_sparsity(plain, LOSS, DATA, **kw)
    assert a.sparsity == b.sparsity and a.eps == b.eps
    assert m[0].weight is weight_attr and fingerprints_equal(before, model_fingerprint(m))
    # pruning inside the block and restoring leaves the hook's tensor as it was
    with pt.pruned(m, 0.8):
        pt.evaluate_accuracy(m, DATA)
    assert m[0].weight is weight_attr and fingerprints_equal(before, model_fingerprint(m))


def test_to_torch_prune_round_trips():
    m = mlp()
    masks = pt.magnitude_masks(m, 0.6)
    exported = pt.to_torch_prune(copy.deepcopy(m), masks)
    back = pt.from_torch_prune(exported)
    assert {k.replace("_orig", ""): v for k, v in back.items()}.keys() == masks.keys()
    assert all(torch.equal(back[k + "_orig"], masks[k]) for k in masks)
    again = pt.magnitude_masks(exported, 0.6)
    assert all(torch.equal(again[k + "_orig"], masks[k]) for k in masks)
    applied = pt.apply_masks(copy.deepcopy(m), masks)
    torch.testing.assert_close(exported(X), applied(X), rtol=0, atol=0)
    plain = removed(exported)
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), applied.parameters()))
    # a second export on the torch-pruned model combines the masks
    more = pt.magnitude_masks(exported, 0.8)
    pt.to_torch_prune(exported, more)
    combined = pt.from_torch_prune(exported)
    assert all(torch.equal(combined[k], more[k] & back[k]) for k in more)
    assert all(torch.equal(combined[k], more[k]) for k in more)  # nested: s=0.8 ⊇ s=0.6


def test_selecting_a_torch_pruned_effective_weight_says_which_parameter():
    m = torch_pruned()
    with pytest.raises(ValueError, match=r"select its Parameter 0\.weight_orig"):
        pt.select_parameters(m, [m[0].weight])
    assert pt.select_parameters(m, [m[0].weight_orig]) == ["0.weight_orig"]


# -- 5. attention and the prunable set -------------------------------------------------------
class Zoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 8)
        self.norm = nn.LayerNorm(8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.cross = nn.MultiheadAttention(8, 2, kdim=4, vdim=6, batch_first=True)
        self.conv = nn.Conv1d(8, 8, 3)
        self.bn = nn.BatchNorm1d(8)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(8, 7)


def test_prunable_set_is_as_documented():
    assert list(pt.prunable_parameters(Zoo())) == [
        "attn.in_proj_weight", "attn.out_proj.weight",
        "cross.q_proj_weight", "cross.k_proj_weight", "cross.v_proj_weight", "cross.out_proj.weight",
        "conv.weight", "frozen.weight", "head.weight",
    ]


class TinyTransformer(nn.Module):
    """Embedding + one TransformerEncoderLayer (SDPA inside, need_weights=False) + head."""

    def __init__(self, vocab=5, width=4, length=3):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(0.1 * torch.randn(length, width))
        self.layer = nn.TransformerEncoderLayer(width, 2, 6, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=self.pos.dtype)
        h = self.layer(self.emb(x) + self.pos, src_mask=mask, is_causal=True)
        return self.head(h).reshape(-1, self.head.out_features)


def attention_data():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 5, (5, 4), generator=g)
    return [(tokens[i : i + 2, :3], tokens[i : i + 2, 1:].reshape(-1)) for i in range(0, 5, 2)]


def test_attention_hessian_matches_dense_float64():
    m = TinyTransformer().double()
    data = attention_data()
    assert "layer.self_attn.in_proj_weight" in pt.select_parameters(m, None)
    some = [m.pos, m.emb, m.layer.self_attn]  # embeddings and every attention parameter
    for params in (None, some):
        names = pt.select_parameters(m, params)
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            truth = _dense_per_sequence(m, names, data)  # batches weighted by sequences
        for method in ("func", "backward"):
            H = pt.HessianOperator(m, LOSS, data, params=params, method=method)
            torch.testing.assert_close(H.to_dense(), truth, rtol=1e-10, atol=1e-12)


def test_attention_hessian_all_parameters_matches_finite_differences():
    """``params="all"`` (LayerNorm affine parameters included) against central differences of
    the exact gradient: torch.func.hessian itself is wrong there in torch 2.13 (asymmetric in
    the LayerNorm rows, off by 0.1), while the operator is symmetric and agrees to 1e-12."""
    m = TinyTransformer().double()
    data = attention_data()
    H = pt.HessianOperator(m, LOSS, data, params="all")
    dense = H.to_dense()
    torch.testing.assert_close(dense, dense.T, rtol=0, atol=1e-14)
    w0 = H.parameters_vector()
    N = sum(len(x) for x, _ in data)

    def gradient(w):
        total = 0
        for x, y in data:
            def loss_of(flat, x=x, y=y):
                state = {n: t for n, t in H.unflatten(flat).items()}
                return LOSS(functional_call(m, state, (x,)), y)

            with pt.preserve_model(m), torch.nn.attention.sdpa_kernel(
                torch.nn.attention.SDPBackend.MATH
            ):
                m.eval()
                total = total + len(x) * torch.func.grad(loss_of)(w)
        return total / N

    for j in range(0, H.dim, 7):
        e = torch.zeros_like(w0)
        e[j] = 1e-5
        column = (gradient(w0 + e) - gradient(w0 - e)) / 2e-5
        torch.testing.assert_close(dense[:, j], column, rtol=1e-6, atol=1e-8)
    spec = pt.slq(H, num_steps=4, num_probes=1)
    assert torch.isfinite(spec.nodes).all()


def _dense_per_sequence(model, names, data):
    named = dict(model.named_parameters())
    shapes = [named[n].shape for n in names]
    sizes = [named[n].numel() for n in names]
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in names}
    w0 = torch.cat([named[n].detach().reshape(-1) for n in names])
    total, count = 0, 0
    with pt.preserve_model(model):
        model.eval()
        for x, y in data:
            def loss_of(flat, x=x, y=y):
                state = dict(fixed)
                state.update({n: p.reshape(s) for n, p, s in zip(names, torch.split(flat, sizes), shapes)})
                return LOSS(functional_call(model, state, (x,)), y)

            total = total + len(x) * torch.func.hessian(loss_of)(w0)
            count += len(x)
    return total / count
