"""Reliability harness: every public entry point with bad input, non-finite values, and the promise
that the user's model comes back bit-for-bit (also when a call fails midway).

Table-driven: ``BAD_INPUTS`` lists ``(entry point, bad input, expected exception, pattern)``; the
pattern must occur in the message (it names the argument). ``test_every_entry_point_is_covered``
makes sure each public callable (top level, ``pt.geometry``, ``pt.data``, ``pt.models``) has at
least one row or a stated reason to be exempt. docs/RELIABILITY.md renders this table.
"""

from __future__ import annotations

import copy
import inspect
import re

import numpy as np
import pytest
import torch
from torch import nn

import phasetrans as pt
from phasetrans._checks import fingerprints_equal, model_fingerprint

NAN, INF = float("nan"), float("inf")


# -- tiny problem ----------------------------------------------------------------------------
def _xy(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return X, y


X, Y = _xy()
DATA = [(X[i : i + 12], Y[i : i + 12]) for i in range(0, len(Y), 12)]  # 4 batches, last uneven
LOSS = nn.CrossEntropyLoss()


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def no_prunable():
    return nn.Sequential(nn.Tanh())


def nan_model():
    m = mlp()
    with torch.no_grad():
        m[0].weight[0, 0] = NAN
    return m


def H():
    return pt.HessianOperator(mlp(), LOSS, DATA)


def sym(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    return A + A.T


def spec():
    return pt.slq(sym(), num_steps=5, num_probes=2)


def masks():
    return pt.magnitude_masks(mlp(), 0.5)


def acc(m):
    return pt.evaluate_accuracy(m, DATA)


# -- the table -------------------------------------------------------------------------------
def row(entry, bad, fn, exc, pattern):
    return pytest.param(entry, fn, exc, pattern, id=f"{entry}: {bad}")


BAD_INPUTS = [
    # operators
    row("HessianOperator", "model='x'", lambda: pt.HessianOperator("x", LOSS, DATA), TypeError, "model"),
    row("HessianOperator", "loss_fn=3", lambda: pt.HessianOperator(mlp(), 3, DATA), TypeError, "loss_fn"),
    row("HessianOperator", "data=a tensor", lambda: pt.HessianOperator(mlp(), LOSS, X), TypeError, "data"),
    row("HessianOperator", "data=generator", lambda: pt.HessianOperator(mlp(), LOSS, (b for b in DATA)), TypeError, "data"),
    row("HessianOperator", "data=[] (product)", lambda: pt.HessianOperator(mlp(), LOSS, []) @ torch.zeros(72, dtype=torch.float64), ValueError, "data"),
    row("HessianOperator", "params='weights'", lambda: pt.HessianOperator(mlp(), LOSS, DATA, params="weights"), ValueError, "params"),
    row("HessianOperator", "params=['nope']", lambda: pt.HessianOperator(mlp(), LOSS, DATA, params=["nope"]), ValueError, "params"),
    row("HessianOperator", "no prunable weights", lambda: pt.HessianOperator(no_prunable(), LOSS, DATA), ValueError, "prunable"),
    row("HessianOperator", "batchnorm='x'", lambda: pt.HessianOperator(mlp(), LOSS, DATA, batchnorm="x"), ValueError, "batchnorm"),
    row("HessianOperator", "cache_bytes=-1", lambda: pt.HessianOperator(mlp(), LOSS, DATA, cache_bytes=-1), ValueError, "cache_bytes"),
    row("HessianOperator", "cache_bytes='1GB'", lambda: pt.HessianOperator(mlp(), LOSS, DATA, cache_bytes="1GB"), TypeError, "cache_bytes"),
    row("HessianOperator", "v of length dim+1", lambda: H() @ torch.zeros(73, dtype=torch.float64), ValueError, r"v must have shape \(72,\)"),
    row("HessianOperator", "v with NaN", lambda: H() @ torch.full((72,), NAN, dtype=torch.float64), ValueError, "v must be finite"),
    row("HessianOperator", "v='x'", lambda: H() @ "x", TypeError, "v must be"),
    row("HessianOperator", "v integer", lambda: H() @ torch.zeros(72, dtype=torch.int64), TypeError, "v must be a floating"),
    row("HessianOperator", "loss_fn returns NaN", lambda: pt.HessianOperator(mlp(), lambda o, t: o.sum() * NAN, DATA) @ torch.ones(72, dtype=torch.float64), ValueError, "non-finite loss.*batch 0"),
    row("HessianOperator", "loss_fn returns a vector", lambda: pt.HessianOperator(mlp(), lambda o, t: o.sum(1), DATA) @ torch.ones(72, dtype=torch.float64), TypeError, "loss_fn must return a scalar"),
    row("as_operator", "H=3", lambda: pt.as_operator(3), TypeError, "H must be"),
    row("DenseOperator", "non-square", lambda: pt.DenseOperator(torch.zeros(3, 4)), ValueError, "square"),
    row("DenseOperator", "NaN entry", lambda: pt.DenseOperator(torch.full((3, 3), NAN)), ValueError, "finite"),
    # spectral
    row("slq", "H='x'", lambda: pt.slq("x"), TypeError, "H must be"),
    row("slq", "num_steps=0", lambda: pt.slq(sym(), num_steps=0), ValueError, "num_steps"),
    row("slq", "num_steps=2.5", lambda: pt.slq(sym(), num_steps=2.5), TypeError, "num_steps"),
    row("slq", "num_probes=0", lambda: pt.slq(sym(), num_probes=0), ValueError, "num_probes"),
    row("slq", "basis_bytes=0", lambda: pt.slq(sym(), basis_bytes=0), ValueError, "basis_bytes"),
    row("slq", "basis_bytes='4G'", lambda: pt.slq(sym(), basis_bytes="4G"), TypeError, "basis_bytes"),
    row("slq", "basis_bytes below one probe", lambda: pt.slq(sym(), num_steps=5, basis_bytes=8), ValueError, "basis_bytes"),
    row("slq", "seed=-1", lambda: pt.slq(sym(), seed=-1), ValueError, "seed"),
    row("slq", "reorth='sometimes'", lambda: pt.slq(sym(), reorth="sometimes"), ValueError, "reorth"),
    row("slq", "checkpoint=3", lambda: pt.slq(sym(), checkpoint=3), TypeError, "checkpoint"),
    row("slq", "checkpoint_every=0", lambda: pt.slq(sym(), checkpoint_every=0), ValueError, "checkpoint_every"),
    row("slq", "checkpoint=FIFO", lambda: pt.slq(sym(), checkpoint=fifo()), ValueError, "FIFO"),
    row("slq", "H with NaN", lambda: pt.slq(torch.full((4, 4), NAN)), ValueError, "H must be finite"),
    row("slq", "loss NaN on 2nd batch", lambda: pt.slq(pt.HessianOperator(mlp(), nan_on_batch(1), DATA), num_steps=3), ValueError, r"non-finite loss.*batch 1.*Lanczos step 0"),
    row("trace", "method='x'", lambda: pt.trace(sym(), method="x"), ValueError, "method"),
    row("trace", "num_matvecs=1", lambda: pt.trace(sym(), num_matvecs=1), ValueError, "num_matvecs"),
    row("trace", "block_size=0", lambda: pt.trace(sym(), block_size=0), ValueError, "block_size"),
    row("trace", "loss NaN on 2nd batch", lambda: pt.trace(pt.HessianOperator(mlp(), nan_on_batch(1), DATA), num_matvecs=4), ValueError, r"batch 1.*hutchinson"),
    row("top_eigenvalues", "k=0", lambda: pt.top_eigenvalues(sym(), k=0), ValueError, "k must be >= 1"),
    row("top_eigenvalues", "k=dim+1", lambda: pt.top_eigenvalues(sym(), k=11), ValueError, "k must be <= 10"),
    row("top_eigenvalues", "tol=0", lambda: pt.top_eigenvalues(sym(), tol=0.0), ValueError, "tol"),
    row("top_eigenvalues", "which='LM'", lambda: pt.top_eigenvalues(sym(), which="LM"), ValueError, "which"),
    row("SpectralDensity", "NaN node", lambda: pt.SpectralDensity(torch.tensor([[NAN]]), torch.tensor([[1.0]]), 1), ValueError, "finite"),
    row("SpectralDensity", "dim=0", lambda: pt.SpectralDensity(torch.tensor([[1.0]]), torch.tensor([[1.0]]), 0), ValueError, "dim"),
    row("SpectralDensity", "negative weight", lambda: pt.SpectralDensity(torch.tensor([[1.0, 2.0]]), torch.tensor([[-1.0, 2.0]]), 2), ValueError, "weights"),
    row("SpectralDensity", "lengths > num_steps", lambda: pt.SpectralDensity(torch.ones(1, 2), torch.ones(1, 2) / 2, 2, lengths=torch.tensor([5])), ValueError, "lengths"),
    row("SpectralDensity.from_dict", "nodes='x'", lambda: pt.SpectralDensity.from_dict({"nodes": "x", "weights": [[1.0]], "dim": 1}), TypeError, "nodes"),
    row("SpectralDensity.from_dict", "missing dim", lambda: pt.SpectralDensity.from_dict({"nodes": [[1.0]], "weights": [[1.0]]}), ValueError, "dim"),
    row("SpectralDensity.density", "bandwidth=0", lambda: spec().density([0.0], bandwidth=0.0), ValueError, "bandwidth"),
    row("SpectralDensity.expect", "f=3", lambda: spec().expect(3), TypeError, "f must be callable"),
    # parameters
    row("prunable_parameters", "model='x'", lambda: pt.prunable_parameters("x"), TypeError, "model"),
    row("select_parameters", "params=['nope']", lambda: pt.select_parameters(mlp(), ["nope"]), ValueError, "params"),
    row("select_parameters", "params=[]", lambda: pt.select_parameters(mlp(), []), ValueError, "params"),
    row("select_parameters", "params=3", lambda: pt.select_parameters(mlp(), 3), TypeError, "params"),
    # pruning
    row("magnitude_masks", "sparsity=1.5", lambda: pt.magnitude_masks(mlp(), 1.5), ValueError, "sparsity"),
    row("magnitude_masks", "sparsity=-0.1", lambda: pt.magnitude_masks(mlp(), -0.1), ValueError, "sparsity"),
    row("magnitude_masks", "sparsity=NaN", lambda: pt.magnitude_masks(mlp(), NAN), ValueError, "sparsity must be finite"),
    row("magnitude_masks", "sparsity=inf", lambda: pt.magnitude_masks(mlp(), INF), ValueError, "sparsity must be finite"),
    row("magnitude_masks", "sparsity='0.5'", lambda: pt.magnitude_masks(mlp(), "0.5"), TypeError, "sparsity"),
    row("magnitude_masks", "min_per_layer=2", lambda: pt.magnitude_masks(mlp(), 0.5, min_per_layer=2), ValueError, "min_per_layer"),
    row("magnitude_masks", "infeasible floor", lambda: pt.magnitude_masks(mlp(), 0.9, min_per_layer=0.5), ValueError, "min_per_layer"),
    row("magnitude_masks", "model='x'", lambda: pt.magnitude_masks("x", 0.5), TypeError, "model"),
    row("magnitude_masks", "no prunable weights", lambda: pt.magnitude_masks(no_prunable(), 0.5), ValueError, "prunable"),
    row("magnitude_masks", "NaN weight", lambda: pt.magnitude_masks(nan_model(), 0.5), ValueError, "NaN"),
    row("pruned", "sparsity=2", lambda: pt.pruned(mlp(), 2.0).__enter__(), ValueError, "sparsity"),
    row("pruned", "NaN weight", lambda: pt.pruned(nan_model(), 0.5).__enter__(), ValueError, "NaN"),
    row("pruned_count", "sparsity=1.5", lambda: pt.pruned_count(1.5, 10), ValueError, "sparsity"),
    row("pruned_count", "total=-1", lambda: pt.pruned_count(0.5, -1), ValueError, "total"),
    row("apply_masks", "masks=3", lambda: pt.apply_masks(mlp(), 3), TypeError, "masks"),
    row("apply_masks", "mask of wrong shape", lambda: pt.apply_masks(mlp(), {"0.weight": torch.ones(2, 2, dtype=torch.bool)}), ValueError, "masks"),
    row("apply_masks", "float mask", lambda: pt.apply_masks(mlp(), {"0.weight": torch.ones(8, 6)}), TypeError, "masks"),
    row("apply_masks", "unknown name", lambda: pt.apply_masks(mlp(), {"nope": torch.ones(8, 6, dtype=torch.bool)}), ValueError, "masks"),
    row("to_torch_prune", "masks=3", lambda: pt.to_torch_prune(mlp(), 3), TypeError, "masks"),
    row("mask_sparsity", "masks={}", lambda: pt.mask_sparsity({}), TypeError, "masks"),
    # pruning criteria (issue 19)
    row("criterion_masks", "criterion='snip'", lambda: pt.criterion_masks(mlp(), 0.5, "snip"), ValueError, "criterion must be one of"),
    row("criterion_masks", "criterion=3", lambda: pt.criterion_masks(mlp(), 0.5, 3), TypeError, "criterion"),
    row("criterion_masks", "criterion='obs' without data", lambda: pt.criterion_masks(mlp(), 0.5, "obs", loss_fn=LOSS), ValueError, "needs data="),
    row("criterion_masks", "criterion='fisher_taylor' without loss_fn", lambda: pt.criterion_masks(mlp(), 0.5, "fisher_taylor", DATA), ValueError, "needs loss_fn="),
    row("criterion_masks", "criterion_options=3", lambda: pt.criterion_masks(mlp(), 0.5, "obs", DATA, LOSS, criterion_options=3), TypeError, "criterion_options"),
    row("criterion_masks", "unknown option", lambda: pt.criterion_masks(mlp(), 0.5, "obs", DATA, LOSS, criterion_options={"levels": 2}), TypeError, "levels"),
    row("criterion_masks", "sparsity=1.5", lambda: pt.criterion_masks(mlp(), 1.5, "magnitude"), ValueError, "sparsity"),
    row("criterion_masks", "callable returns a list", lambda: pt.criterion_masks(mlp(), 0.5, lambda m: [1.0]), TypeError, "criterion"),
    row("pruned", "criterion='obs' without loss_fn", lambda: pt.pruned(mlp(), 0.5, criterion="obs", data=DATA).__enter__(), ValueError, "needs loss_fn="),
    row("pruned", "criterion='layer_adaptive' without data", lambda: pt.pruned(mlp(), 0.5, criterion="layer_adaptive").__enter__(), ValueError, "needs data="),
    row("prepare_criterion", "criterion='snip'", lambda: pt.prepare_criterion("snip", mlp()), ValueError, "criterion"),
    row("prepare_criterion", "damp=0", lambda: pt.prepare_criterion("obs", mlp(), DATA, LOSS, damp=0.0), ValueError, "damp"),
    row("prepare_criterion", "model='x'", lambda: pt.prepare_criterion("magnitude", "x"), TypeError, "model"),
    row("pruning_radius", "sparsities=[0.5, 1.5]", lambda: pt.pruning_radius(mlp(), [0.5, 1.5]), ValueError, r"sparsities\[1\]"),
    row("pruning_radius", "sparsities='x'", lambda: pt.pruning_radius(mlp(), "x"), TypeError, "sparsities"),
    row("pruning_radius", "sparsities=[]", lambda: pt.pruning_radius(mlp(), []), ValueError, "sparsities"),
    row("pruning_radius", "criterion='obs' without data", lambda: pt.pruning_radius(mlp(), 0.5, "obs"), ValueError, "needs data="),
    # training
    row("train_l1", "model='x'", lambda: pt.train_l1("x", LOSS, DATA, l1=0.0, epochs=1, lr=0.1), TypeError, "model"),
    row("train_l1", "loss_fn=None", lambda: pt.train_l1(mlp(), None, DATA, l1=0.0, epochs=1, lr=0.1), TypeError, "loss_fn"),
    row("train_l1", "data=[]", lambda: pt.train_l1(mlp(), LOSS, [], l1=0.0, epochs=1, lr=0.1, progress=False), ValueError, "data"),
    row("train_l1", "l1=-1", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=-1.0, epochs=1, lr=0.1), ValueError, "l1"),
    row("train_l1", "l1=NaN", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=NAN, epochs=1, lr=0.1), ValueError, "l1"),
    row("train_l1", "epochs=0", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=0.0, epochs=0, lr=0.1), ValueError, "epochs"),
    row("train_l1", "lr=0", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=0.0, epochs=1, lr=0.0), ValueError, "lr"),
    row("train_l1", "lr=inf", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=0.0, epochs=1, lr=INF), ValueError, "lr"),
    row("train_l1", "schedule='linear'", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=0.0, epochs=1, lr=0.1, schedule="linear"), ValueError, "schedule"),
    row("train_l1", "warmup_epochs > epochs", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=0.0, epochs=1, lr=0.1, warmup_epochs=2), ValueError, "warmup_epochs"),
    row("train_l1", "checkpoint=3", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=0.0, epochs=1, lr=0.1, checkpoint=3), TypeError, "checkpoint"),
    row("train_l1", "checkpoint=FIFO", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=0.0, epochs=1, lr=0.1, checkpoint=fifo()), ValueError, "FIFO"),
    row("train_l1", "no prunable weights", lambda: pt.train_l1(no_prunable(), LOSS, DATA, l1=0.0, epochs=1, lr=0.1), ValueError, "prunable"),
    row("train_l1", "loss NaN on 2nd batch", lambda: pt.train_l1(mlp(), nan_on_batch(1), DATA, l1=0.0, epochs=2, lr=0.1, progress=False), FloatingPointError, r"epoch 0, batch 1"),
    row("train_l1", "loss_fn returns a vector", lambda: pt.train_l1(mlp(), lambda o, t: o.sum(1), DATA, l1=0.0, epochs=1, lr=0.1, progress=False), ValueError, "loss_fn must return a scalar"),
    row("finetune_masked", "steps=-1", lambda: pt.finetune_masked(mlp(), masks(), LOSS, DATA, steps=-1), ValueError, "steps"),
    row("finetune_masked", "masks=[]", lambda: pt.finetune_masked(mlp(), [], LOSS, DATA, steps=1), TypeError, "masks"),
    row("finetune_masked", "lr=NaN", lambda: pt.finetune_masked(mlp(), masks(), LOSS, DATA, steps=1, lr=NAN), ValueError, "lr"),
    row("finetune_masked", "loss NaN on 2nd batch", lambda: pt.finetune_masked(mlp(), masks(), nan_on_batch(1), DATA, steps=3), FloatingPointError, r"step 1.*batch 1"),
    row("evaluate_accuracy", "model='x'", lambda: pt.evaluate_accuracy("x", DATA), TypeError, "model"),
    row("evaluate_accuracy", "data=[]", lambda: pt.evaluate_accuracy(mlp(), []), ValueError, "data"),
    row("evaluate_accuracy", "data=3", lambda: pt.evaluate_accuracy(mlp(), 3), TypeError, "data"),
    row("evaluate_accuracy", "targets of wrong shape", lambda: pt.evaluate_accuracy(mlp(), (X, Y[:, None].repeat(1, 2))), ValueError, "data"),
    row("evaluate_accuracy", "NaN weight (NaN outputs)", lambda: pt.evaluate_accuracy(nan_model(), DATA), FloatingPointError, "batch 0"),
    row("evaluate_loss", "loss_fn=None", lambda: pt.evaluate_loss(mlp(), None, DATA), TypeError, "loss_fn"),
    row("evaluate_loss", "data=[]", lambda: pt.evaluate_loss(mlp(), LOSS, []), ValueError, "data"),
    row("evaluate_loss", "loss NaN on 2nd batch", lambda: pt.evaluate_loss(mlp(), nan_on_batch(1), DATA), FloatingPointError, "batch 1"),
    row("lr_at_epoch", "epoch=-1", lambda: pt.lr_at_epoch(-1, 0.1, 10), ValueError, "epoch"),
    row("lr_at_epoch", "gamma=NaN", lambda: pt.lr_at_epoch(0, 0.1, 10, gamma=NAN), ValueError, "gamma"),
    # thresholds
    row("evaluate_correct", "model='x'", lambda: pt.evaluate_correct("x", DATA), TypeError, "model"),
    row("evaluate_correct", "data=3", lambda: pt.evaluate_correct(mlp(), 3), TypeError, "data"),
    row("evaluate_correct", "NaN weight (NaN outputs)", lambda: pt.evaluate_correct(nan_model(), DATA), FloatingPointError, "batch 0"),
    row("threshold_spread", "model='x'", lambda: pt.threshold_spread("x", DATA), TypeError, "model"),
    row("threshold_spread", "data=3", lambda: pt.threshold_spread(mlp(), 3, step=0.5), TypeError, "data"),
    row("threshold_spread", "tolerance=NaN", lambda: pt.threshold_spread(mlp(), DATA, tolerance=NAN), ValueError, "tolerance"),
    row("threshold_spread", "step=0", lambda: pt.threshold_spread(mlp(), DATA, step=0.0), ValueError, "step"),
    row("threshold_spread", "resolution=0", lambda: pt.threshold_spread(mlp(), DATA, resolution=0.0), ValueError, "resolution"),
    row("threshold_spread", "resamples=1", lambda: pt.threshold_spread(mlp(), DATA, resamples=1), ValueError, "resamples"),
    row("threshold_spread", "level=1.5", lambda: pt.threshold_spread(mlp(), DATA, level=1.5), ValueError, "level"),
    row("threshold_spread", "criterion='nope'", lambda: pt.threshold_spread(mlp(), DATA, criterion="nope"), ValueError, "criterion"),
    row("find_threshold", "evaluate=3", lambda: pt.find_threshold(mlp(), 3), TypeError, "evaluate"),
    row("find_threshold", "tolerance=-1", lambda: pt.find_threshold(mlp(), acc, tolerance=-1.0), ValueError, "tolerance"),
    row("find_threshold", "resolution=0", lambda: pt.find_threshold(mlp(), acc, resolution=0.0), ValueError, "resolution"),
    row("find_threshold", "resolution=NaN", lambda: pt.find_threshold(mlp(), acc, resolution=NAN), ValueError, "resolution"),
    row("find_threshold", "baseline=NaN", lambda: pt.find_threshold(mlp(), acc, baseline=NAN), ValueError, "baseline"),
    row("find_threshold", "window=-1", lambda: pt.find_threshold(mlp(), acc, window=-1), ValueError, "window"),
    row("find_threshold", "max_evaluations=3", lambda: pt.find_threshold(mlp(), acc, max_evaluations=3), ValueError, "max_evaluations"),
    row("find_threshold", "evaluate returns 'x'", lambda: pt.find_threshold(mlp(), lambda m: "x"), TypeError, "evaluate must return"),
    row("find_threshold", "evaluate(dense) is NaN", lambda: pt.find_threshold(mlp(), lambda m: NAN), ValueError, "evaluate"),
    row("find_threshold", "refit=-1", lambda: pt.find_threshold(mlp(), acc, refit=-1), ValueError, "refit"),
    row("find_threshold", "refit steps without data", lambda: pt.find_threshold(mlp(), acc, refit=2), ValueError, "refit"),
    row("find_threshold", "no prunable weights", lambda: pt.find_threshold(no_prunable(), lambda m: 1.0), ValueError, "prunable"),
    row("find_threshold", "criterion='obs' without data", lambda: pt.find_threshold(mlp(), acc, criterion="obs", loss_fn=LOSS), ValueError, "needs data="),
    row("find_threshold", "criterion=3", lambda: pt.find_threshold(mlp(), acc, criterion=3), TypeError, "criterion"),
    row("find_threshold", "criterion_options=[1]", lambda: pt.find_threshold(mlp(), acc, criterion="obs", data=DATA, loss_fn=LOSS, criterion_options=[1]), TypeError, "criterion_options"),
    row("find_loss_threshold", "criterion='snip'", lambda: pt.find_loss_threshold(mlp(), LOSS, DATA, eps=0.1, criterion="snip"), ValueError, "criterion"),
    row("find_loss_threshold", "eps=-1", lambda: pt.find_loss_threshold(mlp(), LOSS, DATA, eps=-1.0), ValueError, "eps"),
    row("find_loss_threshold", "eps=NaN", lambda: pt.find_loss_threshold(mlp(), LOSS, DATA, eps=NAN), ValueError, "eps"),
    row("find_loss_threshold", "loss_fn=3", lambda: pt.find_loss_threshold(mlp(), 3, DATA, eps=0.1), TypeError, "loss_fn"),
    row("sweep", "sparsities=[0.1, 1.2]", lambda: pt.sweep(mlp(), acc, [0.1, 1.2]), ValueError, r"sparsities\[1\]"),
    row("sweep", "sparsities=[]", lambda: pt.sweep(mlp(), acc, []), ValueError, "sparsities"),
    row("sweep", "sparsities=[NaN]", lambda: pt.sweep(mlp(), acc, [NAN]), ValueError, "sparsities"),
    row("sweep", "sparsities=3", lambda: pt.sweep(mlp(), acc, 3), TypeError, "sparsities"),
    row("sweep", "path=3", lambda: pt.sweep(mlp(), acc, [0.5], path=3), TypeError, "path"),
    row("sweep", "corrupt record in path", lambda: pt.sweep(mlp(), acc, [0.5], path=corrupt_sweep()), ValueError, "line 2"),
    row("sweep", "foreign file at path", lambda: pt.sweep(mlp(), acc, [0.5], path=foreign_file()), ValueError, "not a phasetrans sweep"),
    row("sweep", "metadata=object()", lambda: pt.sweep(mlp(), acc, [0.5], metadata={"a": object()}), TypeError, "metadata"),
    row("sweep", "no prunable weights", lambda: pt.sweep(no_prunable(), lambda m: 1.0, [0.5]), ValueError, "prunable"),
    row("sweep", "sparsities=bool tensor", lambda: pt.sweep(mlp(), acc, torch.tensor([True, False])), TypeError, r"sparsities\[0\].*boolean"),
    row("sweep", "path=notes without trailing newline", lambda: pt.sweep(mlp(), acc, [0.5], path=foreign_file("notes\nno newline")), ValueError, "left untouched"),
    row("sweep", "path=symbolic link", lambda: pt.sweep(mlp(), acc, [0.5], path=symlink_to(foreign_file(""))), ValueError, "symbolic link"),
    row("sweep", "path=FIFO", lambda: pt.sweep(mlp(), acc, [0.5], path=fifo()), ValueError, "FIFO"),
    row("sweep", "path=log of another sweep", lambda: pt.sweep(mlp(), acc, [0.5], path=sweep_log(), metadata={"seed": 1}), ValueError, r"differs in: metadata"),
    row("sweep", "criterion='fisher_taylor' without data", lambda: pt.sweep(mlp(), acc, [0.5], criterion="fisher_taylor", loss_fn=LOSS), ValueError, "needs data="),
    row("sweep", "criterion='snip'", lambda: pt.sweep(mlp(), acc, [0.5], criterion="snip"), ValueError, "criterion"),
    row("pruning_curve", "criterion='obs' without data", lambda: pt.pruning_curve(mlp(), [0.5], DATA, loss_fn=LOSS, criterion="obs"), ValueError, "needs data="),
    row("layer_kept_fractions", "criterion='snip'", lambda: pt.layer_kept_fractions(mlp(), 0.5, criterion="snip"), ValueError, "criterion"),
    row("validate", "criterion='snip'", lambda: pt.validate(mlp(), LOSS, DATA, DATA, criterion="snip"), ValueError, "criterion"),
    row("validate", "criterion=3", lambda: pt.validate(mlp(), LOSS, DATA, DATA, criterion=3), TypeError, "criterion"),
    row("validate", "criterion_options for another builder", lambda: pt.validate(mlp(), LOSS, DATA, DATA, criterion="obs", criterion_options={"levels": 2}), ValueError, "criterion_options"),
    row("validate", "criterion_options={'data': ...}", lambda: pt.validate(mlp(), LOSS, DATA, DATA, criterion="obs", criterion_options={"data": DATA}), ValueError, "criterion_options"),
    # geometry
    row("geometry.projected_width_sq", "eps=0", lambda: pt.geometry.projected_width_sq([1.0], eps=0.0), ValueError, "eps"),
    row("geometry.projected_width_sq", "eps=NaN", lambda: pt.geometry.projected_width_sq([1.0], eps=NAN), ValueError, "eps"),
    row("geometry.projected_width_sq", "R=-1", lambda: pt.geometry.projected_width_sq([1.0], R=-1.0), ValueError, "R"),
    row("geometry.projected_width_sq", "R=NaN", lambda: pt.geometry.projected_width_sq([1.0], R=NAN), ValueError, "R"),
    row("geometry.projected_width_sq", "eigenvalues=[]", lambda: pt.geometry.projected_width_sq([]), ValueError, "eigenvalues"),
    row("geometry.projected_width_sq", "eigenvalues with NaN", lambda: pt.geometry.projected_width_sq([1.0, NAN]), ValueError, "eigenvalues"),
    row("geometry.projected_width_sq", "weights of other length", lambda: pt.geometry.projected_width_sq([1.0, 2.0], [1.0]), ValueError, "weights"),
    row("geometry.projected_width_sq", "weights negative", lambda: pt.geometry.projected_width_sq([1.0], [-1.0]), ValueError, "weights"),
    row("geometry.kinematic_window", "D=0", lambda: pt.geometry.kinematic_window(0), ValueError, "D"),
    row("geometry.kinematic_window", "eta=0", lambda: pt.geometry.kinematic_window(10, 0.0), ValueError, "eta"),
    row("geometry.kinematic_window", "eta=1.5", lambda: pt.geometry.kinematic_window(10, 1.5), ValueError, "eta"),
    row("geometry.ellipsoid_width", "radii=[]", lambda: pt.geometry.ellipsoid_width([]), ValueError, "radii"),
    row("geometry.ellipsoid_width", "radii negative", lambda: pt.geometry.ellipsoid_width([-1.0]), ValueError, "radii"),
    row("geometry.ellipsoid_width", "radii NaN", lambda: pt.geometry.ellipsoid_width([NAN]), ValueError, "radii"),
    row("geometry.ellipsoid_width", "radii='x'", lambda: pt.geometry.ellipsoid_width("x"), TypeError, "radii"),
    row("geometry.ellipsoid_width_bounds", "radii=[]", lambda: pt.geometry.ellipsoid_width_bounds([]), ValueError, "radii"),
    row("geometry.circular_cone_statdim", "D=1", lambda: pt.geometry.circular_cone_statdim(1, 0.3), ValueError, "D"),
    row("geometry.circular_cone_statdim", "alpha=-0.1", lambda: pt.geometry.circular_cone_statdim(5, -0.1), ValueError, "alpha"),
    row("geometry.circular_cone_statdim", "alpha=NaN", lambda: pt.geometry.circular_cone_statdim(5, NAN), ValueError, "alpha"),
    row("geometry.l1_descent_cone_statdim", "d=0", lambda: pt.geometry.l1_descent_cone_statdim(0, 0), ValueError, "d"),
    row("geometry.l1_descent_cone_statdim", "s>d", lambda: pt.geometry.l1_descent_cone_statdim(5, 6), ValueError, "s"),
    row("geometry.project_onto_ellipsoid", "y of wrong length", lambda: pt.geometry.project_onto_ellipsoid([1.0, 2.0], [1.0]), ValueError, "y"),
    row("geometry.circular_cone_projector", "alpha=2", lambda: pt.geometry.circular_cone_projector(2.0), ValueError, "alpha"),
    row("geometry.circular_cone_projector", "axis=0", lambda: pt.geometry.circular_cone_projector(0.3, [0.0, 0.0]), ValueError, "axis"),
    row("geometry.l1_descent_cone_projector", "x=[]", lambda: pt.geometry.l1_descent_cone_projector([]), ValueError, "x"),
    row("geometry.ellipsoid_cone_projector", "point of wrong length", lambda: pt.geometry.ellipsoid_cone_projector([1.0, 1.0], [1.0]), ValueError, "point"),
    row("geometry.statistical_dimension_mc", "project=3", lambda: pt.geometry.statistical_dimension_mc(3, 2), TypeError, "project"),
    row("geometry.statistical_dimension_mc", "dim=0", lambda: pt.geometry.statistical_dimension_mc(lambda g: g, 0), ValueError, "dim"),
    row("geometry.statistical_dimension_mc", "num_samples=1", lambda: pt.geometry.statistical_dimension_mc(lambda g: g, 2, num_samples=1), ValueError, "num_samples"),
    row("geometry.gaussian_width_mc", "support=None", lambda: pt.geometry.gaussian_width_mc(None, 2), TypeError, "support"),
    row("geometry.gaussian_width_mc", "seed=-1", lambda: pt.geometry.gaussian_width_mc(lambda g: 0.0, 2, seed=-1), ValueError, "seed"),
    row("geometry.ellipsoid_cone_statdim_mc", "num_samples=0", lambda: pt.geometry.ellipsoid_cone_statdim_mc([1.0, 1.0], [2.0, 0.0], num_samples=0), ValueError, "num_samples"),
    row("geometry.l1_quadratic_support", "H non-square", lambda: pt.geometry.l1_quadratic_support(np.zeros((2, 3)), [0.0, 0.0], 0.1, 1.0), ValueError, "H"),
    row("geometry.l1_quadratic_support", "l1=-1", lambda: pt.geometry.l1_quadratic_support(np.eye(2), [0.0, 0.0], -1.0, 1.0), ValueError, "l1"),
    row("geometry.l1_quadratic_width", "num_samples=1", lambda: pt.geometry.l1_quadratic_width(np.eye(2), [0.0, 0.0], 0.1, 1.0, num_samples=1), ValueError, "num_samples"),
    row("geometry.l1_recovery_transition", "d=0", lambda: pt.geometry.l1_recovery_transition(0, 1, [1]), ValueError, "d"),
    row("geometry.l1_recovery_transition", "ks=[]", lambda: pt.geometry.l1_recovery_transition(5, 1, []), ValueError, "ks"),
    row("geometry.transition_midpoint", "successes of other length", lambda: pt.geometry.transition_midpoint([1, 2], [1], 5), ValueError, "successes"),
    # prediction
    row("reference_critical_sparsity", "eps=-1", lambda: pt.reference_critical_sparsity(torch.randn(10), spec_of(10), -1.0), ValueError, "eps"),
    row("reference_critical_sparsity", "weights=None", lambda: pt.reference_critical_sparsity(None, spec_of(10), 0.1), TypeError, "weights"),
    row("refit_steps", "steps=-1", lambda: pt.refit_steps(-1, LOSS, DATA), ValueError, "steps"),
    row("refit_steps", "loss_fn=None", lambda: pt.refit_steps(1, None, DATA), TypeError, "loss_fn"),
    row("refit_steps", "lr=-1", lambda: pt.refit_steps(1, LOSS, DATA, lr=-1.0), ValueError, "lr"),
    row("critical_sparsity", "eps=0", lambda: pt.critical_sparsity(torch.randn(10), spec_of(10), 0.0), ValueError, "eps"),
    row("critical_sparsity", "eps=NaN", lambda: pt.critical_sparsity(torch.randn(10), spec_of(10), NAN), ValueError, "eps"),
    row("critical_sparsity", "eps=-1", lambda: pt.critical_sparsity(torch.randn(10), spec_of(10), -1.0), ValueError, "eps"),
    row("critical_sparsity", "weights=[] tensor", lambda: pt.critical_sparsity(torch.zeros(0), spec_of(10), 0.1), ValueError, "weights"),
    row("critical_sparsity", "weights with NaN", lambda: pt.critical_sparsity(torch.tensor([1.0, NAN]), spec_of(2), 0.1), ValueError, "weights"),
    row("critical_sparsity", "weights='x'", lambda: pt.critical_sparsity("x", spec_of(2), 0.1), TypeError, "weights"),
    row("critical_sparsity", "spectrum length != D", lambda: pt.critical_sparsity(torch.randn(10), np.ones(9), 0.1), ValueError, "spectrum"),
    row("critical_sparsity", "spectrum with NaN", lambda: pt.critical_sparsity(torch.randn(2), np.array([1.0, NAN]), 0.1), ValueError, "spectrum"),
    row("critical_sparsity", "SpectralDensity of other dim", lambda: pt.critical_sparsity(torch.randn(11), spec(), 0.1), ValueError, "dim"),
    row("critical_sparsity", "eta=1", lambda: pt.critical_sparsity(torch.randn(10), spec_of(10), 0.1, eta=1.0), ValueError, "eta"),
    row("critical_sparsity", "negative='x'", lambda: pt.critical_sparsity(torch.randn(10), spec_of(10), 0.1, negative="x"), ValueError, "negative"),
    row("critical_sparsity", "zero_mass=1", lambda: pt.critical_sparsity(torch.randn(10), spec_of(10), 0.1, zero_mass=1.0), ValueError, "zero_mass"),
    row("critical_sparsity", "model without prunable weights", lambda: pt.critical_sparsity(no_prunable(), spec_of(10), 0.1), ValueError, "prunable"),
    row("critical_sparsity", "model with NaN weight", lambda: pt.critical_sparsity(nan_model(), spec_of(72), 0.1), ValueError, "weights must be finite"),
    row("predict_sparsity", "model='x'", lambda: pt.predict_sparsity("x", LOSS, DATA), TypeError, "model"),
    row("predict_sparsity", "loss_fn=3", lambda: pt.predict_sparsity(mlp(), 3, DATA), TypeError, "loss_fn"),
    row("predict_sparsity", "num_steps=0", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, num_steps=0), ValueError, "num_steps"),
    row("predict_sparsity", "num_probes=0", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, num_probes=0), ValueError, "num_probes"),
    row("predict_sparsity", "eps=0", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, eps=0.0), ValueError, "eps"),
    row("predict_sparsity", "data=[]", lambda: pt.predict_sparsity(mlp(), LOSS, [], eps=0.1, num_steps=2, num_probes=1), ValueError, "data"),
    row("predict_sparsity", "no prunable weights", lambda: pt.predict_sparsity(no_prunable(), LOSS, DATA), ValueError, "prunable"),
    row("predict_sparsity", "eps=None with one batch", lambda: pt.predict_sparsity(mlp(), LOSS, (X, Y), num_steps=2, num_probes=1), ValueError, "eps"),
    row("predict_sparsity", "loss NaN on 2nd batch", lambda: pt.predict_sparsity(mlp(), nan_on_batch(1), DATA, eps=0.1, num_steps=2, num_probes=1), ValueError, "batch 1"),
    row("width_fraction", "eps=0", lambda: pt.width_fraction(np.ones(3), 0.0, 1.0), ValueError, "eps"),
    row("estimate_zero_mass", "num_rows=0", lambda: pt.estimate_zero_mass(sym(), torch.randn(10), num_rows=0), ValueError, "num_rows"),
    row("estimate_zero_mass", "weights of wrong length", lambda: pt.estimate_zero_mass(sym(), torch.randn(9)), ValueError, "weights"),
    row("batch_loss_std", "one loss", lambda: pt.batch_loss_std([1.0]), ValueError, "eps"),
    # pipeline and plots
    row("validate", "model='x'", lambda: pt.validate("x", LOSS, DATA, DATA), TypeError, "model"),
    row("estimate_eps", "model='x'", lambda: pt.estimate_eps("x", LOSS, DATA), TypeError, "model"),
    row("estimate_eps", "loss_fn=3", lambda: pt.estimate_eps(mlp(), 3, DATA), TypeError, "loss_fn"),
    row("estimate_eps", "one batch", lambda: pt.estimate_eps(mlp(), LOSS, (X, Y)), ValueError, "eps"),
    row("estimate_eps", "loss NaN on 2nd batch", lambda: pt.estimate_eps(mlp(), nan_on_batch(1), DATA), ValueError, "batch 1"),
    row("predict_sparsity", "trace_matvecs=3 with hutch++", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, trace_method="hutch++", trace_matvecs=3), ValueError, "trace_matvecs"),
    row("predict_sparsity", "trace_matvecs=1 with hutchinson", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, trace_method="hutchinson", trace_matvecs=1), ValueError, "trace_matvecs"),
    row("predict_oneshot", "model='x'", lambda: pt.predict_oneshot("x", LOSS, DATA), TypeError, "model"),
    row("predict_oneshot", "loss_fn=3", lambda: pt.predict_oneshot(mlp(), 3, DATA), TypeError, "loss_fn"),
    row("predict_oneshot", "eps=0", lambda: pt.predict_oneshot(mlp(), LOSS, DATA, eps=0.0), ValueError, "eps"),
    row("predict_oneshot", "eps=nan", lambda: pt.predict_oneshot(mlp(), LOSS, DATA, eps=float("nan")), ValueError, "eps"),
    row("predict_oneshot", "eps=None with one batch", lambda: pt.predict_oneshot(mlp(), LOSS, (X, Y)), ValueError, "eps"),
    row("predict_oneshot", "tolerance=0", lambda: pt.predict_oneshot(mlp(), LOSS, DATA, eps=0.1, tolerance=0.0), ValueError, "tolerance"),
    row("predict_oneshot", "tolerance='2'", lambda: pt.predict_oneshot(mlp(), LOSS, DATA, eps=0.1, tolerance="2"), TypeError, "tolerance"),
    row("predict_oneshot", "method='cubic'", lambda: pt.predict_oneshot(mlp(), LOSS, DATA, eps=0.1, method="cubic"), ValueError, "method"),
    row("predict_oneshot", "resolution=0", lambda: pt.predict_oneshot(mlp(), LOSS, DATA, eps=0.1, resolution=0.0), ValueError, "resolution"),
    row("predict_oneshot", "resolution=1", lambda: pt.predict_oneshot(mlp(), LOSS, DATA, eps=0.1, resolution=1.0), ValueError, "resolution"),
    row("predict_oneshot", "grid=1", lambda: pt.predict_oneshot(mlp(), LOSS, DATA, eps=0.1, grid=1), ValueError, "grid"),
    row("predict_oneshot", "grid=2.5", lambda: pt.predict_oneshot(mlp(), LOSS, DATA, eps=0.1, grid=2.5), TypeError, "grid"),
    row("predict_oneshot", "data=[]", lambda: pt.predict_oneshot(mlp(), LOSS, [], eps=0.1), ValueError, "data"),
    row("predict_oneshot", "loss NaN on 2nd batch", lambda: pt.predict_oneshot(mlp(), nan_on_batch(1), DATA, eps=0.1, method="quadratic"), ValueError, "batch 1"),
    row("predict_sparsity", "tolerance=0", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, tolerance=0.0), ValueError, "tolerance"),
    row("predict_sparsity", "tolerance='x'", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, tolerance="x"), TypeError, "tolerance"),
    row("predict_sparsity", "hessian_samples=0", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, hessian_samples=0), ValueError, "hessian_samples"),
    row("predict_sparsity", "hessian_samples=1.5", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, hessian_samples=1.5), TypeError, "hessian_samples"),
    row("validate", "predict_kwargs={'nope': 1}", lambda: pt.validate(mlp(), LOSS, DATA, DATA, l1=1e-3, epochs=1, predict_kwargs={"nope": 1}), ValueError, "predict_kwargs"),
    row("validate", "train_kwargs={'nope': 1}", lambda: pt.validate(mlp(), LOSS, DATA, DATA, l1=1e-3, epochs=1, train_kwargs={"nope": 1}), ValueError, "train_kwargs"),
    row("validate", "num_steps=0", lambda: pt.validate(mlp(), LOSS, DATA, DATA, num_steps=0), ValueError, "num_steps"),
    row("validate", "eps=NaN", lambda: pt.validate(mlp(), LOSS, DATA, DATA, eps=NAN), ValueError, "eps"),
    row("validate", "test_data=[]", lambda: pt.validate(mlp(), LOSS, DATA, [], eps=0.1, num_steps=2, num_probes=1), ValueError, "test_data"),
    row("validate", "curve_points=1", lambda: pt.validate(mlp(), LOSS, DATA, DATA, curve_points=1), ValueError, "curve_points"),
    row("validate", "out=an existing file", lambda: pt.validate(mlp(), LOSS, DATA, DATA, out=foreign_file("x")), ValueError, "out must be a directory"),
    row("validate", "out/report.json a folder", lambda: pt.validate(mlp(), LOSS, DATA, DATA, out=dir_with("report.json")), ValueError, r"out: .*report\.json' is a directory"),
    row("layer_kept_fractions", "sparsity=2", lambda: pt.layer_kept_fractions(mlp(), 2.0), ValueError, "sparsity"),
    row("pruning_curve", "sparsities=[2]", lambda: pt.pruning_curve(mlp(), [2.0], DATA), ValueError, "sparsities"),
    row("pruning_curve", "test_data=3", lambda: pt.pruning_curve(mlp(), [0.5], 3), TypeError, "test_data"),
    row("plots.plot_spectrum", "spectrum='x'", lambda: pt.plots.plot_spectrum("x"), TypeError, "spectrum"),
    row("plots.plot_crossing", "prediction=3", lambda: pt.plots.plot_crossing(3), TypeError, "prediction"),
    row("plots.plot_pruning_curve", "report=3", lambda: pt.plots.plot_pruning_curve(3), TypeError, "report"),
    row("plots.plot_prediction", "prediction=3", lambda: pt.plots.plot_prediction(3), TypeError, "prediction"),
    row("plots.plot_pruning_curve", "report='missing.json'", lambda: pt.plots.plot_pruning_curve("/nonexistent/r.json"), ValueError, "JSON"),
    row("plots.plot_saved", "result=3", lambda: pt.plots.plot_saved(3, "/tmp"), TypeError, "result"),
    row("plots.plot_saved", "result={'a': 1}", lambda: pt.plots.plot_saved({"a": 1}, "/tmp"), ValueError, "result"),
    row("Report.from_json", "path=3", lambda: pt.Report.from_json(3), TypeError, "path"),
    row("Report.from_json", "missing file", lambda: pt.Report.from_json("/nonexistent/report.json"), ValueError, "path"),
    row("Report.from_dict", "d={}", lambda: pt.Report.from_dict({}), ValueError, "missing keys"),
    row("Prediction.from_dict", "d='x'", lambda: pt.Prediction.from_dict("x"), TypeError, "d must be a dict"),
    row("Prediction.from_dict", "d={}", lambda: pt.Prediction.from_dict({}), ValueError, "missing keys"),
    # data and models
    row("load_dataset", "name='nope'", lambda: pt.load_dataset("nope"), ValueError, "name"),
    row("load_dataset", "name=3", lambda: pt.load_dataset(3), TypeError, "name"),
    row("data.load_dataset", "name=''", lambda: pt.data.load_dataset(""), ValueError, "name"),
    row("data.digits", "batch_size=0", lambda: pt.data.digits(batch_size=0), ValueError, "batch_size"),
    row("data.digits_tensors", "dtype='float'", lambda: pt.data.digits_tensors(dtype="float"), TypeError, "dtype"),
    row("data.teacher_student", "num_samples=0", lambda: pt.data.teacher_student(num_samples=0), ValueError, "num_samples"),
    row("data.teacher_student", "teacher_sparsity=1.5", lambda: pt.data.teacher_student(teacher_sparsity=1.5), ValueError, "teacher_sparsity"),
    row("data.make_loaders", "batch_size=0", lambda: pt.data.make_loaders((X, Y), (X, Y), batch_size=0), ValueError, "batch_size"),
    row("data.synthetic_images", "num_samples=0", lambda: pt.data.synthetic_images(num_samples=0), ValueError, "num_samples"),
    row("data.read_idx", "missing file", lambda: pt.data.read_idx("/nonexistent/x.idx"), (ValueError, FileNotFoundError), "x.idx"),
    row("data.mnist_tensors", "root=3", lambda: pt.data.mnist_tensors(3), TypeError, "root"),
    row("data.mnist", "root missing", lambda: pt.data.mnist("/nonexistent"), (ValueError, FileNotFoundError), "nonexistent"),
    row("data.fashion_mnist", "root missing", lambda: pt.data.fashion_mnist("/nonexistent"), (ValueError, FileNotFoundError), "nonexistent"),
    row("data.cifar_tensors", "variant='x'", lambda: pt.data.cifar_tensors("/tmp", variant="x"), ValueError, "variant"),
    row("data.cifar10", "root missing", lambda: pt.data.cifar10("/nonexistent"), (ValueError, FileNotFoundError), "nonexistent"),
    row("data.cifar100", "root missing", lambda: pt.data.cifar100("/nonexistent"), (ValueError, FileNotFoundError), "nonexistent"),
    row("data.safe_load_pickle", "missing file", lambda: pt.data.safe_load_pickle("/nonexistent.pkl"), (ValueError, FileNotFoundError), "nonexistent"),
    row("build_model", "name='nope'", lambda: pt.build_model("nope"), ValueError, "name"),
    row("models.build_model", "unknown kwarg", lambda: pt.models.build_model("digits_mlp", depth=3), TypeError, "depth"),
    row("models.MLP", "sizes=[3]", lambda: pt.models.MLP([3]), ValueError, "sizes"),
    row("models.MLP", "activation='x'", lambda: pt.models.MLP([3, 2], activation="x"), ValueError, "activation"),
    row("models.fc5", "in_features=0", lambda: pt.models.fc5(in_features=0), ValueError, "in_features"),
    row("models.fc12", "num_classes=0", lambda: pt.models.fc12(num_classes=0), ValueError, "num_classes"),
    row("models.digits_mlp", "hidden='x'", lambda: pt.models.digits_mlp(hidden="x"), TypeError, "hidden"),
    row("models.lenet", "in_channels=0", lambda: pt.models.lenet(in_channels=0), ValueError, "in_channels"),
    row("models.LeNet", "image_size=2", lambda: pt.models.LeNet(image_size=2), ValueError, "image_size"),
    row("models.vgg_small", "width=0", lambda: pt.models.vgg_small(width=0), ValueError, "width"),
    row("models.VGGSmall", "batchnorm='yes'", lambda: pt.models.VGGSmall(batchnorm="yes"), TypeError, "batchnorm"),
    row("models.BasicBlock", "shortcut='C'", lambda: pt.models.BasicBlock(4, 4, shortcut="C"), ValueError, "shortcut"),
    row("models.CifarResNet", "blocks=[]", lambda: pt.models.CifarResNet([], []), ValueError, "blocks"),
    row("models.resnet20", "shortcut='C'", lambda: pt.models.resnet20(shortcut="C"), ValueError, "shortcut"),
    row("models.resnet32", "num_classes=0", lambda: pt.models.resnet32(num_classes=0), ValueError, "num_classes"),
    row("models.resnet56", "in_channels=0", lambda: pt.models.resnet56(in_channels=0), ValueError, "in_channels"),
    row("models.resnet18", "num_classes=-1", lambda: pt.models.resnet18(num_classes=-1), ValueError, "num_classes"),
    # helpers
    row("preserve_model", "model='x'", lambda: pt.preserve_model("x").__enter__(), TypeError, "model"),
    row("model_fingerprint", "model='x'", lambda: pt.model_fingerprint("x"), TypeError, "model"),
]


def nan_on_batch(index):
    """A cross-entropy loss that returns NaN on batch ``index`` of each pass over DATA."""

    def loss(outputs, targets):
        value = LOSS(outputs, targets)
        if outputs.shape[0] == DATA[index][0].shape[0] and torch.equal(targets, DATA[index][1]):
            return value * NAN
        return value

    return loss


def sweep_log():
    import tempfile

    path = tempfile.mktemp(suffix=".jsonl")
    pt.sweep(mlp(), acc, [0.5], path=path)
    return path


def corrupt_sweep():
    import tempfile

    path = tempfile.mktemp(suffix=".jsonl")
    pt.sweep(mlp(), acc, [0.5], path=path)
    with open(path, "a") as f:
        f.write('{"index": "x"}\n')
    with open(path) as f:
        lines = f.readlines()
    with open(path, "w") as f:  # the bad record first, a good one after it
        f.writelines([lines[0], lines[2], lines[1]])
    return path


def foreign_file(text="hello\n"):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write(text)
    return f.name


def fifo():
    import os
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "fifo")
    os.mkfifo(path)
    return path


def symlink_to(target):
    import os
    import tempfile

    link = os.path.join(tempfile.mkdtemp(), "sweep.jsonl")
    os.symlink(target, link)
    return link


def dir_with(name):
    import os
    import tempfile

    out = tempfile.mkdtemp()
    os.mkdir(os.path.join(out, name))
    return out


def spec_of(D):
    return np.linspace(0.1, 2.0, D)


@pytest.mark.parametrize("entry, fn, exc, pattern", BAD_INPUTS)
def test_bad_input(entry, fn, exc, pattern):
    with pytest.raises(exc) as info:
        fn()
    assert re.search(pattern, str(info.value)), f"{entry}: message {str(info.value)!r} lacks {pattern!r}"


BAD_INPUTS_EXTRA = [
    row("MagnitudeCurve", "weights=[] tensor", lambda: pt.MagnitudeCurve(torch.zeros(0)), ValueError, "weights"),
    row("MagnitudeCurve", "weights with inf", lambda: pt.MagnitudeCurve(torch.tensor([INF])), ValueError, "weights"),
    # interop (issue 17): selections by Parameter/module, batch_fn, callables, torch prune
    row("select_parameters", "a Parameter of another model", lambda: pt.select_parameters(mlp(), [mlp(1)[0].weight]), ValueError, r"params\[0\]"),
    row("select_parameters", "a module of another model", lambda: pt.select_parameters(mlp(), [nn.Linear(2, 2)]), ValueError, r"params\[0\]"),
    row("HessianOperator", "batch_fn=3", lambda: pt.HessianOperator(mlp(), LOSS, DATA, batch_fn=3), TypeError, "batch_fn"),
    row("HessianOperator", "dict batches, no batch_fn", lambda: pt.HessianOperator(mlp(), LOSS, [{"x": X, "y": Y}]).to_dense(), TypeError, "batch_fn"),
    row("HessianOperator", "batch_fn returns one tensor", lambda: pt.HessianOperator(mlp(), LOSS, DATA, batch_fn=lambda b: b[0]).to_dense(), TypeError, "batch_fn"),
    row("evaluate_accuracy", "batch_fn=3", lambda: pt.evaluate_accuracy(mlp(), DATA, batch_fn=3), TypeError, "batch_fn"),
    row("evaluate_accuracy", "one dict batch, no batch_fn", lambda: pt.evaluate_accuracy(mlp(), {"x": X, "y": Y}), TypeError, "batch_fn"),
    row("evaluate_loss", "batch_fn=3", lambda: pt.evaluate_loss(mlp(), LOSS, DATA, batch_fn=3), TypeError, "batch_fn"),
    row("estimate_eps", "batch_fn=3", lambda: pt.estimate_eps(mlp(), LOSS, DATA, batch_fn=3), TypeError, "batch_fn"),
    row("predict_sparsity", "batch_fn=3", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, batch_fn=3), TypeError, "batch_fn"),
    row("train_l1", "batch_fn=3", lambda: pt.train_l1(mlp(), LOSS, DATA, l1=0.0, epochs=1, lr=0.1, batch_fn=3), TypeError, "batch_fn"),
    row("finetune_masked", "batch_fn=3", lambda: pt.finetune_masked(mlp(), masks(), LOSS, DATA, steps=1, batch_fn=3), TypeError, "batch_fn"),
    row("find_loss_threshold", "batch_fn=3", lambda: pt.find_loss_threshold(mlp(), LOSS, DATA, 0.1, batch_fn=3), TypeError, "batch_fn"),
    row("validate", "batch_fn=3", lambda: pt.validate(mlp(), LOSS, DATA, DATA, batch_fn=3), TypeError, "batch_fn"),
    row("validate", "batch_fn in predict_kwargs", lambda: pt.validate(mlp(), LOSS, DATA, DATA, predict_kwargs={"batch_fn": None}), TypeError, "batch_fn"),
    row("slq", "a callable without dim", lambda: pt.slq(lambda v: v, num_steps=3), TypeError, "dim"),
    row("FunctionOperator", "matvec=3", lambda: pt.FunctionOperator(3, 4), TypeError, "matvec"),
    row("FunctionOperator", "dim=0", lambda: pt.FunctionOperator(lambda v: v, 0), ValueError, "dim"),
    row("FunctionOperator", "dtype=int64", lambda: pt.FunctionOperator(lambda v: v, 4, dtype=torch.int64), TypeError, "dtype"),
    row("FunctionOperator", "device='moon'", lambda: pt.FunctionOperator(lambda v: v, 4, device="moon"), TypeError, "device"),
    row("FunctionOperator", "batched='yes'", lambda: pt.FunctionOperator(lambda v: v, 4, batched="yes"), TypeError, "batched"),
    row("FunctionOperator", "matvec returns the wrong size", lambda: pt.FunctionOperator(lambda v: v[:-1], 4) @ torch.ones(4, dtype=torch.float64), ValueError, "matvec"),
    row("from_torch_prune", "model=3", lambda: pt.from_torch_prune(3), TypeError, "model"),
    # issue 17: progress=, set_threads, metric=, predict_sparsity(checkpoint=)
    row("set_threads", "threads=0", lambda: pt.set_threads(0), ValueError, "threads"),
    row("set_threads", "threads='many'", lambda: pt.set_threads("many"), ValueError, "threads"),
    row("set_threads", "threads=2.5", lambda: pt.set_threads(2.5), TypeError, "threads"),
    row("slq", "progress='yes'", lambda: pt.slq(sym(), progress="yes"), TypeError, "progress"),
    row("trace", "progress=1", lambda: pt.trace(sym(), progress=1), TypeError, "progress"),
    row("find_threshold", "progress='on'", lambda: pt.find_threshold(mlp(), acc, progress="on"), TypeError, "progress"),
    row("pruning_curve", "progress=1", lambda: pt.pruning_curve(mlp(), [0.5], DATA, progress=1), TypeError, "progress"),
    row("predict_sparsity", "progress='x'", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, progress="x"), TypeError, "progress"),
    row("predict_sparsity", "checkpoint=3", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, checkpoint=3), TypeError, "checkpoint"),
    row("predict_sparsity", "checkpoint with exact spectrum", lambda: pt.predict_sparsity(mlp(), LOSS, DATA, checkpoint="c.pt", spectrum_method="exact"), ValueError, "checkpoint"),
    row("validate", "metric='f1'", lambda: pt.validate(mlp(), LOSS, DATA, DATA, metric="f1"), ValueError, "metric"),
    row("validate", "metric=3", lambda: pt.validate(mlp(), LOSS, DATA, DATA, metric=3), TypeError, "metric"),
    row("validate", "progress='x'", lambda: pt.validate(mlp(), LOSS, DATA, DATA, progress="x"), TypeError, "progress"),
]


@pytest.mark.parametrize("entry, fn, exc, pattern", BAD_INPUTS_EXTRA)
def test_bad_input_extra(entry, fn, exc, pattern):
    test_bad_input(entry, fn, exc, pattern)


# -- coverage of the public API --------------------------------------------------------------
#: public callables without a bad-input row, and why
EXEMPT = {
    "Eigen": "result type (NamedTuple)",
    "Estimate": "result type (NamedTuple)",
    "Threshold": "result type (dataclass)",
    "ThresholdSpread": "result type (dataclass)",
    "TrainHistory": "result type (dataclass)",
    "Report": "result type (dataclass)",
    "Prediction": "result type (dataclass)",
    "Curve": "result type (dataclass)",
    "ZeroMassEstimate": "result type (dataclass)",
    "Operator": "abstract base class",
    "fingerprints_equal": "compares two model_fingerprint dicts (a test helper)",
    "geometry.MCEstimate": "result type (dataclass)",
    "geometry.RecoveryTransition": "result type (dataclass)",
    "data.UnsafePickleError": "exception class",
}


def _public_callables() -> set[str]:
    names = set()
    for n in dir(pt):
        obj = getattr(pt, n)
        if n.startswith("_") or inspect.ismodule(obj) or not callable(obj):
            continue
        names.add(n)
    for prefix, mod in (("geometry", pt.geometry), ("data", pt.data), ("models", pt.models)):
        for n in getattr(mod, "__all__", []):
            if callable(getattr(mod, n)) and not inspect.ismodule(getattr(mod, n)):
                names.add(f"{prefix}.{n}")
    return names


def test_every_entry_point_is_covered():
    covered = {p.values[0].split(".")[0] if p.values[0].startswith("SpectralDensity") else p.values[0]
               for p in BAD_INPUTS + BAD_INPUTS_EXTRA}
    missing = sorted(_public_callables() - covered - set(EXEMPT))
    assert not missing, f"public entry points without a bad-input row: {missing}"


# -- the user's model comes back bit for bit ------------------------------------------------
def stateful_model():
    """BatchNorm with non-trivial running statistics, dropout, mixed train/eval modes, gradients
    present, one parameter frozen: everything preserve_model promises to keep."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 3)
    ).double()
    m.train()
    with torch.no_grad():
        m(X)
    m[1].eval()
    m[3].eval()
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    m[0].bias.requires_grad_(False)
    return m


def fail_on(call: int, exc: BaseException, fn=None):
    """Wrap ``fn`` (default: returns the accuracy) to raise ``exc`` on its ``call``-th call."""
    count = [0]

    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] == call:
            raise exc
        return (fn or acc)(*args, **kwargs)

    return wrapped


def meddling_evaluate(m):
    """An evaluate callback that changes everything it can before answering."""
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    m.train()
    for p in m.parameters():
        p.requires_grad_(True)
        p.grad = None
    m[1].running_mean.fill_(3.0)
    return 0.5


class Stop(Exception):
    pass


def _pruned_block(m):
    with pt.pruned(m, 0.7):
        m(X)


def _pruned_block_failing(m):
    with pt.pruned(m, 0.5):
        with torch.no_grad():
            m[0].weight.add_(1.0)
        m.train()
        raise KeyboardInterrupt


def _pruned_obs_block(m, fail=False):
    with pt.pruned(m, 0.6, criterion="obs", data=DATA, loss_fn=LOSS):
        m(X)
        if fail:
            with torch.no_grad():
                m[0].weight.add_(1.0)
            raise KeyboardInterrupt


def _refit_then_interrupt(m, masks):
    with torch.no_grad():
        m[4].weight.mul_(2.0)
    raise KeyboardInterrupt


def _D(m):
    return sum(p.numel() for p in pt.prunable_parameters(m).values())


FAST = dict(num_steps=4, num_probes=2)
VALIDATE = dict(eps=0.1, num_steps=4, num_probes=2, curve_points=3, resolution=0.05,
                predict_kwargs={"bootstrap": 0})

UNCHANGED = [
    ("HessianOperator @ v", lambda m, tmp: pt.HessianOperator(m, LOSS, DATA) @ torch.ones(_D(m), 2, dtype=torch.float64), None),
    ("HessianOperator(params='all') @ v", lambda m, tmp: pt.HessianOperator(m, LOSS, DATA, params="all", batchnorm="train") @ torch.ones(sum(p.numel() for p in m.parameters()), dtype=torch.float64), None),
    ("loss_and_gradient", lambda m, tmp: pt.HessianOperator(m, LOSS, DATA).loss_and_gradient(), None),
    ("slq", lambda m, tmp: pt.slq(pt.HessianOperator(m, LOSS, DATA), **FAST), None),
    ("slq(checkpoint)", lambda m, tmp: pt.slq(pt.HessianOperator(m, LOSS, DATA), checkpoint=tmp / "s.pt", **FAST), None),
    ("trace hutchinson", lambda m, tmp: pt.trace(pt.HessianOperator(m, LOSS, DATA), num_matvecs=6), None),
    ("trace hutch++", lambda m, tmp: pt.trace(pt.HessianOperator(m, LOSS, DATA), "hutch++", num_matvecs=6), None),
    ("trace xtrace", lambda m, tmp: pt.trace(pt.HessianOperator(m, LOSS, DATA), "xtrace", num_matvecs=6), None),
    ("top_eigenvalues", lambda m, tmp: pt.top_eigenvalues(pt.HessianOperator(m, LOSS, DATA), k=1, max_steps=40), None),
    ("predict_sparsity", lambda m, tmp: pt.predict_sparsity(m, LOSS, DATA, bootstrap=0, **FAST), None),
    ("estimate_eps", lambda m, tmp: pt.estimate_eps(m, LOSS, DATA), None),
    ("predict_oneshot forward", lambda m, tmp: pt.predict_oneshot(m, LOSS, DATA), None),
    ("predict_oneshot quadratic", lambda m, tmp: pt.predict_oneshot(m, LOSS, DATA, method="quadratic", grid=4, resolution=0.05), None),
    ("predict_oneshot, KeyboardInterrupt in loss_fn (5th call)", lambda m, tmp: pt.predict_oneshot(m, fail_on(5, KeyboardInterrupt, LOSS), DATA, method="quadratic", grid=4), KeyboardInterrupt),
    ("estimate_eps, loss NaN on 2nd batch", lambda m, tmp: pt.estimate_eps(m, nan_on_batch(1), DATA), ValueError),
    ("critical_sparsity(model)", lambda m, tmp: pt.critical_sparsity(m, spec_of(_D(m)), 0.1, bootstrap=0), None),
    ("estimate_zero_mass", lambda m, tmp: pt.estimate_zero_mass(pt.HessianOperator(m, LOSS, DATA), num_rows=4), None),
    ("magnitude_masks", lambda m, tmp: pt.magnitude_masks(m, 0.5, min_per_layer=0.1), None),
    ("criterion_masks(obs)", lambda m, tmp: pt.criterion_masks(m, 0.5, "obs", DATA, LOSS), None),
    ("pruned(obs) (after exit)", lambda m, tmp: _pruned_obs_block(m), None),
    ("pruning_radius(layer_adaptive)", lambda m, tmp: pt.pruning_radius(m, [0.3, 0.6], "layer_adaptive", DATA, criterion_options={"levels": 3}), None),
    ("find_threshold(fisher_taylor)", lambda m, tmp: pt.find_threshold(m, acc, resolution=0.05, criterion="fisher_taylor", data=DATA, loss_fn=LOSS), None),
    ("sweep(obs, meddling evaluate)", lambda m, tmp: pt.sweep(m, meddling_evaluate, [0.2, 0.5], criterion="obs", data=DATA, loss_fn=LOSS), None),
    ("validate(criterion=obs)", lambda m, tmp: pt.validate(m, LOSS, DATA, DATA, criterion="obs", **VALIDATE), None),
    ("validate(spread=True)", lambda m, tmp: pt.validate(m, LOSS, DATA, DATA, spread=True, **VALIDATE), None),
    ("pruned(obs), KeyboardInterrupt in the block", lambda m, tmp: _pruned_obs_block(m, fail=True), KeyboardInterrupt),
    ("pruned (after exit)", lambda m, tmp: _pruned_block(m), None),
    ("layer_kept_fractions", lambda m, tmp: pt.layer_kept_fractions(m, 0.5), None),
    ("threshold_spread", lambda m, tmp: pt.threshold_spread(m, DATA, step=0.1, resolution=0.05, resamples=20), None),
    ("threshold_spread(obs)", lambda m, tmp: pt.threshold_spread(m, DATA, step=0.25, resolution=0.1, resamples=5, criterion="obs", criterion_data=DATA, loss_fn=LOSS), None),
    ("evaluate_correct", lambda m, tmp: pt.evaluate_correct(m, DATA), None),
    ("find_threshold", lambda m, tmp: pt.find_threshold(m, acc, resolution=0.05), None),
    ("find_threshold(refit=2)", lambda m, tmp: pt.find_threshold(m, acc, resolution=0.1, refit=2, refit_loss_fn=LOSS, refit_data=DATA), None),
    ("find_threshold(meddling evaluate)", lambda m, tmp: pt.find_threshold(m, meddling_evaluate, resolution=0.1), None),
    ("find_loss_threshold", lambda m, tmp: pt.find_loss_threshold(m, LOSS, DATA, eps=0.05, resolution=0.05), None),
    ("sweep(path)", lambda m, tmp: pt.sweep(m, acc, [0.2, 0.5, 0.9], path=tmp / "sw.jsonl"), None),
    ("sweep(meddling evaluate)", lambda m, tmp: pt.sweep(m, meddling_evaluate, [0.2, 0.5]), None),
    ("evaluate_accuracy", lambda m, tmp: pt.evaluate_accuracy(m, DATA), None),
    ("evaluate_loss", lambda m, tmp: pt.evaluate_loss(m, LOSS, DATA), None),
    ("pruning_curve", lambda m, tmp: pt.pruning_curve(m, [0.3, 0.6], DATA, loss_fn=LOSS), None),
    ("validate", lambda m, tmp: pt.validate(m, LOSS, DATA, DATA, **VALIDATE), None),
    ("validate(l1: trains a copy)", lambda m, tmp: pt.validate(m, LOSS, DATA, DATA, l1=1e-4, epochs=1, lr=0.01, **VALIDATE), None),
    # failing midway
    ("HessianOperator @ v, loss NaN on 2nd batch", lambda m, tmp: pt.HessianOperator(m, nan_on_batch(1), DATA) @ torch.ones(_D(m), dtype=torch.float64), ValueError),
    ("slq, loss NaN on 2nd batch", lambda m, tmp: pt.slq(pt.HessianOperator(m, nan_on_batch(1), DATA), **FAST), ValueError),
    ("slq, KeyboardInterrupt in loss_fn (3rd call)", lambda m, tmp: pt.slq(pt.HessianOperator(m, fail_on(3, KeyboardInterrupt, LOSS), DATA), **FAST), KeyboardInterrupt),
    ("predict_sparsity, loss NaN on 2nd batch", lambda m, tmp: pt.predict_sparsity(m, nan_on_batch(1), DATA, bootstrap=0, **FAST), ValueError),
    ("predict_sparsity, KeyboardInterrupt in loss_fn (7th call)", lambda m, tmp: pt.predict_sparsity(m, fail_on(7, KeyboardInterrupt, LOSS), DATA, bootstrap=0, **FAST), KeyboardInterrupt),
    ("pruned, KeyboardInterrupt in the block", lambda m, tmp: _pruned_block_failing(m), KeyboardInterrupt),
    ("find_threshold, evaluate raises on 3rd call", lambda m, tmp: pt.find_threshold(m, fail_on(3, Stop("3rd call"))), Stop),
    ("find_threshold, KeyboardInterrupt on 3rd call", lambda m, tmp: pt.find_threshold(m, fail_on(3, KeyboardInterrupt)), KeyboardInterrupt),
    ("find_threshold, refit interrupted", lambda m, tmp: pt.find_threshold(m, acc, refit=_refit_then_interrupt), KeyboardInterrupt),
    ("find_loss_threshold, loss NaN on 2nd batch", lambda m, tmp: pt.find_loss_threshold(m, nan_on_batch(1), DATA, eps=0.1), FloatingPointError),
    ("sweep, evaluate raises on 3rd call", lambda m, tmp: pt.sweep(m, fail_on(3, Stop("3rd call")), [0.1, 0.2, 0.3, 0.4], path=tmp / "f.jsonl"), Stop),
    ("evaluate_loss, loss NaN on 2nd batch", lambda m, tmp: pt.evaluate_loss(m, nan_on_batch(1), DATA), FloatingPointError),
    ("pruning_curve, metric raises on 3rd call", lambda m, tmp: pt.pruning_curve(m, [0.1, 0.2, 0.3, 0.4], DATA, metric=fail_on(3, Stop("3rd call"))), Stop),
    ("validate, KeyboardInterrupt in loss_fn (25th call)", lambda m, tmp: pt.validate(m, fail_on(25, KeyboardInterrupt, LOSS), DATA, DATA, **VALIDATE), KeyboardInterrupt),
    ("validate(l1), loss NaN on 2nd batch", lambda m, tmp: pt.validate(m, nan_on_batch(1), DATA, DATA, l1=1e-4, epochs=1, lr=0.01, **VALIDATE), (FloatingPointError, ValueError)),
]


@pytest.mark.parametrize("name, call, raises", UNCHANGED, ids=[u[0] for u in UNCHANGED])
def test_model_unchanged(name, call, raises, tmp_path):
    model = stateful_model()
    before = model_fingerprint(model)
    if raises is None:
        call(model, tmp_path)
    else:
        with pytest.raises(raises):
            call(model, tmp_path)
    assert fingerprints_equal(before, model_fingerprint(model)), name


def test_train_l1_failing_midway_restores_grads_and_modes():
    """train_l1 trains in place, but a failure midway leaves finite weights (those before the bad
    batch) and gives back gradients, requires_grad and modes."""
    model = stateful_model()
    before = model_fingerprint(model)
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1"):
        calls = [0]

        def loss(o, t):
            calls[0] += 1
            return LOSS(o, t) * (NAN if calls[0] == 6 else 1.0)

        pt.train_l1(model, loss, DATA, l1=1e-4, epochs=3, lr=0.01, progress=False)
    after = model_fingerprint(model)
    for key in ("grads", "requires_grad", "training"):
        assert fingerprints_equal({**before, "params": {}, "buffers": {}},
                                  {**after, "params": {}, "buffers": {}}), key
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bootstrap_with_one_probe_warns_instead_of_silently_dropping_uncertainty():
    with pytest.warns(RuntimeWarning, match="num_probes >= 2"):
        pred = pt.predict_sparsity(mlp(), LOSS, DATA, eps=0.1, num_steps=3, num_probes=1)
    assert pred.uncertainty is None


# -- issue 16, library half: new checks -------------------------------------------------------
def _single_output():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def _weight_norm_mlp():
    m = mlp()
    nn.utils.parametrizations.weight_norm(m[0])
    return m


def _detached(outputs, targets):
    return LOSS(outputs, targets).detach()


def _huge_request(**kwargs):
    return pt.slq(H(), **{"num_steps": 4, "num_probes": 2, **kwargs})


BAD_INPUTS_ISSUE16 = [
    row("slq", "num_steps=10**9", lambda: _huge_request(num_steps=10**9), ValueError, "num_steps must be <= max\\(dim, 1000\\)"),
    row("slq", "num_probes=10**12", lambda: _huge_request(num_probes=10**12), ValueError, "num_probes: .* available memory"),
    row("slq", "seed=2**64", lambda: _huge_request(seed=2**64), ValueError, "seed must be <= 18446744073709551615"),
    row("trace", "num_matvecs=10**12", lambda: pt.trace(sym(), num_matvecs=10**12), ValueError, "num_matvecs: .* available memory"),
    row("trace", "num_matvecs=10**12 (hutch++)", lambda: pt.trace(sym(), method="hutch++", num_matvecs=10**12), ValueError, "num_matvecs"),
    row("estimate_zero_mass", "num_rows=10**13", lambda: pt.estimate_zero_mass(sym(), weights=torch.ones(10), num_rows=10**13), ValueError, "num_rows: .* available memory"),
    row("find_threshold", "resolution=5e-324", lambda: pt.find_threshold(mlp(), acc, resolution=5e-324), ValueError, "resolution must be >= 1e-09"),
    row("validate", "resolution=5e-324", lambda: pt.validate(mlp(), LOSS, DATA, DATA, resolution=5e-324), ValueError, "resolution"),
    row("HessianOperator", "meta-device model", lambda: pt.HessianOperator(mlp().to("meta"), LOSS, DATA), ValueError, "model: '0.weight' is on the meta device"),
    row("evaluate_accuracy", "meta-device model", lambda: pt.evaluate_accuracy(mlp().to("meta"), DATA), ValueError, "meta device"),
    row("magnitude_masks", "meta-device model", lambda: pt.magnitude_masks(mlp().to("meta"), 0.5), ValueError, "meta device"),
    row("magnitude_masks", "sparsity=True", lambda: pt.magnitude_masks(mlp(), True), TypeError, "sparsity must be a real number"),
    row("magnitude_masks", "sparsity=tensor(True)", lambda: pt.magnitude_masks(mlp(), torch.tensor(True)), TypeError, "sparsity"),
    row("pruned", "sparsity=False", lambda: pt.pruned(mlp(), False).__enter__(), TypeError, "sparsity"),
    row("evaluate_accuracy", "single-output model", lambda: pt.evaluate_accuracy(_single_output(), DATA), ValueError, "single output per sample .* use evaluate_loss"),
    row("evaluate_accuracy", "labels out of range", lambda: pt.evaluate_accuracy(mlp(), (X, Y + 3)), ValueError, "data: labels at batch 0 lie outside \\[0, 3\\)"),
    row("evaluate_accuracy", "float targets", lambda: pt.evaluate_accuracy(mlp(), (X, Y.double() + 0.5)), ValueError, "not class labels"),
    row("validate", "single-output model (MSELoss)", lambda: pt.validate(_single_output(), nn.MSELoss(), [(X, X[:, :1])], [(X, X[:, :1])], eps=0.1), ValueError, "validate .*single output.*test_data"),
    row("HessianOperator", "3-element batches (sample weights)", lambda: pt.HessianOperator(mlp(), LOSS, [(X, Y, torch.ones(40))]) @ torch.ones(72, dtype=torch.float64), ValueError, "batch 0 has 3 elements"),
    row("evaluate_loss", "3-element batches", lambda: pt.evaluate_loss(mlp(), LOSS, [(X, Y, torch.ones(40))]), ValueError, "3 elements"),
    row("prunable_parameters", "weight_norm layer", lambda: pt.prunable_parameters(_weight_norm_mlp()), ValueError, "layer '0' .*parametrize"),
    row("train_l1", "detached loss", lambda: pt.train_l1(mlp(), _detached, DATA, l1=1e-3, epochs=1, lr=0.1, progress=False), ValueError, "no gradient"),
    row("finetune_masked", "detached loss", lambda: pt.finetune_masked(mlp(), masks(), _detached, DATA, steps=1), ValueError, "no gradient"),
]


@pytest.mark.parametrize("entry, fn, exc, pattern", BAD_INPUTS_ISSUE16)
def test_bad_input_issue16(entry, fn, exc, pattern):
    test_bad_input(entry, fn, exc, pattern)


def _meddlers():
    """Callbacks that change the model's structure, each the way a user's code might."""
    return {
        "adds a parameter (a temperature)": lambda m: m.register_parameter("temperature", nn.Parameter(torch.ones(1))),
        "adds a buffer": lambda m: m[0].register_buffer("seen", torch.zeros(1)),
        "deletes a bias": lambda m: delattr(m[4], "bias"),
        "sets a bias to None": lambda m: setattr(m[0], "bias", None),
        "casts to float32": lambda m: m.float(),
        "swaps a submodule": lambda m: m.__setitem__(4, nn.Linear(8, 3).double()),
        "registers hooks": lambda m: (m[0].register_forward_hook(lambda *a: None),
                                      m.register_forward_pre_hook(lambda *a: None)),
        "adds a parametrisation": lambda m: nn.utils.parametrizations.weight_norm(m[0]),
        "replaces .data": lambda m: setattr(m[0].weight, "data", torch.zeros(8, 6, dtype=torch.float64)),
    }


@pytest.mark.parametrize("name", list(_meddlers()))
def test_preserve_model_undoes_structural_changes(name):
    # before: an added parameter raised a bare KeyError and left the model 85-100 % pruned; the
    # other changes stayed, and the fingerprint did not see them
    meddle = _meddlers()[name]
    model = stateful_model()
    params = dict(model.named_parameters())
    before = model_fingerprint(model)
    out = copy.deepcopy(model).eval()(X).detach()
    probe = stateful_model()
    meddle(probe)
    assert not fingerprints_equal(before, model_fingerprint(probe)), "the fingerprint must see it"

    def evaluate(m):
        meddle(m)
        return 1.0

    found = pt.find_threshold(model, evaluate, resolution=0.1)
    assert found.sparsity == 1.0
    assert fingerprints_equal(before, model_fingerprint(model))
    assert all(params[n] is p for n, p in model.named_parameters())  # the same objects
    assert torch.equal(copy.deepcopy(model).eval()(X), out)
