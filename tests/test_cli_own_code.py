"""Issue 17: the command line takes the user's own code: ``--model package.module:factory`` (the
``--checkpoint`` weights loaded into it), ``--loss`` and ``--metric``; bad specs exit with 2."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import phasetrans as pt
from phasetrans.cli import main

FAST = ["--num-steps", "6", "--num-probes", "2", "--threads", "1", "--quiet"]

NETS = '''
import torch
from torch import nn


def digits_small(hidden=16):
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def regressor():
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 1))


def huber():
    return nn.HuberLoss()


def r2(model, data):
    num = den = 0.0
    ys = torch.cat([y for _, y in data])
    with torch.no_grad():
        out = torch.cat([model(x) for x, _ in data])
    return float(1 - ((out - ys) ** 2).sum() / ((ys - ys.mean()) ** 2).sum())


not_callable = 3


def returns_int():
    return 3


def needs_arg(width):
    return nn.Linear(width, 2)
'''


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """``mynets.py`` in the working directory (found without installing, as with python -m)."""
    (tmp_path / "mynets.py").write_text(textwrap.dedent(NETS))
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI may add the cwd: undone after
    yield tmp_path
    for name in ("mynets", "broken"):
        sys.modules.pop(name, None)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def regression_config(path):
    cfg = {"data": "teacher_student", "batch_size": 64,
           "data_kwargs": {"num_classes": None, "num_samples": 300, "dim_in": 6, "hidden": [8],
                           "noise": 0.1}}
    path.write_text(json.dumps(cfg))
    return str(path)


def test_factory_model_and_its_checkpoint(nets, capsys):
    code, out, err = run(capsys, "spectrum", "--random-init", "--model", "mynets:digits_small", "--json", *FAST)
    assert code == 0, err
    assert json.loads(out)["dim"] == 64 * 16 + 16 * 10
    cfg = nets / "c.json"
    cfg.write_text(json.dumps({"model": "mynets:digits_small", "model_kwargs": {"hidden": 8}}))
    code, out, err = run(capsys, "spectrum", "--random-init", "--config", str(cfg), "--json", *FAST)
    assert code == 0 and json.loads(out)["dim"] == 64 * 8 + 8 * 10
    # the checkpoint goes into the factory's model: the CLI's prediction is the library's
    torch.manual_seed(3)
    import mynets

    model = mynets.digits_small()
    torch.save(model.state_dict(), nets / "w.pt")
    code, out, err = run(capsys, "predict", "--model", "mynets:digits_small", "--checkpoint",
                         str(nets / "w.pt"), "--eps", "0.05", "--json", *FAST)
    assert code == 0, err
    train, _ = pt.data.digits(batch_size=128, seed=0)
    hessian = DataLoader(train.dataset, batch_size=2048, shuffle=False)
    torch.set_num_threads(1)
    expected = pt.predict_sparsity(model, nn.CrossEntropyLoss(), hessian, eps=0.05, num_steps=6,
                                   num_probes=2, seed=0)
    got = json.loads(out)
    assert got["sparsity"] == expected.sparsity and got["dim"] == expected.dim


def test_regression_model_gets_mse_and_neg_loss(nets, capsys):
    cfg = regression_config(nets / "reg.json")
    args = ["validate", "--config", cfg, "--model", "mynets:regressor", "--loss", "mse",
            "--l1", "1e-4", "--epochs", "2", "--resolution", "0.01"]
    code, out, err = run(capsys, *args, "--json", *FAST)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["config"]["metric"] == "neg_loss"
    dense = rep["summary"]["dense"]
    assert "test_accuracy" not in dense
    assert rep["threshold"]["baseline"] == dense["test_metric"] == -dense["test_loss"]
    code, out, err = run(capsys, *args, *FAST)
    assert code == 0 and "test neg_loss" in out and "accuracy" not in out
    # the user's metric, and a loss factory
    code, out, err = run(capsys, *args, "--metric", "mynets:r2", "--loss", "mynets:huber",
                         "--json", *FAST)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["config"]["metric"] == "r2" and rep["summary"]["dense"]["test_metric"] <= 1.0
    code, out, err = run(capsys, "spectrum", "--random-init", "--config", cfg, "--model", "mynets:regressor",
                         "--loss", "torch.nn:SmoothL1Loss", "--json", *FAST)
    assert code == 0 and json.loads(out)["dim"] == 6 * 12 + 12


def test_sweep_metric(nets, capsys):
    code, out, err = run(capsys, "sweep", "--random-init", "--sparsities", "0,0.5", "--metric", "neg_loss",
                         "--json", *FAST[-3:])
    assert code == 0, err
    got = json.loads(out)
    assert got["metric"] == "neg_loss"
    torch.manual_seed(0)
    train, test = pt.data.digits(batch_size=128, seed=0)
    torch.manual_seed(0)
    model = pt.models.digits_mlp()
    assert got["points"][0][1] == -pt.evaluate_loss(model, nn.CrossEntropyLoss(), test)


@pytest.mark.parametrize("argv, message", [
    (["--model", "nosuchmodule_xyz:f"], "cannot import module 'nosuchmodule_xyz'"),
    (["--model", "broken:f"], "RuntimeError: boom"),
    (["--model", "mynets:missing"], "has no attribute 'missing'"),
    (["--model", "mynets:not_callable"], "not callable"),
    (["--model", "mynets:returns_int"], "must return a torch.nn.Module"),
    (["--model", "mynets:needs_arg"], "calling the factory"),
    (["--model", "mynets::x"], "package.module:attribute"),
    (["--model", "resnet9000"], "package.module:factory"),
    (["--loss", "huber"], "--loss must be one of"),
    (["--loss", "mynets:r2"], "calling the factory"),
    (["--loss", "mynets:not_callable"], "not callable"),
    (["--metric", "f1"], "--metric must be one of"),
    (["--metric", "mynets:not_callable"], "not callable"),
    (["--metric", "mynets:nothing"], "has no attribute"),
])
def test_bad_specs_exit_2(nets, capsys, argv, message):
    command = "validate" if "--metric" in argv else "spectrum"
    extra = ["--l1", "0"] if command == "validate" else ["--random-init"]
    code, _, err = run(capsys, command, *argv, *extra, *FAST)
    assert code == 2, err
    assert message in err


def test_checkpoint_that_does_not_fit_the_factory_model(nets, capsys):
    torch.save(nn.Linear(3, 3).state_dict(), nets / "w.pt")
    code, _, err = run(capsys, "spectrum", "--model", "mynets:digits_small", "--checkpoint",
                       str(nets / "w.pt"), *FAST)
    assert code == 2 and "does not fit --model mynets:digits_small" in err
