"""validate / Report / pruning_curve / layer_kept_fractions: thin over the public API, the user's
model untouched, JSON written atomically, arguments checked."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from conftest import digits_tensors, make_mlp, trained_mlp
from torch import nn

import phasetrans as pt
from phasetrans._io import atomic_write_text
from phasetrans.predict import predict_sparsity

FAST = dict(num_steps=10, num_probes=2, curve_points=5, resolution=0.01,
            predict_kwargs={"bootstrap": 0})


@pytest.fixture(scope="module")
def data():
    Xtr, ytr, Xte, yte = digits_tensors(torch.float64)
    train = [(Xtr[i : i + 433], ytr[i : i + 433]) for i in range(0, len(ytr), 433)]
    return train, (Xte, yte)


@pytest.fixture(scope="module")
def model():
    return trained_mlp(l1=1e-3)


@pytest.fixture(scope="module")
def report(data, model):
    train, test = data
    before = pt.model_fingerprint(model)
    rep = pt.validate(model, nn.CrossEntropyLoss(), train, test, **FAST)
    assert pt.fingerprints_equal(before, pt.model_fingerprint(model))
    return rep


def test_report_matches_the_public_calls(report, data, model):
    """The pipeline adds nothing of its own: same numbers as calling the API directly."""
    train, test = data
    pred = predict_sparsity(model, nn.CrossEntropyLoss(), train, num_steps=10, num_probes=2,
                            trace_method=None, bootstrap=0)
    assert report.prediction.sparsity == pred.sparsity
    found = pt.find_threshold(model, lambda m: pt.evaluate_accuracy(m, test), resolution=0.01)
    assert report.threshold.sparsity == found.sparsity
    assert report.dense["test_accuracy"] == pt.evaluate_accuracy(model, test)
    assert report.difference == pytest.approx(pred.sparsity - found.sparsity)
    assert report.within_window == (pred.lower <= found.sparsity <= pred.upper)


def test_curve_holds_the_evaluated_points(report):
    c = report.curve
    assert c["sparsity"] == sorted(c["sparsity"])
    assert len(c["sparsity"]) == len(c["accuracy"]) == len(c["loss"])
    for s, acc in report.threshold.points:
        i = c["sparsity"].index(s)
        assert c["accuracy"][i] == acc  # the same pruned model, the same test set
    for s in (0.0, 0.25, 0.5, 0.75, 1.0, report.prediction.sparsity):
        assert any(math.isclose(s, x) for x in c["sparsity"])
    assert c["accuracy"][0] == report.dense["test_accuracy"]
    assert c["accuracy"][-1] < 0.2  # everything pruned: chance level


def test_layers_at_threshold(report):
    layers = report.layers["at_threshold"]
    total = sum(v["total"] for v in layers.values())
    kept = sum(v["kept"] for v in layers.values())
    assert total == report.prediction.dim
    assert total - kept == pt.pruned_count(report.threshold.sparsity, total)


def test_to_json_is_atomic_and_complete(report, tmp_path):
    path = tmp_path / "sub" / "report.json"
    text = report.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text)
    d = json.loads(text)
    assert d["summary"]["predicted_sparsity"] == report.predicted
    assert d["summary"]["measured_sparsity"] == report.measured
    assert set(d["timings"]) >= {"predict", "threshold", "curve", "total"}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp file left
    with pytest.raises(TypeError, match="path"):
        report.to_json(3)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    atomic_write_text(path, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_summary_and_repr(report):
    text = report.summary()
    assert "predicted critical sparsity" in text and "measured one-shot threshold" in text
    assert f"{report.predicted:.4f}" in text and f"{report.measured:.4f}" in text
    assert repr(report).startswith("Report(predicted=")


def test_report_is_a_frozen_value_with_stage_timings(report):
    """Built once: no attribute can be set; a changed copy comes from dataclasses.replace. The
    timings are the stages in the order they ran, then the total."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.figures = ["x.png"]
    other = dataclasses.replace(report, figures=["x.png"])
    assert other.to_dict()["figures"] == ["x.png"] and report.figures == []
    assert list(report.timings) == ["dense_eval", "predict", "threshold", "loss_threshold", "curve",
                                    "layers", "total"]
    assert report.timings["total"] >= sum(v for k, v in report.timings.items() if k != "total")
    assert report.config["predict_kwargs"] == {"bootstrap": 0, "trace_method": None}
    assert report.config["epochs"] is None and report.config["train_kwargs"] == {}


def test_plot_dir_and_single_file(report, tmp_path):
    before = report.to_dict()["figures"]
    written = report.plot(tmp_path / "figs")
    assert report.to_dict()["figures"] == before  # the report is not changed by drawing it
    assert sorted(p.name for p in written) == ["crossing.png", "layers.png", "pruning_curve.png", "spectrum.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one = report.plot(tmp_path / "overview.png")
    assert one[0].stat().st_size > 10_000


def test_validate_trains_a_copy_and_writes_out(data, tmp_path):
    train, test = data
    model = make_mlp(dtype=torch.float64)
    before = pt.model_fingerprint(model)
    rep = pt.validate(model, nn.CrossEntropyLoss(), train, test, l1=1e-3, epochs=2, lr=0.05,
                      out=tmp_path, loss_criterion=False, refit=3, **FAST)
    assert pt.fingerprints_equal(before, pt.model_fingerprint(model))
    assert rep.model is not None and rep.model is not model
    assert not torch.equal(rep.model[0].weight, model[0].weight)
    assert len(rep.training.loss) == 2 and rep.loss_threshold is None
    assert rep.refit_threshold is not None and "refit_threshold" in rep.timings
    assert (tmp_path / "report.json").is_file() and (tmp_path / "pruning_curve.png").is_file()
    d = json.loads((tmp_path / "report.json").read_text())
    assert d["config"]["l1"] == 1e-3 and len(d["figures"]) == 4
    assert d["figures"] == sorted(d["figures"]) == [str(p) for p in rep.figures]
    assert d["config"]["train_kwargs"] == {"progress": False}
    assert list(rep.timings) == ["train", "dense_eval", "predict", "threshold", "refit_threshold",
                                 "curve", "layers", "plots", "total"]
    assert d["timings"] == rep.timings


def test_validate_inplace_trains_the_model(data):
    train, test = data
    model = make_mlp(dtype=torch.float64)
    w0 = model[0].weight.detach().clone()
    rep = pt.validate(model, nn.CrossEntropyLoss(), train, test, l1=0.0, epochs=1, inplace=True,
                      loss_criterion=False, **FAST)
    assert rep.model is None
    assert not torch.equal(model[0].weight, w0)


def test_validate_hessian_data_same_prediction(data):
    """Bigger Hessian batches: the same H (and ε from train_data's batches), the same s*."""
    train, test = data
    model = trained_mlp(l1=1e-3)
    X = torch.cat([x for x, _ in train])
    y = torch.cat([t for _, t in train])
    a = pt.validate(model, nn.CrossEntropyLoss(), train, test, loss_criterion=False, **FAST)
    b = pt.validate(model, nn.CrossEntropyLoss(), train, test, hessian_data=(X, y),
                    loss_criterion=False, **FAST)
    assert b.prediction.eps == pytest.approx(a.prediction.eps, rel=1e-12)
    assert b.prediction.sparsity == pytest.approx(a.prediction.sparsity, abs=2e-3)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(l1=-1.0), ValueError, "l1"),
        (dict(l1=1e-3, epochs=0), ValueError, "epochs"),
        (dict(eps=0.0), ValueError, "eps"),
        (dict(num_steps=0), ValueError, "num_steps"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(out=5), TypeError, "out"),
        (dict(refit=0), ValueError, "refit"),
        (dict(tolerance=-0.1), ValueError, "tolerance"),
        (dict(inplace="yes"), TypeError, "inplace"),
        (dict(curve_points=1), ValueError, "curve_points"),
        (dict(predict_kwargs={"eps": 1.0}), TypeError, "predict_kwargs"),
        (dict(train_kwargs=[1]), TypeError, "train_kwargs"),
    ],
)
def test_validate_rejects_bad_arguments(data, kwargs, exc, word):
    train, test = data
    model = trained_mlp()
    before = pt.model_fingerprint(model)
    with pytest.raises(exc, match=word):
        pt.validate(model, nn.CrossEntropyLoss(), train, test, **kwargs)
    assert pt.fingerprints_equal(before, pt.model_fingerprint(model))


def test_validate_rejects_bad_inputs(data):
    train, test = data
    with pytest.raises(TypeError, match="model"):
        pt.validate("net", nn.CrossEntropyLoss(), train, test)
    with pytest.raises(TypeError, match="loss_fn"):
        pt.validate(trained_mlp(), None, train, test)
    with pytest.raises(TypeError, match="test_data"):
        pt.validate(trained_mlp(), nn.CrossEntropyLoss(), train, 3)


def test_pruning_curve_and_layers(data):
    _, test = data
    model = trained_mlp(l1=1e-3)
    before = pt.model_fingerprint(model)
    c = pt.pruning_curve(model, [0.5, 0.0, 1.0, 0.5], test, loss_fn=nn.CrossEntropyLoss())
    assert c["sparsity"] == [0.0, 0.5, 1.0]
    assert c["accuracy"][0] == pt.evaluate_accuracy(model, test)
    with pt.pruned(model, 0.5):
        assert c["loss"][1] == pt.evaluate_loss(model, nn.CrossEntropyLoss(), test)
    assert pt.fingerprints_equal(before, pt.model_fingerprint(model))
    layers = pt.layer_kept_fractions(model, 0.9)
    assert list(layers) == list(pt.prunable_parameters(model))
    assert all(0 <= v["kept_fraction"] <= 1 for v in layers.values())
    with pytest.raises(ValueError, match="sparsit"):
        pt.pruning_curve(model, [1.5], test)
    with pytest.raises(TypeError, match="sparsities"):
        pt.pruning_curve(model, "0.5", test)
    with pytest.raises(ValueError, match="sparsities"):
        pt.pruning_curve(model, [], test)
    with pytest.raises(ValueError, match="sparsity"):
        pt.layer_kept_fractions(model, -0.1)


@pytest.mark.slow
def test_readme_api_example_runs(tmp_path, monkeypatch):
    """The README's ten-line example runs as written (and its validate writes the figures)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## Ten lines of API\n\n```python\n(.*?)```", readme, re.S)
    assert match, "README has no API example"
    code = match.group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    report = namespace["report"]
    assert isinstance(report, pt.Report)
    assert (tmp_path / "out" / "api" / "report.json").is_file()
    assert len(list((tmp_path / "out" / "api").glob("*.png"))) == 4


# -- metric= (issue 17) ------------------------------------------------------------------------
def test_metric_callable_equals_accuracy_and_names_itself(report, data, model):
    train, test = data

    def my_accuracy(m, batches):
        return pt.evaluate_accuracy(m, batches)

    rep = pt.validate(model, nn.CrossEntropyLoss(), train, test, metric=my_accuracy, **FAST)
    assert rep.config["metric"] == "my_accuracy" and report.config["metric"] == "accuracy"
    assert rep.threshold == report.threshold  # same metric, same points, same threshold
    assert rep.curve == report.curve
    assert rep.dense["test_metric"] == report.dense["test_accuracy"]
    assert "test my_accuracy is still >=" in rep.summary()


def test_metric_neg_loss_is_minus_the_test_loss(data, model):
    train, test = data
    loss = nn.CrossEntropyLoss()
    rep = pt.validate(model, loss, train, test, metric="neg_loss", loss_criterion=False, **FAST)
    assert rep.config["metric"] == "neg_loss"
    assert rep.threshold.baseline == rep.dense["test_metric"] == -pt.evaluate_loss(model, loss, [test])
    for s, value in rep.threshold.points:
        with pt.pruned(model, s):
            assert value == -pt.evaluate_loss(model, loss, [test])
    assert rep.curve["accuracy"] == [-v for v in rep.curve["loss"]]  # the metric's values
    assert "largest sparsity whose test neg_loss is still >=" in rep.summary()


def test_summary_states_the_threshold_rule_plainly(report, data, model):
    line = next(x for x in report.summary().splitlines() if x.startswith("measured"))
    assert f"test accuracy is still >= {report.threshold.baseline:.4f}, the dense model's" in line
    train, test = data
    tol = pt.validate(model, nn.CrossEntropyLoss(), train, test, tolerance=0.01, **FAST)
    b = tol.threshold.baseline
    assert f">= {b - 0.01:.4f} = dense {b:.4f} − tolerance 0.01" in tol.summary()


def test_validate_spread_is_threshold_spread_of_the_trained_model(data, model, tmp_path):
    """spread=True: the report carries pt.threshold_spread of the model under the run's tolerance,
    strictness and resolution (its measured value is the report's threshold), shows it in the
    summary, writes threshold_spread.png and comes back from report.json intact."""
    train, test = data
    rep = pt.validate(model, nn.CrossEntropyLoss(), train, test, spread=True, out=tmp_path, **FAST)
    direct = pt.threshold_spread(model, test, resolution=0.01)
    assert rep.spread.measured == rep.threshold.sparsity == direct.measured
    assert all(pytest.approx(direct.draws[r].tolist()) == rep.spread.draws[r].tolist() for r in direct.draws)
    assert "measurement: over test sets of this size" in rep.summary()
    assert (tmp_path / "threshold_spread.png").is_file() and rep.config["spread"] is True
    back = pt.Report.from_json(tmp_path / "report.json")
    assert back.to_dict() == rep.to_dict() and back.spread.error_floor == rep.spread.error_floor
    with pytest.raises(ValueError, match="spread"):
        pt.validate(model, nn.CrossEntropyLoss(), train, test, spread=True, metric="neg_loss", **FAST)
    with pytest.raises(TypeError, match="spread"):
        pt.validate(model, nn.CrossEntropyLoss(), train, test, spread=1, **FAST)
