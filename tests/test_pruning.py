"""Global magnitude masks against torch.nn.utils.prune and a sort-based reference; restore."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint
from phasetrans.prune import masks as pruning


def small_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 4)
    ).to(dtype)


def weights_of(model):
    return [p for n, p in model.named_parameters() if n in pt.prunable_parameters(model)]


def sort_reference(model, k, caps=None):
    """Masks pruning the k smallest (|w|, flat index in model order), greedily respecting caps."""
    ws = weights_of(model)
    flat = torch.cat([w.detach().abs().reshape(-1).double() for w in ws])
    owner = torch.cat([torch.full((w.numel(),), i) for i, w in enumerate(ws)])
    order = torch.sort(flat, stable=True).indices
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if caps is None:
        keep[order[:k]] = False
    else:
        used = [0] * len(ws)
        pruned_so_far = 0
        for idx in order.tolist():
            if pruned_so_far == k:
                break
            layer = int(owner[idx])
            if used[layer] < caps[layer]:
                used[layer] += 1
                keep[idx] = False
                pruned_so_far += 1
    out, start = [], 0
    for w in ws:
        out.append(keep[start : start + w.numel()].reshape(w.shape))
        start += w.numel()
    return out


def test_pruned_count_guards_float_error():
    assert pruning.pruned_count(0.3, 10) == 3
    assert pruning.pruned_count(1 - 0.7, 10) == 3  # 3.0000000000000004
    assert pruning.pruned_count(0.31, 10) == 4
    assert pruning.pruned_count(0.0, 10) == 0
    assert pruning.pruned_count(1.0, 10) == 10
    assert pruning.pruned_count(0.7, 10**8) == 70_000_000
    assert pruning.pruned_count(1e-9, 10**8) == 1
    for s in (0.1 * i for i in range(11)):
        assert pruning.pruned_count(s, 1000) == round(s * 1000)


@pytest.mark.parametrize("sparsity", [0.0, 0.05, 0.3, 0.5, 0.77, 0.999, 1.0])
def test_masks_equal_torch_global_unstructured(sparsity):
    model = small_model()
    masks = pt.magnitude_masks(model, sparsity)
    D = sum(w.numel() for w in weights_of(model))
    k = math.ceil(sparsity * D - 1e-9)
    assert sum(int((~m).sum()) for m in masks.values()) == k
    assert list(masks) == ["0.weight", "3.weight", "5.weight"]
    ref = small_model()
    prune.global_unstructured(
        [(ref[0], "weight"), (ref[3], "weight"), (ref[5], "weight")],
        pruning_method=prune.L1Unstructured,
        amount=k,  # an int: a float amount there means round(amount * D)
    )
    for name, layer in zip(masks, (ref[0], ref[3], ref[5])):
        assert masks[name].dtype == torch.bool
        assert torch.equal(masks[name], layer.weight_mask.bool())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.93])
def test_exact_count_and_tie_rule_with_ties(dtype, sparsity, monkeypatch):
    monkeypatch.setattr(pruning, "_CHUNK", 40)  # exercise chunk boundaries inside layers
    model = small_model(dtype=dtype)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for w in weights_of(model):
            w.copy_(torch.randint(-3, 4, w.shape, generator=gen).to(dtype) * 0.5)
    masks = pt.magnitude_masks(model, sparsity)
    D = sum(w.numel() for w in weights_of(model))
    assert sum(int((~m).sum()) for m in masks.values()) == math.ceil(sparsity * D - 1e-9)
    for got, want in zip(masks.values(), sort_reference(model, math.ceil(sparsity * D - 1e-9))):
        assert torch.equal(got, want)


def test_mixed_dtypes_and_signed_zero():
    model = small_model()
    model[5].double()
    with torch.no_grad():
        model[3].weight[0, :3] = torch.tensor([0.0, -0.0, 0.0])
    k = 20
    D = sum(w.numel() for w in weights_of(model))
    masks = pt.magnitude_masks(model, k / D)
    for got, want in zip(masks.values(), sort_reference(model, k)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("sparsity,floor", [(0.35, 0.6), (0.65, 0.3), (0.85, 0.1), (0.9, 0.05)])
def test_min_per_layer_floor_held_and_count_exact(sparsity, floor):
    model = small_model(seed=3)
    with torch.no_grad():  # make the last layer tiny so global pruning would empty it
        model[5].weight.mul_(1e-3)
    ws = weights_of(model)
    D = sum(w.numel() for w in ws)
    k = math.ceil(sparsity * D - 1e-9)
    caps = [w.numel() - math.ceil(floor * w.numel() - 1e-9) for w in ws]
    masks = pt.magnitude_masks(model, sparsity, min_per_layer=floor)
    assert sum(int((~m).sum()) for m in masks.values()) == k
    for m, w in zip(masks.values(), ws):
        assert int(m.sum()) >= math.ceil(floor * w.numel() - 1e-9)
    for got, want in zip(masks.values(), sort_reference(model, k, caps)):
        assert torch.equal(got, want)
    # without the floor the small layer collapses at high sparsity
    if sparsity >= 0.65:
        assert int(pt.magnitude_masks(model, sparsity)["5.weight"].sum()) < math.ceil(
            floor * ws[2].numel() - 1e-9
        )


def test_min_per_layer_infeasible_raises():
    model = small_model()
    with pytest.raises(ValueError, match="min_per_layer"):
        pt.magnitude_masks(model, 0.6, min_per_layer=0.5)
    assert sum(int(m.sum()) for m in pt.magnitude_masks(model, 0.5, min_per_layer=0.5).values())


def test_params_selection_and_bad_arguments():
    model = small_model()
    masks = pt.magnitude_masks(model, 0.5, params=["5.weight", "3.bias"])
    assert list(masks) == ["3.bias", "5.weight"]  # model order
    assert sum(int((~m).sum()) for m in masks.values()) == math.ceil(0.5 * (7 + 28))
    for bad in (float("nan"), -0.1, 1.5, float("inf")):
        with pytest.raises(ValueError, match="sparsity"):
            pt.magnitude_masks(model, bad)
    with pytest.raises(TypeError, match="sparsity"):
        pt.magnitude_masks(model, "0.5")
    with pytest.raises(ValueError, match="min_per_layer"):
        pt.magnitude_masks(model, 0.5, min_per_layer=2.0)
    with pytest.raises(TypeError, match="model"):
        pt.magnitude_masks("model", 0.5)
    with pytest.raises(ValueError, match="params"):
        pt.magnitude_masks(model, 0.5, params=["nope"])
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")
    before = model_fingerprint(model)
    with pytest.raises(ValueError, match="NaN"):
        pt.magnitude_masks(model, 0.5)
    assert fingerprints_equal(before, model_fingerprint(model))


def test_large_model_matches_sort_reference():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2048, 2100), nn.Linear(2100, 300), nn.Linear(300, 10))
    with torch.no_grad():
        model[1].weight[:, :50] = 0.0  # a block of ties
    ws = weights_of(model)
    D = sum(w.numel() for w in ws)
    assert D > 4_900_000 and ws[0].numel() > pruning._CHUNK  # several chunks per layer
    before = model_fingerprint(model)
    for s in (0.2, 0.9):
        k = math.ceil(s * D - 1e-9)
        masks = pt.magnitude_masks(model, s)
        for got, want in zip(masks.values(), sort_reference(model, k)):
            assert torch.equal(got, want)
    assert fingerprints_equal(before, model_fingerprint(model))


def make_state(model):
    """Grads on some params, one frozen, a submodule in eval mode."""
    model.train()
    model[3].eval()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    model[0].bias.grad = None
    model[5].bias.requires_grad_(False)
    return model


def test_pruned_zeroes_and_restores_bit_exactly():
    model = make_state(small_model())
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = -0.0
    before = model_fingerprint(model)
    masks_ref = pt.magnitude_masks(model, 0.6)
    with pt.pruned(model, 0.6) as masks:
        for name, p in model.named_parameters():
            if name in masks:
                assert torch.equal(masks[name], masks_ref[name])
                assert torch.all(p[~masks[name]] == 0)
                assert torch.equal(p[masks[name]], before["params"][name][masks[name]])
            else:
                assert torch.equal(p, before["params"][name])
        with torch.no_grad():  # anything done inside is undone
            model[3].bias.add_(1.0)
        model.eval()
        model[3].weight.grad = None
    assert fingerprints_equal(before, model_fingerprint(model))


def test_pruned_restores_after_exception():
    model = make_state(small_model())
    before = model_fingerprint(model)
    with pytest.raises(RuntimeError, match="boom"), pt.pruned(model, 0.9):
        with torch.no_grad():
            model[5].weight.mul_(3)
        raise RuntimeError("boom")
    assert fingerprints_equal(before, model_fingerprint(model))
    with pytest.raises(ValueError, match="min_per_layer"), pt.pruned(model, 0.9, min_per_layer=0.5):
        pass
    assert fingerprints_equal(before, model_fingerprint(model))


def test_apply_masks_permanent_and_checked():
    model = small_model()
    masks = pt.magnitude_masks(model, 0.4)
    with pt.pruned(model, 0.4):
        expected = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert pt.apply_masks(model, masks) is model
    for n, p in model.named_parameters():
        assert torch.equal(p, expected[n])
    assert pruning.mask_sparsity(masks) == pytest.approx(math.ceil(0.4 * 166) / 166)
    before = model_fingerprint(model)
    with pytest.raises(ValueError, match="shape"):
        pt.apply_masks(model, {"0.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="nope"):
        pt.apply_masks(model, {"nope": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(TypeError, match="bool"):
        pt.apply_masks(model, {"5.weight": torch.ones(4, 7)})
    with pytest.raises(TypeError, match="masks"):
        pt.apply_masks(model, [torch.ones(4, 7, dtype=torch.bool)])
    assert fingerprints_equal(before, model_fingerprint(model))


def test_to_torch_prune_export():
    model = small_model()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = pt.magnitude_masks(model, 0.7)
    pt.to_torch_prune(model, masks)
    for name, layer in (("0.weight", model[0]), ("3.weight", model[3]), ("5.weight", model[5])):
        assert torch.equal(layer.weight_orig, original[name])
        assert torch.equal(layer.weight_mask.bool(), masks[name])
        assert torch.equal(layer.weight, original[name] * masks[name])
        prune.remove(layer, "weight")
        assert torch.equal(layer.weight, original[name] * masks[name])


def test_check_masks_and_pruned_count_are_shared_helpers():
    from phasetrans import params

    # one definition, reachable from the base layer (theory, train) and from prune
    assert pruning.check_masks is params.check_masks and pruning.pruned_count is params.pruned_count
    assert pt.pruned_count is params.pruned_count
    model = small_model()
    masks = pt.magnitude_masks(model, 0.5)
    checked = pruning.check_masks(model, masks)
    named = dict(model.named_parameters())
    assert list(checked) == list(masks)
    for name, (p, m) in checked.items():
        assert p is named[name] and m is masks[name]
    with pytest.raises(TypeError, match="masks must be a dict"):
        pruning.check_masks(model, None)
    with pytest.raises(ValueError, match=r"masks\['0.weight'\] has shape \(3,\), expected"):
        pruning.check_masks(model, {"0.weight": torch.ones(3, dtype=torch.bool)})


# -- issue 16: parametrised layers are never silently left out of the prunable set -----------
@pytest.mark.parametrize("wrap, pattern", [
    (lambda m: nn.utils.parametrizations.weight_norm(m), "parametrize"),
    (lambda m: nn.utils.parametrizations.spectral_norm(m), "parametrize"),
    (lambda m: nn.utils.weight_norm(m), "weight_g/weight_v"),
])
def test_parametrised_layers_raise_instead_of_shrinking_D(wrap, pattern):
    # before: weight_norm layers were skipped, D = 24 of 72, and pruning ignored them
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecated hook-based weight_norm
        model = nn.Sequential(wrap(nn.Linear(6, 8)), nn.Tanh(), nn.Linear(8, 3))
    for call in (lambda: pt.prunable_parameters(model), lambda: pt.magnitude_masks(model, 0.5),
                 lambda: pt.HessianOperator(model, nn.CrossEntropyLoss(), (torch.randn(4, 6), torch.zeros(4).long()))):
        with pytest.raises(ValueError, match=rf"layer '0' .*{pattern}"):
            call()
    # an explicit selection of the parametrisation's own parameters is allowed
    names = [n for n, _ in model.named_parameters() if n.startswith("0.")]
    assert pt.HessianOperator(model, nn.CrossEntropyLoss(), (torch.randn(4, 6), torch.zeros(4).long()),
                              params=names).dim == sum(p.numel() for n, p in model.named_parameters()
                                                       if n.startswith("0."))


@pytest.mark.parametrize("sparsity", [True, False, torch.tensor(True)])
def test_booleans_are_not_sparsities(sparsity):
    model = small_model()
    with pytest.raises(TypeError, match="sparsity must be a real number"):
        pt.magnitude_masks(model, sparsity)
    with pytest.raises(TypeError, match="sparsity must be a real number"):
        with pt.pruned(model, sparsity):
            pass
