"""Saved results read back: ``Report.from_json``, ``Prediction.from_dict`` and
``SpectralDensity.from_dict`` of what ``validate`` and the command line wrote come back equal, and
``phasetrans plot`` redraws the same figure files from them (issue 17)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import digits_tensors, trained_mlp
from torch import nn

import phasetrans as pt
from phasetrans.cli import main


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """validate with every part a report can have (training history, re-fit and loss thresholds,
    SLQ spectrum), written to ``out``."""
    out = tmp_path_factory.mktemp("val")
    Xtr, ytr, Xte, yte = digits_tensors(torch.float64)
    report = pt.validate(trained_mlp(l1=1e-3), nn.CrossEntropyLoss(), [(Xtr[:650], ytr[:650]), (Xtr[650:], ytr[650:])],
                         (Xte, yte), l1=1e-3, epochs=1, num_steps=6, num_probes=2, curve_points=3,
                         resolution=0.02, refit=2, out=out, predict_kwargs={"bootstrap": 0})
    return report, out


def _same_prediction(a, b):
    assert a.to_dict() == b.to_dict()
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "curve":
            for k in ("radius", "phi", "sparsity"):
                np.testing.assert_array_equal(getattr(x, k), getattr(y, k))
        elif f.name == "spectrum" and isinstance(x, tuple):
            for u, v in zip(x, y):
                np.testing.assert_array_equal(np.asarray(u, dtype=float).ravel(), v)
        elif f.name == "spectrum" and not isinstance(x, pt.SpectralDensity) and x is not None:
            np.testing.assert_array_equal(np.asarray(x, dtype=float), y)
        else:
            assert x == y, f.name


def test_report_from_json_equals_what_validate_wrote(saved):
    report, out = saved
    back = pt.Report.from_json(out / "report.json")
    assert back.to_dict() == report.to_dict()
    _same_prediction(back.prediction, report.prediction)
    assert back.prediction.spectrum == report.prediction.spectrum  # exact nodes, weights, dim, lengths
    for name in ("threshold", "refit_threshold", "loss_threshold", "training"):
        assert getattr(back, name) == getattr(report, name), name
    assert back.refit_threshold is not None and back.loss_threshold is not None and back.training is not None
    assert (back.curve, back.layers, back.dense, back.timings, back.config) == \
        (report.curve, report.layers, report.dense, report.timings, report.config)
    assert back.figures == report.figures and back.model is None
    assert back.summary() == report.summary()
    assert pt.Report.from_dict(json.loads(report.to_json())).to_dict() == report.to_dict()


def test_spectral_density_from_what_the_tool_wrote(saved):
    report, out = saved
    spec = report.prediction.spectrum
    d = json.loads((out / "report.json").read_text())["prediction"]
    assert pt.SpectralDensity.from_dict(d["spectrum"]) == spec  # the spectrum inside prediction.json
    assert pt.SpectralDensity.from_dict(d) == spec  # or the whole prediction
    old = {k: v for k, v in d["spectrum"].items() if k not in ("dim", "lengths")}  # written before dim was stored
    assert pt.SpectralDensity.from_dict({**d, "spectrum": old}).dim == spec.dim
    with pytest.raises(ValueError, match="dim"):
        pt.SpectralDensity.from_dict(old)


def test_prediction_from_dict_for_each_kind_of_spectrum():
    rng = torch.Generator().manual_seed(0)
    w = torch.randn(300, generator=rng, dtype=torch.float64)
    eig = torch.rand(300, generator=rng, dtype=torch.float64) * 2 - 0.2
    spec = pt.SpectralDensity(torch.sort(torch.rand(3, 5, generator=rng, dtype=torch.float64) * 2, dim=1).values,
                              torch.softmax(torch.randn(3, 5, generator=rng, dtype=torch.float64), 1), dim=300)
    pair = (np.array([0.1, 0.5, 2.0]), np.array([0.2, 0.3, 0.5]))
    for spectrum in (eig, spec, pair):
        pred = pt.critical_sparsity(w, spectrum, eps=0.05, bootstrap=0)
        back = pt.Prediction.from_dict(json.loads(json.dumps(pred.to_dict())))
        _same_prediction(back, pred)
    cli = {"command": "predict", **pred.to_dict()}  # prediction.json of `phasetrans predict`
    assert pt.Prediction.from_dict(cli).to_dict() == pred.to_dict()
    with pytest.raises(TypeError, match="d must be a dict"):
        pt.Prediction.from_dict([1])
    with pytest.raises(ValueError, match="missing keys"):
        pt.Prediction.from_dict({"sparsity": 0.5})
    with pytest.raises(ValueError, match="curve"):
        pt.Prediction.from_dict({**pred.to_dict(), "curve": {"radius": []}})


def test_report_from_json_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="path"):
        pt.Report.from_json(3)
    with pytest.raises(ValueError, match="path"):
        pt.Report.from_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        pt.Report.from_json(bad)
    with pytest.raises(ValueError, match="missing keys"):
        pt.Report.from_dict({"prediction": {}})
    with pytest.raises(TypeError, match="dict"):
        pt.Report.from_dict("x")


def test_cli_plot_redraws_every_figure_of_a_saved_report(saved, tmp_path, capsys):
    report, out = saved
    assert main(["plot", str(out / "report.json"), "--out", str(tmp_path / "figs"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert sorted(p.rsplit("/", 1)[-1] for p in payload["figures"]) == sorted(p.name for p in report.figures)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(p.name for p in report.figures)
    for p in (tmp_path / "figs").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "x.json").write_text('{"a": 1}')
    assert main(["plot", str(tmp_path / "x.json")]) == 2
    assert "not a saved" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    assert "phasetrans plot out/val/report.json" in capsys.readouterr().out


def test_cli_predict_and_spectrum_files_reload_and_redraw(tmp_path, capsys):
    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    torch.save(pt.models.digits_mlp().state_dict(), weights)
    small = ["--checkpoint", str(weights), "--num-steps", "4", "--num-probes", "2", "--quiet"]
    assert main(["predict", *small, "--eps", "0.05", "--out", str(tmp_path / "p"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    d = json.loads((tmp_path / "p" / "prediction.json").read_text())
    pred = pt.Prediction.from_dict(d)
    # the printed payload adds the one-shot estimate where the paper's s* does not apply
    assert pred.to_dict() == {k: v for k, v in printed.items() if k not in ("command", "oneshot")}
    assert ("oneshot" in printed) == (pred.applies is False)
    assert isinstance(pred.spectrum, pt.SpectralDensity) and pred.spectrum.dim == pred.dim
    assert main(["plot", str(tmp_path / "p" / "prediction.json"), "--out", str(tmp_path / "p2"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "p2").iterdir()) == sorted(
        p.name for p in (tmp_path / "p").iterdir() if p.suffix == ".png")
    assert main(["spectrum", *small, "--out", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    spec = pt.SpectralDensity.from_dict(json.loads((tmp_path / "s" / "spectrum.json").read_text()))
    assert spec.dim == pred.dim
    assert main(["plot", str(tmp_path / "s" / "spectrum.json"), "--quiet"]) == 0  # into the file's folder
    assert (tmp_path / "s" / "spectrum.png").exists()
