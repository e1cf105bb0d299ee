"""Issue 17: progress bars of the long computations (``progress=None`` shows them only when
standard error is a terminal; ``True``/``False`` as before) and thread settings that do not
collapse on a busy machine (``pt.set_threads``, the command line's passive OpenMP wait policy)."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import phasetrans as pt
from phasetrans._progress import resolve_progress
from phasetrans._threads import auto_threads, is_cli_process, prepare_cli_environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    return model, nn.CrossEntropyLoss(), [(X[i : i + 20], y[i : i + 20]) for i in range(0, 60, 20)]


def _record_bars(monkeypatch, module):
    """The bars ``module`` makes (tqdm redraws at most every 0.1 s and erases a finished bar,
    so the final count is read from the bar itself)."""
    bars, real = [], module.progress_bar

    def make(*args, **kwargs):
        bars.append(real(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(module, "progress_bar", make)
    return bars


class _Terminal(io.StringIO):
    def isatty(self):
        return True


# -- progress ---------------------------------------------------------------------------------
def test_resolve_progress(monkeypatch):
    assert resolve_progress(True) is True and resolve_progress(False) is False
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert resolve_progress(None) is False  # a pipe, a log file, CI
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert resolve_progress(None) is True
    with pytest.raises(TypeError, match="progress"):
        resolve_progress(1)


def test_slq_and_trace_bars_change_nothing(capsys, monkeypatch):
    bars = _record_bars(monkeypatch, importlib.import_module("phasetrans.linalg.slq"))
    model, loss, data = _problem()
    H = pt.HessianOperator(model, loss, data)
    quiet = pt.slq(H, num_steps=6, num_probes=3, seed=1)
    assert capsys.readouterr().err == ""  # progress=None, stderr is not a terminal
    loud = pt.slq(H, num_steps=6, num_probes=3, seed=1, progress=True)
    assert "slq" in capsys.readouterr().err
    assert (bars[-1].n, bars[-1].total) == (6, 6)
    assert torch.equal(quiet.nodes, loud.nodes) and torch.equal(quiet.weights, loud.weights)
    for method in ("hutchinson", "hutch++", "xtrace"):
        a = pt.trace(H, method=method, num_matvecs=12, seed=2)
        b = pt.trace(H, method=method, num_matvecs=12, seed=2, progress=True)
        assert a == b
        assert f"trace ({method})" in capsys.readouterr().err


def test_slq_bar_counts_groups_and_resumed_steps(tmp_path, monkeypatch):
    bars = _record_bars(monkeypatch, importlib.import_module("phasetrans.linalg.slq"))
    H = torch.diag(torch.arange(1.0, 41.0, dtype=torch.float64))
    # two probes a group (the basis budget) -> 3 groups of 5 steps: 15 steps in all
    pt.slq(H, num_steps=5, num_probes=5, basis_bytes=2 * 5 * 40 * 8, progress=True)
    assert (bars[-1].n, bars[-1].total) == (15, 15)
    path = tmp_path / "s.pt"
    pt.slq(H, num_steps=5, num_probes=5, basis_bytes=2 * 5 * 40 * 8, checkpoint=path)
    pt.slq(H, num_steps=5, num_probes=5, basis_bytes=2 * 5 * 40 * 8, checkpoint=path, progress=True)
    assert (bars[-1].n, bars[-1].total) == (15, 15)  # a finished checkpoint: all steps done


def test_library_defaults_are_quiet_and_true_shows_bars(capsys):
    model, loss, data = _problem()
    pt.train_l1(model, loss, data, l1=1e-3, epochs=2, lr=0.05)
    pt.sweep(model, lambda m: pt.evaluate_accuracy(m, data), [0.0, 0.5])
    pt.find_threshold(model, lambda m: pt.evaluate_accuracy(m, data))
    pt.pruning_curve(model, [0.0, 0.5], data)
    assert capsys.readouterr().err == ""
    pt.train_l1(model, loss, data, l1=1e-3, epochs=2, lr=0.05, progress=True)
    assert "train_l1" in capsys.readouterr().err
    pt.sweep(model, lambda m: pt.evaluate_accuracy(m, data), [0.0, 0.5], progress=True)
    assert "sweep" in capsys.readouterr().err
    t1 = pt.find_threshold(model, lambda m: pt.evaluate_accuracy(m, data))
    t2 = pt.find_threshold(model, lambda m: pt.evaluate_accuracy(m, data), progress=True)
    assert "threshold" in capsys.readouterr().err and t1 == t2
    pt.pruning_curve(model, [0.0, 0.5], data, progress=True)
    assert "curve" in capsys.readouterr().err


def test_predict_and_validate_progress(capsys):
    model, loss, data = _problem()
    kw = dict(eps=0.05, num_steps=5, num_probes=2, trace_method="hutch++", trace_matvecs=8, bootstrap=0)
    a = pt.predict_sparsity(model, loss, data, **kw)
    assert capsys.readouterr().err == ""
    b = pt.predict_sparsity(model, loss, data, progress=True, **kw)
    err = capsys.readouterr().err
    assert "slq" in err and "trace (hutch++)" in err
    assert a.sparsity == b.sparsity and a.trace == b.trace
    pt.validate(model, loss, data, data, eps=0.05, num_steps=5, num_probes=2, curve_points=3,
                predict_kwargs={"bootstrap": 0}, progress=True)
    err = capsys.readouterr().err
    assert all(name in err for name in ("slq", "threshold", "curve"))


def test_predict_sparsity_checkpoint_resumes_slq(tmp_path):
    model, loss, data = _problem()
    kw = dict(eps=0.05, num_steps=6, num_probes=2, bootstrap=0, trace_method=None)
    plain = pt.predict_sparsity(model, loss, data, **kw)
    path = tmp_path / "slq.pt"
    first = pt.predict_sparsity(model, loss, data, checkpoint=path, **kw)
    assert path.is_file()
    again = pt.predict_sparsity(model, loss, data, checkpoint=path, **kw)  # read back
    for p in (first, again):
        assert p.sparsity == plain.sparsity
        assert torch.equal(p.spectrum.nodes, plain.spectrum.nodes)


# -- threads ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cpus, load, expected", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 6.75, 1), (16, 3.2, 13), (8, 0.0, 8), (1, 9.0, 1),
])
def test_auto_threads(cpus, load, expected):
    assert auto_threads(cpus, load) == expected


def test_auto_threads_bad_input():
    with pytest.raises(ValueError, match="cpus"):
        auto_threads(0, 0.0)
    with pytest.raises(ValueError, match="load"):
        auto_threads(2, float("nan"))
    assert 1 <= auto_threads() <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                   else os.cpu_count())


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert pt.set_threads(1) == before and torch.get_num_threads() == 1
        assert pt.set_threads("auto") == 1
        assert torch.get_num_threads() == auto_threads() or torch.get_num_threads() >= 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("argv, expected", [
    (["/venv/bin/python3", "/venv/bin/phasetrans", "spectrum"], True),
    (["python", "-m", "phasetrans", "demo"], True),
    (["python", "-X", "dev", "-m", "phasetrans"], True),
    (["python", "-m", "pytest", "-q"], False),
    (["python", "-c", "import phasetrans"], False),
    (["python", "script.py", "-m", "phasetrans"], False),
    (["python"], False),
    (["/usr/bin/phasetrans", "demo"], True),
])
def test_is_cli_process(argv, expected):
    assert is_cli_process(argv) is expected


def test_prepare_cli_environment_respects_the_user():
    env = {}
    prepare_cli_environment(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    prepare_cli_environment(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"


def _child(code: str, env_extra: dict | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(env_extra or {})
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_command_sets_passive_wait_before_torch_and_the_library_does_not():
    probe = ("import os, sys; {setup}import phasetrans; "
             "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    # a library import changes no global setting
    assert _child(probe.format(setup="")) == "None True"
    # the command (as `python -m phasetrans` shows itself in sys.orig_argv): set before torch
    as_cli = "sys.orig_argv = [sys.executable, '-m', 'phasetrans']; assert 'torch' not in sys.modules; "
    assert _child(probe.format(setup=as_cli)) == "PASSIVE True"
    assert _child(probe.format(setup=as_cli), {"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE True"
