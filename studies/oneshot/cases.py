"""The cases of the one-shot study (issue 15): every architecture at several l1 strengths, two
training schedules, calibration and held-out data.

Calibration (the digits and teacher–student networks of :mod:`studies.validation.cases`, data
and models built by its :func:`~studies.validation.cases.case_data`, trained by its
:func:`~studies.validation.cases.train_case`): ``mlp`` 64-64-32-10 (D = 6 464), ``wide``
64-128-64-10 (17 024), ``lenet`` on 8×8 digits (21 150), ``teacher`` 20-64-4 (1 536), ``big``
64-512-256-10 (166 400). Held-out (never used to choose a constant): sklearn ``wine``
(13-32-3), ``breast_cancer`` (30-64-32-2), ``make_moons`` (2-64-64-2, noise 0.25),
``make_classification`` (30-128-64-5), standardised on the training split (70/30).

Schedules: ``cos`` = ``train_l1`` default (SGD momentum 0.9, lr 0.05, cosine, 100 epochs, batch
64); ``const`` = constant lr 0.01 for 200 epochs (the reference code trains at a constant rate;
0.05 constant with momentum is unstable with l1 on these nets).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from phasetrans import models as pt_models
from studies.validation.cases import case_data, train_case

__all__ = ["ARCHS", "HELDOUT", "HELDOUT2", "L1S", "SCHEDULES", "case_name", "load_or_train", "sklearn_data"]

L1S = (0.0, 1e-4, 3e-4, 1e-3, 3e-3)
SCHEDULES = {"cos": {"schedule": "cosine", "lr": 0.05, "epochs": 100},
             "const": {"schedule": "constant", "lr": 0.01, "epochs": 200}}
#: arch -> the validation study's case config (model, hidden) or a held-out dataset name
ARCHS: dict[str, dict] = {
    "mlp": {"model": "mlp", "hidden": (64, 32)},
    "wide": {"model": "mlp", "hidden": (128, 64)},
    "lenet": {"model": "lenet"},
    "teacher": {"model": "teacher"},
    "big": {"model": "mlp", "hidden": (512, 256)},
    "wine": {"dataset": "wine", "sizes": (13, 32, 3)},
    "cancer": {"dataset": "breast_cancer", "sizes": (30, 64, 32, 2)},
    "moons": {"dataset": "moons", "sizes": (2, 64, 64, 2)},
    "classif": {"dataset": "classif", "sizes": (30, 128, 64, 5)},
    "circles": {"dataset": "circles", "sizes": (2, 64, 64, 2)},
    "quantiles": {"dataset": "quantiles", "sizes": (6, 128, 64, 3)},
    "hastie": {"dataset": "hastie", "sizes": (10, 64, 32, 2)},
    "shallow": {"dataset": "digits", "sizes": (64, 256, 10)},
}
HELDOUT = ("wine", "cancer", "moons", "classif")
#: the second held-out set, added after the applicability rule was fixed (session 4): data and
#: networks no constant was chosen on
HELDOUT2 = ("circles", "quantiles", "hastie", "shallow")


def case_name(arch: str, l1: float, sched: str) -> str:
    """``mlp_l10.001_cos`` (the weight cache's file stem)."""
    return f"{arch}_l1{l1:g}_{sched}"


def sklearn_data(dataset: str, seed: int = 0):
    """``(train loader at batch 64, (X, y) train, (X, y) test)`` of a held-out sklearn dataset."""
    import sklearn.datasets as skd

    if dataset == "wine":
        X, y = skd.load_wine(return_X_y=True)
    elif dataset == "breast_cancer":
        X, y = skd.load_breast_cancer(return_X_y=True)
    elif dataset == "moons":
        X, y = skd.make_moons(n_samples=1500, noise=0.25, random_state=1)
    elif dataset == "classif":
        X, y = skd.make_classification(n_samples=2500, n_features=30, n_informative=12, n_redundant=6,
                                       n_classes=5, n_clusters_per_class=2, class_sep=1.2, random_state=2)
    elif dataset == "circles":
        X, y = skd.make_circles(n_samples=1500, noise=0.15, factor=0.5, random_state=3)
    elif dataset == "quantiles":
        X, y = skd.make_gaussian_quantiles(n_samples=2000, n_features=6, n_classes=3, random_state=4)
    elif dataset == "hastie":
        X, y = skd.make_hastie_10_2(n_samples=3000, random_state=6)
        y = (y > 0).astype(np.int64)
    elif dataset == "digits":
        X, y = skd.load_digits(return_X_y=True)
    else:
        raise ValueError(f"unknown held-out dataset {dataset!r}")
    X, y = np.asarray(X, np.float64), np.asarray(y)
    idx = np.random.default_rng(5).permutation(len(y))
    nte = int(round(0.3 * len(y)))
    te, tr = idx[:nte], idx[nte:]
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
    X = (X - mu) / sd
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    Xtr, ytr, Xte, yte = f(X[tr]), torch.tensor(y[tr]), f(X[te]), torch.tensor(y[te])
    train = DataLoader(TensorDataset(Xtr, ytr), batch_size=64, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    return train, (Xtr, ytr), (Xte, yte)


def _data_and_maker(arch: str, seed: int):
    cfg = ARCHS[arch]
    if "dataset" in cfg:
        train, hdata, test = sklearn_data(cfg["dataset"], seed)
        return train, hdata, test, (lambda: pt_models.MLP(cfg["sizes"]))
    return case_data(cfg, seed, "cpu", None)


def load_or_train(arch: str, l1: float, sched: str, weights_dir: str | Path | None, seed: int = 0,
                  load_only: bool = False):
    """``(model, train loader, hessian data, test, seconds trained or None)``: the state dict
    ``weights_dir/<case>.pt`` if there, else trained from scratch (and saved there when given;
    ``load_only``: a missing file is an error)."""
    train, hdata, test, make = _data_and_maker(arch, seed)
    path = Path(weights_dir) / f"{case_name(arch, l1, sched)}.pt" if weights_dir else None
    if path is not None and path.exists():
        torch.manual_seed(seed)
        model = make()
        model.load_state_dict(torch.load(path, weights_only=True)["state"])
        return model.eval(), train, hdata, test, None
    if load_only:
        raise FileNotFoundError(f"no trained weights {path} (--weights)")
    cfg = {**ARCHS[arch], "l1": l1, **SCHEDULES[sched]}
    if "dataset" in cfg:  # train_case builds the validation study's data; same recipe here
        from phasetrans.train import train_l1

        torch.manual_seed(seed)
        model = make()
        t = time.perf_counter()
        train_l1(model, nn.CrossEntropyLoss(), train, l1=l1, epochs=cfg["epochs"], lr=cfg["lr"],
                 schedule=cfg["schedule"], seed=seed, progress=False)
        seconds = time.perf_counter() - t
    else:
        model, train, hdata, test, seconds, _ = train_case(cfg, seed, "cpu", None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": model.state_dict(), "meta": {"seconds": seconds, **cfg}}, path)
    return model.eval(), train, hdata, test, seconds
