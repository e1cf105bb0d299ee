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
    flag = tmp_path / "flag.json"
    flag.write_text('{"spread": true}')
    assert load_config(flag) == {"spread": True}  # the one boolean setting
    cases = {
        "unknown.json": ('{"modle": "x"}', "unknown keys"),
        "type.json": ('{"num_steps": "many"}', "num_steps must be int"),
        "bool.json": ('{"seed": true}', "seed must be int"),
        "spread.json": ('{"spread": 1}', "spread must be bool"),
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


def test_predict_default_budget_is_adaptive_and_resumable(tmp_path, capsys):
    """Without --num-steps/--num-probes the CLI's prediction is predict_sparsity's adaptive
    budget (its record in the JSON, fewer products than 80 x 10), also with --checkpoint-dir,
    which writes the grown SLQ's state and answers from it on a rerun, to the same result."""
    _, path = _state_dict_file(tmp_path)
    base = ["predict", "--checkpoint", str(path), "--json", "--eps", "0.05", "--quiet"]
    code, out, _ = run(capsys, *base)
    assert code == 0
    d = json.loads(out)
    budget = d["details"]["budget"]
    assert d["products"] == budget["products"] < 800 and budget["num_probes"] >= 2
    for _ in range(2):  # the second run resumes from the finished checkpoint
        code, out, _ = run(capsys, *base, "--checkpoint-dir", str(tmp_path / "ck"))
        assert code == 0
        r = json.loads(out)
        assert r["details"]["budget"] == budget and r["sparsity"] == d["sparsity"]
        assert (tmp_path / "ck" / "slq.pt").is_file()
    code, out, _ = run(capsys, *base, "--num-probes", "2", "--num-steps", "20",
                       "--checkpoint-dir", str(tmp_path / "ck2"))
    assert code == 0 and json.loads(out)["products"] == 20 * 2


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
    assert run(capsys, "spectrum", "--model", "nope", "--random-init", *SMALL)[0] == 2
    assert run(capsys, "spectrum", "--data", "nope", "--random-init", *SMALL)[0] == 2
    assert run(capsys, "spectrum", "--data", "mnist", "--random-init", *SMALL)[0] == 2  # needs --data-root
    assert run(capsys, "spectrum", "--data", "mnist", "--data-root", str(tmp_path), "--random-init", *SMALL)[0] == 2
    assert run(capsys, "spectrum", "--seed", "-1", "--random-init", *SMALL)[0] == 2
    assert run(capsys, "spectrum", "--num-steps", "0", "--random-init", "--quiet")[0] == 2
    f = tmp_path / "file"
    f.write_text("x")
    assert run(capsys, "demo", "--out", str(f), "--quiet")[0] == 2


def test_runtime_failure_exits_1(monkeypatch, capsys):
    import sys

    spectral = sys.modules["phasetrans.linalg.slq"]  # the module (phasetrans.linalg.slq is the function)

    def boom(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(spectral, "slq", boom)
    code, _, err = run(capsys, "spectrum", "--random-init", *SMALL)
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
    assert len(list(tmp_path.glob("*.png"))) == 5  # with the measurement's spread
    spread = d["report"]["spread"]
    assert spread["measured"] == d["measured_sparsity"] and spread["error_floor"]["find_threshold"] < 0.05


@pytest.mark.slow
def test_demo_full_agrees_within_three_points(tmp_path, capsys):
    """The acceptance check: the default demo's prediction and measurement agree within 3 points."""
    code, out, _ = run(capsys, "demo", "--json", "--out", str(tmp_path))
    assert code == 0
    d = json.loads(out)
    assert abs(d["predicted_sparsity"] - d["measured_sparsity"]) <= 0.03
    assert d["window"][0] <= d["measured_sparsity"] <= d["window"][1]


def test_threads_option(capsys):
    assert run(capsys, "spectrum", "--threads", "0", "--random-init", *SMALL)[0] == 2
    before = torch.get_num_threads()
    assert run(capsys, "spectrum", "--threads", "1", "--random-init", *SMALL)[0] == 0
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


# --- issue 16: no trained weights, stale sweep logs, outputs checked first, bounds, SIGTERM ----
@pytest.mark.parametrize("command", ["spectrum", "predict", "sweep"])
def test_commands_need_trained_weights_or_an_explicit_random_init(command, tmp_path, capsys):
    small = ["--quiet"] if command == "sweep" else SMALL
    code, out, err = run(capsys, command, *small)
    assert code == 2 and out == ""
    assert "no trained weights" in err and "--checkpoint" in err and "--random-init" in err
    _, path = _state_dict_file(tmp_path)
    code, _, err = run(capsys, command, "--checkpoint", str(path), "--random-init", *small)
    assert code == 2 and "exclude each other" in err


def test_random_init_is_an_explicit_opt_in(capsys):
    code, out, _ = run(capsys, "spectrum", "--random-init", "--json", *SMALL)
    assert code == 0 and json.loads(out)["dim"] == 6464
    code, _, _ = run(capsys, "sweep", "--random-init", "--sparsities", "0,1", "--quiet")
    assert code == 0


def test_sweep_rerun_on_another_run_is_refused_not_answered_from_the_old_log(tmp_path, capsys):
    _, path = _state_dict_file(tmp_path)
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    torch.save(pt.models.digits_mlp().state_dict(), other)
    out_dir = tmp_path / "sw"
    base = ["sweep", "--sparsities", "0,0.5,0.9", "--out", str(out_dir), "--json", "--quiet"]
    code, out, _ = run(capsys, *base, "--checkpoint", str(path))
    assert code == 0
    points = json.loads(out)["points"]
    log = (out_dir / "sweep.jsonl").read_bytes()
    cases = {
        "another checkpoint": (["--checkpoint", str(other)], "metadata.weights_sha256"),
        "another seed": (["--checkpoint", str(path), "--seed", "3"], "metadata.seed"),
        "another batch size": (["--checkpoint", str(path), "--batch-size", "64"], "metadata.batch_size"),
    }
    for name, (extra, differs) in cases.items():
        code, out, err = run(capsys, *base, *extra)
        assert code == 2 and out == "", name
        assert differs in err and "delete" in err and "--out" in err, (name, err)
        assert (out_dir / "sweep.jsonl").read_bytes() == log, name
    code, out, _ = run(capsys, *base, "--checkpoint", str(path))  # the same run: resumed
    assert code == 0 and json.loads(out)["points"] == points


def _count_calls(monkeypatch, module: str, name: str) -> list:
    import sys

    calls = []

    def fake(*a, **k):
        calls.append(1)
        raise RuntimeError("computed")

    monkeypatch.setattr(sys.modules[module], name, fake)
    return calls


OUT_CASES = {  # command, extra arguments, (module, function) that computes, a file it writes
    "spectrum": ([], ("phasetrans.linalg.slq", "slq"), "spectrum.json"),
    "predict": (["--eps", "0.1"], ("phasetrans.predict", "predict_sparsity"), "crossing.png"),
    "sweep": (["--sparsities", "0,1"], ("phasetrans.prune.sweep", "sweep"), "sweep.jsonl"),
    "validate": ([], ("phasetrans.report.validate", "validate"), "report.json"),
    "demo": ([], ("phasetrans.report.validate", "validate"), "layers.png"),
}


@pytest.mark.parametrize("command", sorted(OUT_CASES))
def test_unusable_out_fails_before_computing(command, tmp_path, monkeypatch, capsys):
    import phasetrans.predict  # noqa: F401 - the module whose function is replaced
    import phasetrans.report.validate  # noqa: F401

    extra, (module, name), target = OUT_CASES[command]
    calls = _count_calls(monkeypatch, module, name)
    weights = [] if command == "demo" else ["--checkpoint", str(_state_dict_file(tmp_path)[1])]
    argv = [command, *weights, *extra, "--quiet"]
    folder = tmp_path / "o"
    (folder / target).mkdir(parents=True)  # the output file's name taken by a folder
    code, _, err = run(capsys, *argv, "--out", str(folder))
    assert code == 2 and target in err and "is a directory" in err, err
    file = tmp_path / "f"
    file.write_text("x")
    code, _, err = run(capsys, *argv, "--out", str(file))
    assert code == 2 and "must be a directory" in err
    if os.path.isdir("/proc/self"):  # a directory nobody can write to, root included
        code, _, err = run(capsys, *argv, "--out", "/proc/self")
        assert code == 2 and "cannot write" in err, err
    assert calls == []  # refused before any work


def test_validate_out_a_file_raises_up_front(tmp_path, monkeypatch):
    import sys

    v = sys.modules["phasetrans.report.validate"]
    calls = _count_calls(monkeypatch, "phasetrans.report.validate", "_dense_eval")
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    file = tmp_path / "report"
    file.write_text("x")
    with pytest.raises(ValueError, match="out must be a directory"):
        pt.validate(model, torch.nn.CrossEntropyLoss(), data, data, out=file)
    (tmp_path / "o" / "report.json").mkdir(parents=True)
    with pytest.raises(ValueError, match="report.json"):
        v.validate(model, torch.nn.CrossEntropyLoss(), data, data, out=tmp_path / "o")
    assert calls == [] and file.read_text() == "x"


def test_requests_out_of_bounds_exit_2(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text('{"model_kwargs": ' + '{"a": ' * 50000 + "1" + "}" * 50001)
    bools = tmp_path / "bools.json"
    bools.write_text('{"sparsities": [true, 0.5]}')
    big = tmp_path / "big.json"
    big.write_text('{"model": "' + "x" * (1 << 20) + '"}')
    cases = [
        (["sweep", "--num-points", str(10**12)], "--num-points"),
        (["spectrum", "--threads", "100000"], "--threads"),
        (["spectrum", "--num-probes", str(10**9)], "--num-probes"),
        (["spectrum", "--num-steps", str(10**9)], "--num-steps"),
        (["spectrum", "--hessian-batch-size", "0"], "--hessian-batch-size"),
        (["spectrum", "--batch-size", "0"], "--batch-size"),
        (["spectrum", "--seed", str(2**64)], "--seed"),
        (["spectrum", "--config", str(deep)], "nested too deeply"),
        (["sweep", "--config", str(bools)], "not booleans"),
        (["sweep", "--sparsities", ",".join(["0.5"] * 100001)], "at most"),
        (["spectrum", "--config", str(big)], "larger than"),
        (["predict", "--epochs", "0", "--l1", "0.001"], "--epochs"),
        (["sweep", "--epochs", str(10**7)], "--epochs"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, *argv, "--random-init", "--quiet")
        assert code == 2 and out == "" and message in err, (argv[:2], err)
    code, _, err = run(capsys, "demo", "--seed", str(2**64), "--quiet")
    assert code == 2 and "--seed" in err


def test_config_and_checkpoint_fifos_are_refused(tmp_path, capsys):
    fifo = tmp_path / "c.json"
    os.mkfifo(fifo)
    code, _, err = run(capsys, "spectrum", "--config", str(fifo), "--random-init", *SMALL)
    assert code == 2 and "FIFO" in err
    code, _, err = run(capsys, "spectrum", "--checkpoint", str(fifo), *SMALL)
    assert code == 2 and "FIFO" in err


def test_sigterm_in_process_exits_143_and_says_so(monkeypatch, capsys):
    import signal
    import sys

    def terminated(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(sys.modules["phasetrans.linalg.slq"], "slq", terminated)
    previous = signal.getsignal(signal.SIGTERM)
    code, out, err = run(capsys, "spectrum", "--random-init", *SMALL)
    assert code == 143 and out == ""
    assert "terminated (SIGTERM)" in err and "nothing was kept" in err
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back


def test_sigterm_subprocess_keeps_the_sweep_log_and_exits_143(tmp_path):
    import signal
    import time

    _, path = _state_dict_file(tmp_path)
    out_dir = tmp_path / "sw"
    log = out_dir / "sweep.jsonl"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "phasetrans", "sweep", "--checkpoint", str(path), "--num-points",
            "2001", "--out", str(out_dir), "--quiet"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    t0 = time.monotonic()
    while not (log.is_file() and len(log.read_bytes().splitlines()) >= 4):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < 180, "the sweep did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and str(log) in err and "rerun the same command" in err
    lines = log.read_text().splitlines()
    assert 4 <= len(lines) < 2002 and all(json.loads(line) for line in lines)  # no torn line
