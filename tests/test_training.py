"""l1 training (LOMP recipe), schedules, masked re-fit, evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import digits_tensors, make_mlp, trained_mlp
from torch import nn

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint


def digits_batches(batch=256, dtype=torch.float32):
    Xtr, ytr, _, _ = digits_tensors(dtype)
    return [(Xtr[i : i + batch], ytr[i : i + batch]) for i in range(0, len(ytr), batch)]


def test_lr_schedule_exact_values():
    lr = 0.1
    cos = [pt.lr_at_epoch(e, lr, 10, warmup_epochs=2) for e in range(10)]
    assert cos[:2] == [0.05, 0.1]
    assert cos[2:] == [lr * 0.5 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]
    step = [pt.lr_at_epoch(e, lr, 10, 1, "step", step_size=3, gamma=0.5) for e in range(10)]
    assert step == [0.1] + [lr * 0.5 ** (t // 3) for t in range(9)]
    assert [pt.lr_at_epoch(e, lr, 4, 0, "constant") for e in range(4)] == [lr] * 4
    with pytest.raises(ValueError, match="schedule"):
        pt.lr_at_epoch(0, lr, 4, schedule="linear")
    with pytest.raises(ValueError, match="warmup_epochs"):
        pt.lr_at_epoch(0, lr, 4, warmup_epochs=5)


def test_history_records_schedule_loss_and_penalty():
    Xtr, ytr, _, _ = digits_tensors(torch.float64)
    model = make_mlp(seed=1, dtype=torch.float64)
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        loss0 = float(loss_fn(model(Xtr), ytr))
        l1_0 = sum(float(m.weight.abs().sum()) for m in model if isinstance(m, nn.Linear))
    hist = pt.train_l1(
        model, loss_fn, (Xtr, ytr), l1=1e-3, epochs=5, lr=0.05, warmup_epochs=2,
        schedule="step", step_size=2, gamma=0.3, progress=False,
    )
    assert hist.epoch == [0, 1, 2, 3, 4]
    assert hist.lr == [pt.lr_at_epoch(e, 0.05, 5, 2, "step", 2, 0.3) for e in range(5)]
    # one full batch per epoch: epoch 0 records the loss and penalty at the initial weights
    assert hist.loss[0] == pytest.approx(loss0, rel=1e-12)
    assert hist.penalty[0] == pytest.approx(1e-3 * l1_0, rel=1e-12)
    assert hist.loss[-1] < hist.loss[0]
    assert set(hist.to_dict()) == {"epoch", "loss", "penalty", "lr", "eval"}


def test_l1_drives_weights_towards_zero():
    data = digits_batches(128)
    small = {}
    for l1 in (0.0, 3e-3):
        model = make_mlp(seed=0)
        pt.train_l1(model, nn.CrossEntropyLoss(), data, l1=l1, epochs=8, lr=0.05, progress=False)
        w = torch.cat([p.detach().reshape(-1) for p in pt.prunable_parameters(model).values()])
        small[l1] = float((w.abs() < 1e-2).double().mean())
    assert small[3e-3] > small[0.0] + 0.2, small


def test_deterministic_with_seed_and_global_rng_untouched():
    Xtr, ytr, _, _ = digits_tensors(torch.float32)
    ds = torch.utils.data.TensorDataset(Xtr, ytr)

    def run(seed):
        model = nn.Sequential(nn.Linear(64, 32), nn.Dropout(0.3), nn.ReLU(), nn.Linear(32, 10))
        with torch.no_grad():
            for i, p in enumerate(model.parameters()):
                p.copy_(torch.linspace(-0.2, 0.2, p.numel()).reshape(p.shape).roll(i))
        loader = torch.utils.data.DataLoader(ds, batch_size=200, shuffle=True)
        state = torch.random.get_rng_state()
        hist = pt.train_l1(model, nn.CrossEntropyLoss(), loader, l1=1e-4, epochs=3, lr=0.05,
                           seed=seed, progress=False)
        assert torch.equal(state, torch.random.get_rng_state())
        return model, hist

    (m1, h1), (m2, h2), (m3, _) = run(0), run(0), run(1)
    assert h1 == h2
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(m1.parameters(), m3.parameters()))


def test_train_l1_trains_in_place_but_keeps_mode_grads_flags():
    model = make_mlp(seed=2)
    model.eval()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model[2].bias.requires_grad_(False)
    before = model_fingerprint(model)
    evals = []
    hist = pt.train_l1(model, nn.CrossEntropyLoss(), digits_batches(), l1=1e-4, epochs=2, lr=0.01,
                       progress=False,
                       eval_fn=lambda m: evals.append(m.training) or len(evals))
    after = model_fingerprint(model)
    assert hist.eval == [1, 2] and evals == [True, True]
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert torch.equal(after["grads"]["0.weight"], before["grads"]["0.weight"])
    assert after["grads"]["2.weight"] is None
    assert not torch.equal(after["params"]["0.weight"], before["params"]["0.weight"])
    assert torch.equal(after["params"]["2.bias"], before["params"]["2.bias"])  # frozen


def test_train_l1_bad_arguments():
    model = make_mlp()
    data = digits_batches()
    loss_fn = nn.CrossEntropyLoss()
    before = model_fingerprint(model)
    cases = [
        (dict(l1=-1.0), ValueError, "l1"),
        (dict(l1=float("nan")), ValueError, "l1"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(epochs=2.0), TypeError, "epochs"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(schedule="poly"), ValueError, "schedule"),
        (dict(warmup_epochs=9), ValueError, "warmup_epochs"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(progress="yes"), TypeError, "progress"),
        (dict(eval_fn=3), TypeError, "eval_fn"),
        (dict(params=["nope"]), ValueError, "params"),
    ]
    for kwargs, exc, word in cases:
        args = dict(l1=1e-3, epochs=2, lr=0.1, progress=False) | kwargs
        with pytest.raises(exc, match=word):
            pt.train_l1(model, loss_fn, data, **args)
    with pytest.raises(TypeError, match="loss_fn"):
        pt.train_l1(model, None, data, l1=0.0, epochs=1, lr=0.1)
    with pytest.raises(TypeError, match="data"):
        pt.train_l1(model, loss_fn, iter(data), l1=0.0, epochs=1, lr=0.1)
    assert fingerprints_equal(before, model_fingerprint(model))  # refused before any step
    model.eval()
    with pytest.raises(FloatingPointError, match="lr"):
        pt.train_l1(model, lambda out, y: out.sum() * float("nan"), data, l1=0.0, epochs=1,
                    lr=0.1, progress=False)
    assert not model.training  # mode restored also when training fails midway


def test_evaluate_accuracy_and_loss_weight_batches_and_leave_model():
    _, _, Xte, yte = digits_tensors(torch.float64)
    model = trained_mlp()
    model = nn.Sequential(nn.Dropout(0.5), *model)
    model.train()
    before = model_fingerprint(model)
    with torch.no_grad():
        out = model[1:](Xte)
    acc = float((out.argmax(1) == yte).double().mean())
    loss = float(nn.CrossEntropyLoss()(out, yte))
    uneven = [(Xte[:7], yte[:7]), (Xte[7:400], yte[7:400]), (Xte[400:], yte[400:])]
    assert pt.evaluate_accuracy(model, (Xte, yte)) == acc
    assert pt.evaluate_accuracy(model, uneven) == pytest.approx(acc, abs=1e-15)
    assert pt.evaluate_accuracy(model, (Xte, nn.functional.one_hot(yte, 10))) == acc
    assert pt.evaluate_loss(model, nn.CrossEntropyLoss(), uneven) == pytest.approx(loss, rel=1e-12)
    # float32 inputs are moved to the model's dtype
    assert pt.evaluate_accuracy(model, (Xte.float(), yte)) == pytest.approx(acc, abs=0.01)
    assert fingerprints_equal(before, model_fingerprint(model))
    with pytest.raises(ValueError, match="targets"):
        pt.evaluate_accuracy(model, (Xte, yte[:, None].expand(-1, 3)))
    with pytest.raises(TypeError, match="data"):
        pt.evaluate_accuracy(model, Xte)
    with pytest.raises(TypeError, match="loss_fn"):
        pt.evaluate_loss(model, "ce", (Xte, yte))
    assert fingerprints_equal(before, model_fingerprint(model))


def test_finetune_masked_keeps_support_and_lowers_loss():
    Xtr, ytr, _, _ = digits_tensors(torch.float64)
    model = trained_mlp(l1=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    masks = pt.magnitude_masks(model, 0.8)
    pt.apply_masks(model, masks)
    loss_before = pt.evaluate_loss(model, loss_fn, (Xtr, ytr))
    pt.finetune_masked(model, masks, loss_fn, (Xtr, ytr), steps=15, lr=0.05)
    for name, p in pt.prunable_parameters(model).items():
        assert torch.all(p[~masks[name]] == 0)
    assert pt.evaluate_loss(model, loss_fn, (Xtr, ytr)) < loss_before
    with pytest.raises(ValueError, match="steps"):
        pt.finetune_masked(model, masks, loss_fn, (Xtr, ytr), steps=-1)
    with pytest.raises(ValueError, match="shape"):
        pt.finetune_masked(model, {"0.weight": torch.ones(2, dtype=torch.bool)}, loss_fn,
                           (Xtr, ytr), steps=1)


def test_a_non_scalar_loss_is_one_error_everywhere():
    from phasetrans._checks import NonScalarLossError, check_scalar_loss

    model = make_mlp()
    data = digits_batches()
    masks = pt.magnitude_masks(model, 0.5)
    vector = lambda out, y: out.sum(1)  # noqa: E731
    calls = [
        (lambda: pt.train_l1(model, vector, data, l1=0.0, epochs=1, lr=0.1, progress=False),
         "at epoch 0, batch 0"),
        (lambda: pt.finetune_masked(model, masks, vector, data, steps=1), "at step 0, batch 0"),
        (lambda: pt.evaluate_loss(model, vector, data), "at batch 0"),
    ]
    for call, where in calls:
        with pytest.raises(NonScalarLossError) as info:
            call()
        # both a TypeError and a ValueError, as the callers raised one or the other before
        assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
        assert str(info.value) == (
            f"loss_fn must return a scalar tensor (the batch mean), got Tensor(256,) {where}"
        )
    loss = torch.tensor(1.5)
    assert check_scalar_loss(loss) is loss and check_scalar_loss(torch.ones(1, 1)).numel() == 1
    with pytest.raises(TypeError, match=r"^f must return a scalar tensor .*, got float$"):
        check_scalar_loss(1.5, "f")


def test_history_is_a_frozen_value():
    import dataclasses

    hist = pt.train_l1(make_mlp(), nn.CrossEntropyLoss(), digits_batches(), l1=1e-4, epochs=2,
                       lr=0.05, progress=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hist.loss = []
    assert hist.epoch == [0, 1] and list(hist.to_dict()) == ["epoch", "loss", "penalty", "lr", "eval"]
    assert pt.TrainHistory() == pt.TrainHistory([], [], [], [], [])


def test_resume_continues_a_dataloaders_own_shuffle(tmp_path):
    """A DataLoader with its own seeded generator (phasetrans.data's loaders): the checkpoint
    keeps that generator's state, so an interrupted run ends bit-for-bit where an uninterrupted
    one ends (issue 17: the CLI's --checkpoint-dir resumes training through this)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(90, 5, generator=g)
    y = torch.randint(0, 3, (90,), generator=g)

    def setup():
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=20,
                                             shuffle=True, generator=torch.Generator().manual_seed(7))
        return model, loader

    calls = []

    def eval_fn(m, stop_at=None):
        calls.append(1)
        if stop_at is not None and len(calls) == stop_at:
            raise KeyboardInterrupt
        return 0.0

    kw = dict(l1=1e-3, epochs=4, lr=0.05, progress=False)
    model, loader = setup()
    plain = pt.train_l1(model, nn.CrossEntropyLoss(), loader, eval_fn=eval_fn, **kw)
    path = tmp_path / "t.pt"
    calls.clear()
    resumed_model, loader = setup()
    with pytest.raises(KeyboardInterrupt):  # stopped in epoch 2 (epochs 0 and 1 saved)
        pt.train_l1(resumed_model, nn.CrossEntropyLoss(), loader, checkpoint=path,
                    eval_fn=lambda m: eval_fn(m, stop_at=3), **kw)
    resumed_model, loader = setup()
    resumed = pt.train_l1(resumed_model, nn.CrossEntropyLoss(), loader, checkpoint=path,
                          eval_fn=eval_fn, **kw)
    assert resumed.loss == plain.loss
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
# -- issue 16: a loss without a gradient is refused, not "trained" on ----------------------------
def test_detached_loss_is_refused_before_any_step():
    # before: train_l1 stepped on the l1 penalty alone (zero data gradient) and reported success
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    X, y = torch.randn(20, 4), torch.randint(0, 3, (20,))

    def detached(out, t):
        return nn.functional.cross_entropy(out, t).detach()

    before = model_fingerprint(model)
    with pytest.raises(ValueError, match="loss_fn returned a loss with no gradient at epoch 0, batch 0"):
        pt.train_l1(model, detached, (X, y), l1=1e-3, epochs=2, lr=0.1, progress=False)
    assert fingerprints_equal(before, model_fingerprint(model))
    masks = pt.magnitude_masks(model, 0.5)
    with pytest.raises(ValueError, match="finetune_masked: loss_fn returned a loss with no gradient"):
        pt.finetune_masked(model, masks, detached, (X, y), steps=2)
