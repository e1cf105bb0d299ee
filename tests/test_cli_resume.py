"""Issue 17: ``--checkpoint-dir`` makes the long commands (spectrum, predict, validate) resumable.
A run killed (SIGKILL) after its first checkpoint, run again with the same options, ends with
exactly the result of an uninterrupted run; and ``--quiet`` / progress on the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from phasetrans.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_cli_kill_worker.py")
SMALL = ["--num-steps", "14", "--num-probes", "2", "--threads", "1", "--json"]


def _json(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _killed(which, *argv):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, WORKER, which, *argv], capture_output=True, text=True,
                       timeout=600, env=env, cwd=ROOT)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)


def _without_timings(d):
    if isinstance(d, dict):
        return {k: _without_timings(v) for k, v in d.items() if k not in ("timings", "seconds")}
    if isinstance(d, list):
        return [_without_timings(v) for v in d]
    return d


def test_spectrum_resumes_after_a_kill(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    plain = _json(capsys, "spectrum", "--random-init", *SMALL)
    _killed("slq", "spectrum", "--random-init", "--checkpoint-dir", str(ckpt), *SMALL)
    state = torch.load(ckpt / "slq.pt", weights_only=True)["state"]
    assert 0 < int(state["steps"]) < 14  # killed midway: the checkpoint of step 10
    resumed = _json(capsys, "spectrum", "--random-init", "--checkpoint-dir", str(ckpt), *SMALL)
    assert _without_timings(resumed) == _without_timings(plain)


def test_predict_resumes_training_and_slq(tmp_path, capsys):
    args = ["predict", "--l1", "1e-3", "--epochs", "3", "--eps", "0.05", *SMALL]
    plain = _json(capsys, *args)
    ckpt = tmp_path / "ckpt"
    _killed("train", *args, "--checkpoint-dir", str(ckpt))
    assert (ckpt / "train.pt").is_file() and not (ckpt / "slq.pt").exists()
    _killed("slq", *args, "--checkpoint-dir", str(ckpt))  # training resumed, killed in SLQ
    resumed = _json(capsys, *args, "--checkpoint-dir", str(ckpt))
    assert _without_timings(resumed) == _without_timings(plain)


@pytest.mark.slow
def test_validate_resumes(tmp_path, capsys):
    args = ["validate", "--l1", "1e-3", "--epochs", "2", "--eps", "0.05", *SMALL]
    ckpt = tmp_path / "ckpt"
    plain = _json(capsys, *args, "--checkpoint-dir", str(tmp_path / "other"))
    _killed("slq", *args, "--checkpoint-dir", str(ckpt))
    resumed = _json(capsys, *args, "--checkpoint-dir", str(ckpt))
    for key in ("summary", "prediction", "threshold", "curve", "layers", "training"):
        assert _without_timings(resumed[key]) == _without_timings(plain[key]), key


def test_checkpoint_dir_must_be_a_directory(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code = main(["spectrum", "--random-init", "--checkpoint-dir", str(f), *SMALL])
    assert code == 2 and "--checkpoint-dir" in capsys.readouterr().err


def test_a_checkpoint_of_other_settings_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    _json(capsys, "spectrum", "--random-init", "--checkpoint-dir", str(ckpt), *SMALL)
    code = main(["spectrum", "--random-init", "--checkpoint-dir", str(ckpt), "--seed", "3", *SMALL])
    assert code == 2 and "checkpoint" in capsys.readouterr().err


def test_quiet_and_progress_on_stderr(capsys, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    args = ["spectrum", "--random-init", "--num-steps", "4", "--num-probes", "2", "--threads", "1"]
    assert main(args) == 0
    assert "slq" not in capsys.readouterr().err  # stderr is no terminal: no bar
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(args) == 0
    assert "slq" in terminal.getvalue()
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*args, "--quiet"]) == 0
    assert terminal.getvalue() == ""
