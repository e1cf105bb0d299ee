"""The written-out R-operator for multilayer perceptrons (``linalg/_pearlmutter.py``) against dense
float64 ``torch.func.hessian`` references, and the cases it must leave to autograd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint
from phasetrans.linalg._pearlmutter import Tape, sequential_plan

DT = torch.float64
REL = 1e-12


def dense_hessian(model, loss_fn, batches, names):
    """``sum_b |b|/N ∇²L_b`` over the selected parameters, flattened, by ``torch.func.hessian``."""
    params = dict(model.named_parameters())
    sel = [params[n].detach() for n in names]
    numels = [p.numel() for p in sel]

    def loss_of(flat, X, y):
        pieces = torch.split(flat, numels)
        state = {n: p.detach() for n, p in params.items()}
        state.update({n: t.view(params[n].shape) for n, t in zip(names, pieces)})
        return loss_fn(functional_call(model, state, (X,)), y)

    flat = torch.cat([p.reshape(-1) for p in sel])
    N = sum(len(y) for _, y in batches)
    mode = model.training
    model.eval()  # the operator's passes: eval mode
    try:
        return sum(hessian(loss_of)(flat, X, y) * (len(y) / N) for X, y in batches)
    finally:
        model.train(mode)


def batches_of(X, y, sizes=(10, 10, 3)):
    out, start = [], 0
    for s in sizes:
        out.append((X[start:start + s], y[start:start + s]))
        start += s
    return out


def data(kind="ce", n=23, features=6, outputs=3, seed=2):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, generator=g, dtype=DT)
    y = (torch.randint(0, outputs, (n,), generator=g) if kind == "ce"
         else torch.randn(n, outputs, generator=g, dtype=DT))
    return X, y


def net(*layers):
    torch.manual_seed(0)
    return nn.Sequential(*layers).to(DT)


def used_tapes(H) -> bool:
    return H._cache is not None and all(isinstance(e[2], Tape) for e in H._cache.entries)


def check_exact(model, loss_fn, X, y, params="all", K=3):
    """The operator's product is the dense one (K columns and one), the kept tapes give it again
    bit for bit, and the written-out path was taken."""
    batches = batches_of(X, y)
    H = pt.HessianOperator(model, loss_fn, batches, params=params)
    V = torch.randn(H.dim, K, dtype=DT, generator=torch.Generator().manual_seed(5))
    first = H @ V
    ref = dense_hessian(model, loss_fn, batches, H.param_names) @ V
    assert float((first - ref).norm() / ref.norm()) <= REL
    assert used_tapes(H)
    assert torch.equal(H @ V, first)
    one = H @ V[:, -1]
    assert float((one - ref[:, -1]).norm() / ref[:, -1].norm()) <= REL
    return H


@pytest.mark.parametrize("act", [nn.ReLU(), nn.ReLU(inplace=True), nn.LeakyReLU(0.1), nn.Tanh(),
                                 nn.Sigmoid(), nn.Softplus(), nn.Softplus(beta=2.0, threshold=1.0)],
                         ids=lambda a: repr(a))
def test_every_activation_against_the_dense_hessian(act):
    model = net(nn.Linear(6, 8), act, nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))
    X, y = data()
    check_exact(model, nn.CrossEntropyLoss(), X, y)


def test_relu_kinks_are_those_of_torch():
    """Pre-activations exactly at 0 (ReLU's kink): the derivative there is torch's (0), as in the
    autograd product."""
    model = net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[:4].zero_()
        model[0].bias[:4].zero_()
    X, y = data()
    check_exact(model, nn.CrossEntropyLoss(), X, y)


@pytest.mark.parametrize("params", ["all", ["2.weight"], ["3.bias"], ["0.bias", "3.weight"],
                                    ["0.weight"], None])
def test_parameter_subsets_and_missing_biases(params):
    model = net(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5, bias=False), nn.Linear(5, 3))
    X, y = data()
    check_exact(model, F.cross_entropy, X, y, params=params)


def test_mean_squared_error_and_skipped_layers():
    X, y = data("mse")
    model = net(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3))
    check_exact(model, nn.MSELoss(), X, y)
    check_exact(model, F.mse_loss, X, y, K=1)
    model = net(nn.Tanh(), nn.Linear(6, 8), nn.Dropout(0.5), nn.ReLU(), nn.Identity(), nn.Linear(8, 3))
    model.train()  # the passes run in eval mode: Dropout is the identity
    H = check_exact(model, nn.CrossEntropyLoss(), *data())
    assert model.training and H._plan is not None


def test_float32_products_agree_with_autograd():
    model = net(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).float()
    X, y = data()
    X = X.float()
    batches = batches_of(X, y)
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), batches, params="all")
    R = pt.HessianOperator(model, nn.CrossEntropyLoss(), batches, params="all", method="backward")
    V = torch.randn(H.dim, 4, generator=torch.Generator().manual_seed(5))
    a, b = H @ V, R @ V
    assert used_tapes(H) and R._plan is None
    assert float((a - b).norm() / b.norm()) <= 1e-6


def test_inputs_and_model_come_back_untouched():
    model = net(nn.ReLU(inplace=True), nn.Linear(6, 8), nn.ReLU(inplace=True), nn.Linear(8, 3))
    X, y = data()
    X0 = X.clone()
    before = model_fingerprint(model)
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), batches_of(X, y), params="all")
    V = torch.randn(H.dim, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    got = H @ V
    assert used_tapes(H) and H.cached_bytes > 0
    assert torch.equal(X, X0) and fingerprints_equal(before, model_fingerprint(model))
    ref = dense_hessian(model, nn.CrossEntropyLoss(), batches_of(X.clone(), y), H.param_names) @ V
    assert float((got - ref).norm() / ref.norm()) <= REL


def test_weight_edits_rebuild_the_tapes():
    model = net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    X, y = data()
    batches = batches_of(X, y)
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), batches, params="all")
    v = torch.randn(H.dim, dtype=DT, generator=torch.Generator().manual_seed(1))
    H @ v
    model[0].weight.data.mul_(0.5)
    ref = dense_hessian(model, nn.CrossEntropyLoss(), batches, H.param_names) @ v
    assert float(((H @ v) - ref).norm() / ref.norm()) <= REL


def test_non_finite_loss_names_its_batch():
    model = net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    X, y = data()
    X = X.clone()
    X[21] = float("inf")
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), batches_of(X, y), params="all")
    with pytest.raises(ValueError, match="non-finite loss .* at batch 2"):
        H @ torch.ones(H.dim, dtype=DT)


def test_memory_is_counted_and_bounded():
    model = net(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 3))
    X, y = data(n=400)
    sizes = []
    for n in (200, 400):
        H = pt.HessianOperator(model, nn.CrossEntropyLoss(), [(X[:n], y[:n])], params="all")
        H @ torch.ones(H.dim, dtype=DT)
        assert used_tapes(H) and H.cached_bytes >= n * (40 + 40 + 40 + 3) * 8
        sizes.append(H.cached_bytes)
    assert 1.8 < sizes[1] / sizes[0] < 2.2
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), [(X[:200], y[:200])], params="all",
                           cache_bytes=1000)  # over the budget: tapes rebuilt every product
    out = H @ torch.ones(H.dim, dtype=DT)
    assert H.cached_bytes == 0 and torch.equal(H @ torch.ones(H.dim, dtype=DT), out)


class MyLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2.0


def _hooked_model():
    model = net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    model[2].register_forward_hook(lambda m, i, o: o * 3.0)
    return model


@pytest.mark.parametrize("case", [
    "label_smoothing", "class_weights", "sum_reduction", "ignore_index", "linear_subclass", "forward_hook",
    "elu", "gelu", "method_backward", "pruned", "probability_targets",
])
def test_other_forms_go_through_autograd_and_stay_exact(case):
    """Each of these is not the written-out form: no plan (or no tape for the batch), and the
    product is still the dense one."""
    loss_fn = nn.CrossEntropyLoss()
    model = net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    X, y = data()
    method = "auto"
    if case == "label_smoothing":
        loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    elif case == "class_weights":
        loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5], dtype=DT))
    elif case == "sum_reduction":
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
    elif case == "ignore_index":  # a class index the loss leaves out of its mean
        loss_fn = nn.CrossEntropyLoss(ignore_index=1)
    elif case == "linear_subclass":
        model = net(MyLinear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    elif case == "forward_hook":
        model = _hooked_model()
    elif case == "elu":
        model = net(nn.Linear(6, 8), nn.ELU(), nn.Linear(8, 3))
    elif case == "gelu":
        model = net(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3))
    elif case == "method_backward":
        method = "backward"
    elif case == "pruned":
        torch.nn.utils.prune.l1_unstructured(model[0], "weight", amount=0.5)
    elif case == "probability_targets":
        y = torch.softmax(torch.randn(len(y), 3, dtype=DT, generator=torch.Generator().manual_seed(3)), 1)
    batches = batches_of(X, y)
    H = pt.HessianOperator(model, loss_fn, batches, params="all", method=method)
    V = torch.randn(H.dim, 2, dtype=DT, generator=torch.Generator().manual_seed(5))
    got = H @ V
    assert not (H._cache is not None and any(isinstance(e[2], Tape) for e in H._cache.entries))
    if case == "pruned":
        return  # the pruned weight's dense reference is in tests/test_interop.py
    ref = dense_hessian(model, loss_fn, batches, H.param_names) @ V
    assert float((got - ref).norm() / ref.norm()) <= 1e-10


def test_a_batch_outside_the_form_is_taken_by_autograd():
    """Targets with the ignore index (or out of range) in one batch: that batch goes through
    autograd (so the user's loss sees it), the others through tapes; the sum is exact."""
    model = net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    X, y = data()
    y = y.clone()
    y[12] = -100  # nn.CrossEntropyLoss's ignore_index: the mean is over the other samples
    batches = batches_of(X, y)
    loss_fn = nn.CrossEntropyLoss()
    H = pt.HessianOperator(model, loss_fn, batches, params="all")
    V = torch.randn(H.dim, 2, dtype=DT, generator=torch.Generator().manual_seed(5))
    got = H @ V
    kinds = [isinstance(e[2], Tape) for e in H._cache.entries]
    assert kinds == [True, False, True]
    ref = dense_hessian(model, loss_fn, batches, H.param_names) @ V
    assert float((got - ref).norm() / ref.norm()) <= 1e-10
    assert torch.equal(H @ V, got)


def test_widths_that_do_not_fit_raise_the_users_error():
    """A batch the written-out forward cannot take goes to autograd, which raises the model's
    own error."""
    model = net(nn.Linear(6, 8), nn.Linear(7, 3))
    X, y = data()
    H = pt.HessianOperator(model, F.cross_entropy, [(X, y)], params="all")
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        H @ torch.ones(H.dim, dtype=DT)


def images(n=23, shape=(1, 6, 6), seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("params", ["all", ["0.weight"], ["2.bias"], ["2.weight", "6.bias"]])
def test_convolutions_against_the_dense_hessian(params):
    model = net(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 2, stride=2, dilation=1),
                nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    check_exact(model, nn.CrossEntropyLoss(), *images(), params=params)


def test_conv1d_conv3d_strides_dilations_and_no_bias():
    X, y = images(shape=(2, 11))
    model = net(nn.Conv1d(2, 3, 3, stride=2, padding=1, dilation=2, bias=False), nn.Softplus(),
                nn.Conv1d(3, 2, 2), nn.Sigmoid(), nn.AdaptiveAvgPool1d(3), nn.Flatten(),
                nn.Linear(6, 3))
    check_exact(model, F.cross_entropy, X, y)
    X, y = images(shape=(1, 4, 5, 3))
    model = net(nn.Conv3d(1, 2, (2, 3, 2), padding=(1, 0, 1)), nn.LeakyReLU(0.2),
                nn.AdaptiveAvgPool3d((2, 1, 2)), nn.Flatten(), nn.Linear(8, 3))
    check_exact(model, nn.CrossEntropyLoss(), X, y)


def test_flatten_first_and_mse_on_images():
    X, _ = images()
    y = torch.randn(len(X), 2, dtype=DT, generator=torch.Generator().manual_seed(4))
    model = net(nn.Flatten(), nn.Linear(36, 5), nn.ReLU(), nn.Linear(5, 2))
    check_exact(model, nn.MSELoss(), X, y)
    model = net(nn.Tanh(), nn.Flatten(), nn.Linear(36, 5), nn.ReLU(), nn.Linear(5, 2))
    check_exact(model, nn.MSELoss(), X, y)  # a flatten after an activation: images still taken


def test_plan_reads_the_structure():
    model = net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    plan = sequential_plan(model, nn.CrossEntropyLoss(), ["2.weight"])
    assert plan is not None and plan.lowest == 2 and plan.loss == "ce"
    assert plan.in_features == 6 and plan.input_dims == 2
    assert sequential_plan(model, nn.CrossEntropyLoss(), ["0.weight"]).lowest == 0
    assert sequential_plan(model, lambda o, t: F.cross_entropy(o, t), ["0.weight"]) is None
    conv = net(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 3))
    plan = sequential_plan(conv, F.cross_entropy, ["0.weight", "3.bias"])
    assert plan.input_dims == 4 and plan.in_features == 1 and plan.lowest == 0
    for other in (nn.Conv2d(1, 4, 3, groups=1, padding="same"), nn.Conv2d(2, 4, 3, groups=2),
                  nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.Flatten(0),
                  nn.MaxPool2d(2)):
        assert sequential_plan(net(other, nn.Flatten(), nn.LazyLinear(3)), F.cross_entropy, []) is None
    bn = net(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    assert [layer[0] for layer in sequential_plan(bn, F.cross_entropy, ["0.weight"]).layers] == [
        "affine", "norm", "affine"]
    ln = net(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    assert sequential_plan(ln, F.cross_entropy, ["0.weight"]) is None


@pytest.mark.parametrize("rows_bytes", [1, 2000])
def test_batches_cut_into_slices_of_samples(monkeypatch, rows_bytes):
    """The product is a sum over samples: cut into slices of one sample (or a few), it is the
    dense product still (cross-entropy's 1/B is the whole batch's), for every layer kind."""
    from phasetrans.linalg import _pearlmutter

    monkeypatch.setattr(_pearlmutter, "ROW_BYTES", rows_bytes)
    model = net(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 2, stride=2),
                nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    check_exact(model, nn.CrossEntropyLoss(), *images())
    X, _ = images()
    y = torch.randn(len(X), 2, dtype=DT, generator=torch.Generator().manual_seed(4))
    model = net(nn.Flatten(), nn.Linear(36, 5), nn.Sigmoid(), nn.Linear(5, 2))
    check_exact(model, nn.MSELoss(), X, y, params=["1.bias", "3.weight"])


def test_adaptive_pooling_that_does_not_divide():
    """Adaptive pooling whose output does not divide its input (overlapping windows) goes
    through the adaptive kernels; 7 -> 3 and 5 -> 2."""
    X, y = images(shape=(1, 7, 5))
    model = net(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d((3, 2)), nn.Flatten(),
                nn.Linear(12, 3))
    check_exact(model, nn.CrossEntropyLoss(), X, y)
    X, y = images(shape=(2, 7))
    model = net(nn.Conv1d(2, 2, 1), nn.Tanh(), nn.AdaptiveAvgPool1d(3), nn.Flatten(), nn.Linear(6, 3))
    check_exact(model, nn.CrossEntropyLoss(), X, y)


@pytest.mark.parametrize("outputs", [(5, 4), (3, 2)])
def test_average_pooling_by_kernels_and_by_its_matrix(outputs):
    """Past POOL_MATRIX_OUTPUTS output positions the pooling kernels (divisible: the plain
    average pool; not: the adaptive one), below them the pooling's matrix."""
    from phasetrans.linalg._layer_maps import POOL_MATRIX_OUTPUTS, pool_matrix

    X, y = images(shape=(1, 10, 8) if outputs == (5, 4) else (1, 7, 5))
    pool = nn.AdaptiveAvgPool2d(outputs)
    assert (pool_matrix(pool, (2, *X.shape[2:]), DT, X.device) is None) == (
        outputs[0] * outputs[1] > POOL_MATRIX_OUTPUTS)
    model = net(nn.Conv2d(1, 2, 1), nn.Sigmoid(), pool, nn.Flatten(), nn.Linear(2 * outputs[0] * outputs[1], 3))
    check_exact(model, nn.CrossEntropyLoss(), X, y)
    X, y = images(shape=(1, 9, 7))  # 9 x 7 -> 5 x 4 does not divide
    if outputs == (5, 4):
        check_exact(model, nn.CrossEntropyLoss(), X, y)


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(2), nn.MaxPool2d(3, stride=1, padding=1), nn.MaxPool2d(2, ceil_mode=True),
    nn.MaxPool2d(2, dilation=2, stride=1),
], ids=repr)
def test_max_pooling_against_the_dense_hessian(pool):
    """Windows that overlap, pad, dilate or run past the edge; ReLU zeros before the pooling
    make ties, resolved as torch does (the first maximum of the window)."""
    X, y = images(shape=(1, 7, 7))
    model = net(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), pool, nn.Tanh(), nn.Flatten(),
                nn.LazyLinear(3))
    model(X)  # materialise the lazy layer
    model = net(*model)
    check_exact(model, nn.CrossEntropyLoss(), X, y)


def test_max_pooling_1d_3d():
    X, y = images(shape=(2, 9))
    model = net(nn.Conv1d(2, 3, 2), nn.ReLU(), nn.MaxPool1d(3, stride=2), nn.Flatten(), nn.Linear(9, 3))
    check_exact(model, F.cross_entropy, X, y)
    X, y = images(shape=(1, 4, 4, 5))
    model = net(nn.Conv3d(1, 2, 2), nn.Sigmoid(), nn.MaxPool3d(2, ceil_mode=True), nn.Flatten(),
                nn.Linear(16, 3))
    check_exact(model, F.cross_entropy, X, y)


def test_the_projects_own_lenet_and_mlp_take_the_written_out_path(monkeypatch):
    """A LeNet-shaped pair of nested sequentials with two max poolings against the dense
    Hessian; ``pt.models.lenet`` (too large for a dense reference) against the autograd product,
    on whole batches and in slices of one sample; ``pt.models.MLP`` (a subclass of
    nn.Sequential) against the dense Hessian."""
    from phasetrans.linalg import _pearlmutter

    torch.manual_seed(0)
    mini = net(nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(2, 3, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)),
               nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3)))
    X, y = images(shape=(1, 8, 8))
    check_exact(mini, nn.CrossEntropyLoss(), X, y)
    check_exact(mini, nn.CrossEntropyLoss(), X, y, params=None)
    torch.manual_seed(0)
    lenet = pt.models.lenet(image_size=8).to(DT)
    batches = batches_of(X, y)
    V = torch.randn(sum(p.numel() for p in lenet.parameters()), 3, dtype=DT,
                    generator=torch.Generator().manual_seed(5))
    ref = pt.HessianOperator(lenet, nn.CrossEntropyLoss(), batches, params="all", method="backward") @ V
    for rows in (1 << 22, 1):
        monkeypatch.setattr(_pearlmutter, "ROW_BYTES", rows)
        H = pt.HessianOperator(lenet, nn.CrossEntropyLoss(), batches, params="all")
        got = H @ V
        assert used_tapes(H) and float((got - ref).norm() / ref.norm()) <= REL
    torch.manual_seed(0)
    mlp = pt.models.digits_mlp(hidden=(7,)).to(DT)
    X, y = images(n=23, shape=(64,))
    check_exact(mlp, nn.CrossEntropyLoss(), X, y)


def test_channels_last_batches_and_models():
    """Channels-last inputs, and a model whose convolution weights are channels-last: the tapes
    are kept contiguous and the folded views taken where the layout allows, so the product is
    the dense one still."""
    X, y = images(shape=(3, 6, 6))
    model = net(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3), nn.Tanh(),
                nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    ref = dense_hessian(model, nn.CrossEntropyLoss(), batches_of(X, y), [n for n, _ in model.named_parameters()])
    V = torch.randn(ref.shape[0], 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    Xc = X.to(memory_format=torch.channels_last)
    import copy

    for m in (model, copy.deepcopy(model).to(memory_format=torch.channels_last)):
        H = pt.HessianOperator(m, nn.CrossEntropyLoss(), batches_of(Xc, y), params="all")
        got = H @ V
        assert used_tapes(H) and float((got - ref @ V).norm() / (ref @ V).norm()) <= REL


def _with_statistics(model):
    """Non-trivial running statistics and affine parameters in every batch norm."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g, dtype=DT) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=DT) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.num_features, generator=g, dtype=DT) + 0.5)
                    m.bias.copy_(torch.rand(m.num_features, generator=g, dtype=DT) - 0.5)
    return model


@pytest.mark.parametrize("params", ["all", None, ["1.weight"], ["1.bias", "3.weight"],
                                    ["9.weight", "11.bias"], ["9.bias"]])
def test_eval_mode_batch_norms_against_the_dense_hessian(params):
    """BatchNorm in eval mode (the operator's default): a per-channel affine map of fixed
    statistics, its γ and β selectable, at the lowest selected layer or above it."""
    X, y = images(shape=(2, 6, 6))
    model = _with_statistics(net(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3),
                                 nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Tanh(), nn.BatchNorm2d(4, affine=False),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5),
                                 nn.BatchNorm1d(5), nn.Sigmoid(), nn.Linear(5, 3)))
    model.train()  # the operator's passes put the norms in eval mode themselves
    H = check_exact(model, nn.CrossEntropyLoss(), X, y, params=params)
    assert model.training and H._plan is not None


def test_batch_norm_first_and_slices(monkeypatch):
    from phasetrans.linalg import _pearlmutter

    monkeypatch.setattr(_pearlmutter, "ROW_BYTES", 1)
    X, y = data()
    model = _with_statistics(net(nn.BatchNorm1d(6), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)))
    check_exact(model, nn.CrossEntropyLoss(), X, y)
    check_exact(model, nn.CrossEntropyLoss(), X, y, params=["0.weight", "0.bias"])


def test_batch_norm_in_train_mode_or_without_statistics_goes_to_autograd():
    X, y = data()
    model = _with_statistics(net(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)))
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), batches_of(X, y), params="all",
                           batchnorm="train")
    H @ torch.ones(H.dim, dtype=DT)  # the form is read at a product
    assert H._plan is None and not used_tapes(H)
    stats_free = net(nn.Linear(6, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.Linear(8, 3))
    assert sequential_plan(stats_free, F.cross_entropy, ["0.weight"]) is None
    extra = net(nn.Linear(6, 8), nn.Linear(8, 3))
    extra.register_buffer("scale", torch.ones(1, dtype=DT))
    assert sequential_plan(extra, F.cross_entropy, ["0.weight"]) is None


def test_the_projects_vgg_small_takes_the_written_out_path():
    """``pt.models.vgg_small`` (convolutions, eval-mode batch norms, max pooling, global average
    pooling) against the dense Hessian on a narrow one."""
    torch.manual_seed(0)
    model = _with_statistics(pt.models.vgg_small(num_classes=3, in_channels=1, width=2).to(DT))
    X, y = images(n=12, shape=(1, 8, 8))
    check_exact(model, nn.CrossEntropyLoss(), X, y)


def test_a_hook_added_after_the_first_product_is_seen():
    """The form is read again at every product: a forward hook registered after the tapes were
    kept sends the next product through autograd, with the hook's effect."""
    model = net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    X, y = data()
    batches = batches_of(X, y)
    H = pt.HessianOperator(model, nn.CrossEntropyLoss(), batches, params="all")
    V = torch.randn(H.dim, 2, dtype=DT, generator=torch.Generator().manual_seed(5))
    H @ V
    assert used_tapes(H)
    handle = model[2].register_forward_hook(lambda m, i, o: o * 3.0)
    got = H @ V
    assert H._plan is None and not used_tapes(H)
    ref = dense_hessian(model, nn.CrossEntropyLoss(), batches, H.param_names) @ V
    assert float((got - ref).norm() / ref.norm()) <= 1e-10
    handle.remove()
    again = H @ V
    assert used_tapes(H)
    ref = dense_hessian(model, nn.CrossEntropyLoss(), batches, H.param_names) @ V
    assert float((again - ref).norm() / ref.norm()) <= REL


def test_slices_follow_the_device(monkeypatch):
    """On CPU the batch is cut by ROW_BYTES, on an accelerator by DEVICE_ROW_BYTES (no
    accelerator here: the kept tape's device is set by hand, and the rule reads it)."""
    from phasetrans.linalg import _pearlmutter

    seen = []
    original = _pearlmutter._rows_product
    monkeypatch.setattr(_pearlmutter, "_rows_product",
                        lambda *a: (seen.append(a[-1] - a[-2]), original(*a))[1])
    monkeypatch.setattr(_pearlmutter, "ROW_BYTES", 1)
    model = net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3), nn.Sigmoid())
    X, _ = data()
    y = torch.rand(len(X), 3, dtype=DT, generator=torch.Generator().manual_seed(3))
    H = pt.HessianOperator(model, nn.MSELoss(), batches_of(X, y), params="all")
    H @ torch.ones(H.dim, 2, dtype=DT)
    assert seen and set(seen) == {1}
    tape = H._cache.entries[0][2]
    tape.device = torch.device("cuda")  # the accelerator's bound: one slice
    seen.clear()
    _pearlmutter.tape_product(H._plan, tape, _pearlmutter.columns(H._plan, [
        torch.ones(2, *p.shape, dtype=DT) for p in model.parameters()]),
        [torch.zeros(2, *p.shape, dtype=DT) for p in model.parameters()], 1.0, 2)
    assert seen == [tape.size]
