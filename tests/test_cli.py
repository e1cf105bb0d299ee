"""The command line: --help everywhere, exit codes, safe configs and checkpoints, --json."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

import phasetrans as pt
from phasetrans.cli import build_parser, load_config, main

SUBCOMMANDS = ("demo", "spectrum", "predict", "sweep", "validate", "plot")
SMALL = ["--num-steps", "4", "--num-probes", "2", "--quiet"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"phasetrans {command}" in out


def test_top_level_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in SUBCOMMANDS)
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--no-such-option"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_python_dash_m_works():
    r = subprocess.run([sys.executable, "-m", "phasetrans", "sweep", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "--sparsities" in r.stdout


def _state_dict_file(tmp_path):
    torch.manual_seed(0)
    model = pt.models.digits_mlp()
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    return model, path


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_checkpoint_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"0.weight": _Evil(marker)}, f)
    code, out, err = run(capsys, "predict", "--checkpoint", str(path), *SMALL)
    assert code == 2
    assert "refused" in err and "weights_only" in err
    assert not marker.exists()
    # torch.save's zip format with a code-running object inside: refused too
    path2 = tmp_path / "evil2.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Evil(marker)}, path2)
    code, _, err = run(capsys, "validate", "--checkpoint", str(path2), *SMALL)
    assert code == 2 and "refused" in err and not marker.exists()


def test_bad_checkpoints_exit_2(tmp_path, capsys):
    code, _, err = run(capsys, "spectrum", "--checkpoint", str(tmp_path / "missing.pt"), *SMALL)
    assert code == 2 and "not found" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert run(capsys, "spectrum", "--checkpoint", str(junk), *SMALL)[0] == 2
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    code, _, err = run(capsys, "spectrum", "--checkpoint", str(wrong), *SMALL)
    assert code == 2 and "does not fit" in err


def test_config_files_are_parsed_safely(tmp_path, capsys):
    good = tmp_path / "run.toml"
    good.write_text('model = "digits_mlp"\nnum_steps = 5\n[model_kwargs]\nhidden = [16]\n')
    assert load_config(good) == {"model": "digits_mlp", "num_steps": 5, "model_kwargs": {"hidden": [16]}}
    cases = {
        "unknown.json": ('{"modle": "x"}', "unknown keys"),
        "type.json": ('{"num_steps": "many"}', "num_steps must be int"),
        "bool.json": ('{"seed": true}', "seed must be int"),
        "broken.json": ('{"seed": ', "could not parse"),
        "list.json": ("[1, 2]", "top level"),
        "run.yaml": ("seed: 1", ".json or .toml"),
    }
    for name, (text, message) in cases.items():
        p = tmp_path / name
        p.write_text(text)
        code, _, err = run(capsys, "spectrum", "--config", str(p), *SMALL)
        assert code == 2, name
        assert message in err, (name, err)
    assert run(capsys, "spectrum", "--config", str(tmp_path / "nope.json"), *SMALL)[0] == 2


def test_spectrum_predict_json_with_config_and_checkpoint(tmp_path, capsys):
    model, path = _state_dict_file(tmp_path)
    before = pt.model_fingerprint(model)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"num_steps": 6, "checkpoint": str(path)}))
    code, out, _ = run(capsys, "spectrum", "--config", str(cfg), "--num-probes", "2", "--json",
                       "--out", str(tmp_path / "o"))
    assert code == 0
    d = json.loads(out)
    assert d["dim"] == 6464 and d["num_steps"] == 6 and d["num_probes"] == 2  # CLI and config merged
    assert (tmp_path / "o" / "spectrum.png").is_file() and (tmp_path / "o" / "spectrum.json").is_file()
    code, out, _ = run(capsys, "predict", "--checkpoint", str(path), "--json", "--eps", "0.05", *SMALL)
    assert code == 0
    d = json.loads(out)
    assert 0 <= d["lower"] <= d["sparsity"] <= d["upper"] <= 1 and d["eps"] == 0.05
    code, out, _ = run(capsys, "predict", "--checkpoint", str(path), *SMALL)
    assert code == 0 and "predicted critical sparsity" in out
    assert pt.fingerprints_equal(before, pt.model_fingerprint(model))


def test_sweep_writes_resumable_jsonl(tmp_path, capsys):
    _, path = _state_dict_file(tmp_path)
    out_dir = tmp_path / "sw"
    argv = ["sweep", "--checkpoint", str(path), "--sparsities", "0,0.5,1", "--out", str(out_dir),
            "--json", "--quiet"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    points = json.loads(out)["points"]
    assert [p[0] for p in points] == [0.0, 0.5, 1.0]
    lines = (out_dir / "sweep.jsonl").read_text().splitlines()
    assert len(lines) == 4
    code, out2, _ = run(capsys, *argv)  # resumed: nothing recomputed, same answer
    assert code == 0 and json.loads(out2)["points"] == points
    assert len((out_dir / "sweep.jsonl").read_text().splitlines()) == 4
    assert run(capsys, "sweep", "--checkpoint", str(path), "--sparsities", "0,2", "--quiet")[0] == 2
    assert run(capsys, "sweep", "--checkpoint", str(path), "--sparsities", "a,b", "--quiet")[0] == 2


def test_validate_needs_trained_weights_and_runs(tmp_path, capsys):
    code, _, err = run(capsys, "validate", *SMALL)
    assert code == 2 and "--checkpoint" in err
    _, path = _state_dict_file(tmp_path)
    out_dir = tmp_path / "val"
    code, out, _ = run(capsys, "validate", "--checkpoint", str(path), "--resolution", "0.05",
                       "--json", "--out", str(out_dir), *SMALL)
    assert code == 0
    d = json.loads(out)
    assert d["command"] == "validate" and "measured_sparsity" in d["summary"]
    assert json.loads((out_dir / "report.json").read_text())["summary"] == d["summary"]
    assert {p.name for p in out_dir.glob("*.png")} == {
        "spectrum.png", "crossing.png", "pruning_curve.png", "layers.png"}


def test_bad_values_exit_2(tmp_path, capsys):
    assert run(capsys, "spectrum", "--model", "nope", *SMALL)[0] == 2
    assert run(capsys, "spectrum", "--data", "nope", *SMALL)[0] == 2
    assert run(capsys, "spectrum", "--data", "mnist", *SMALL)[0] == 2  # needs --data-root
    assert run(capsys, "spectrum", "--data", "mnist", "--data-root", str(tmp_path), *SMALL)[0] == 2
    assert run(capsys, "spectrum", "--seed", "-1", *SMALL)[0] == 2
    assert run(capsys, "spectrum", "--num-steps", "0", "--quiet")[0] == 2
    f = tmp_path / "file"
    f.write_text("x")
    assert run(capsys, "demo", "--out", str(f), "--quiet")[0] == 2


def test_runtime_failure_exits_1(monkeypatch, capsys):
    import sys

    spectral = sys.modules["phasetrans.linalg.slq"]  # the module (phasetrans.linalg.slq is the function)

    def boom(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(spectral, "slq", boom)
    code, _, err = run(capsys, "spectrum", *SMALL)
    assert code == 1 and "out of memory" in err


def test_parser_lists_every_subcommand():
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert set(actions[0].choices) == set(SUBCOMMANDS)


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys):
    code, out, _ = run(capsys, "demo", "--quick", "--json", "--out", str(tmp_path))
    assert code == 0
    d = json.loads(out)
    assert abs(d["predicted_sparsity"] - d["measured_sparsity"]) < 0.1
    assert (tmp_path / "report.json").is_file()
    assert len(list(tmp_path.glob("*.png"))) == 4


@pytest.mark.slow
def test_demo_full_agrees_within_three_points(tmp_path, capsys):
    """The acceptance check: the default demo's prediction and measurement agree within 3 points."""
    code, out, _ = run(capsys, "demo", "--json", "--out", str(tmp_path))
    assert code == 0
    d = json.loads(out)
    assert abs(d["predicted_sparsity"] - d["measured_sparsity"]) <= 0.03
    assert d["window"][0] <= d["measured_sparsity"] <= d["window"][1]


def test_threads_option(capsys):
    assert run(capsys, "spectrum", "--threads", "0", *SMALL)[0] == 2
    before = torch.get_num_threads()
    assert run(capsys, "spectrum", "--threads", "1", *SMALL)[0] == 0
    assert torch.get_num_threads() == before  # restored


def test_package_layout_entry_points():
    """The console script target (pyproject: phasetrans.cli:main) and one cmd_* per subcommand."""
    import importlib

    from phasetrans.cli import commands

    module, _, attr = "phasetrans.cli:main".partition(":")
    assert getattr(importlib.import_module(module), attr) is main
    sub = [a for a in build_parser()._actions if a.dest == "command"][0]
    for name in SUBCOMMANDS:
        assert sub.choices[name].get_default("func") is getattr(commands, f"cmd_{name}")
