"""Checkpoint and resume of long runs: kill -9 midway, resume, get the uninterrupted result bit for
bit (slq nodes/weights, trained weights, sweep curves); atomic writes; untrusted checkpoint files."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import phasetrans as pt
from phasetrans import _io
from phasetrans._checks import fingerprints_equal, model_fingerprint

sys.path.insert(0, str(Path(__file__).parent))
import _resume_worker as W  # noqa: E402

WORKER = str(Path(__file__).with_name("_resume_worker.py"))
ROOT = str(Path(__file__).resolve().parents[1])


def _spawn(job: str, path: Path, delay: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, WORKER, job, str(path), str(delay)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 90.0) -> None:
    """Poll ``ready()`` and SIGKILL the worker as soon as it is true (fail if it ends first)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"worker ended before it was killed (rc {proc.returncode}): {err.decode()[-2000:]}")
        try:
            if ready():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                return
        except (ValueError, OSError):  # pragma: no cover - file appearing mid-poll
            pass
        time.sleep(0.02)
    proc.kill()
    pytest.fail("worker did not reach the kill point in time")


def _slq_steps(path: Path) -> int:
    if not path.exists():
        return -1
    return int(_io.safe_torch_load(path)["state"]["steps"])


def _train_epoch(path: Path) -> int:
    if not path.exists():
        return -1
    return int(_io.safe_torch_load(path)["epoch"])


def _same_density(a: pt.SpectralDensity, b: pt.SpectralDensity) -> bool:
    return a == b  # torch.equal on nodes, weights and lengths: bit for bit


# --- slq ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_slq_kill9_and_resume_is_bit_identical(tmp_path):
    reference = pt.slq(W.problem_slq(), **{k: v for k, v in W.SLQ_ARGS.items() if k != "checkpoint_every"})
    path = tmp_path / "slq.pt"
    proc = _spawn("slq", path, delay=0.1)
    _kill_when(proc, lambda: 8 <= _slq_steps(path) < W.SLQ_ARGS["num_steps"])
    killed_at = _slq_steps(path)
    assert 8 <= killed_at < W.SLQ_ARGS["num_steps"]
    print(f"slq: SIGKILL with the checkpoint at Lanczos step {killed_at}/{W.SLQ_ARGS['num_steps']}")
    assert not [p for p in tmp_path.iterdir() if p.name != "slq.pt" and not p.name.endswith(".tmp")]

    H = W.problem_slq()
    calls = []
    inner = H._matmat
    H._matmat = lambda V: (calls.append(1), inner(V))[1]
    resumed = pt.slq(H, checkpoint=path, **W.SLQ_ARGS)
    assert _same_density(resumed, reference)
    assert len(calls) == W.SLQ_ARGS["num_steps"] - killed_at  # no step recomputed
    # the finished checkpoint answers again without any product
    calls.clear()
    assert _same_density(pt.slq(H, checkpoint=path, **W.SLQ_ARGS), reference) and not calls


@pytest.mark.parametrize("reorth", ["full", "none"])
def test_slq_interrupt_and_resume_in_process(tmp_path, reorth):
    """A KeyboardInterrupt-like failure after step 7, then resume: identical to one run."""
    args = dict(num_steps=25, num_probes=2, seed=1, reorth=reorth)
    reference = pt.slq(W.problem_slq(), **args)
    path = tmp_path / "c.pt"
    H = W.problem_slq()
    inner, count = H._matmat, [0]

    def flaky(V):
        count[0] += 1
        if count[0] == 8:
            raise KeyboardInterrupt
        return inner(V)

    H._matmat = flaky
    with pytest.raises(KeyboardInterrupt):
        pt.slq(H, checkpoint=path, checkpoint_every=3, **args)
    assert _slq_steps(path) == 6
    assert _same_density(pt.slq(W.problem_slq(), checkpoint=path, checkpoint_every=3, **args), reference)


@pytest.mark.parametrize("reorth", ["full", "partial"])
def test_slq_probe_groups_interrupt_and_resume(tmp_path, reorth):
    """Probes in groups (basis_bytes fits 2 of 5): interrupted in the second group, resumed
    from the checkpoint, identical to one grouped run; grouped vs all in lock-step to 1e-12."""
    steps = 25
    per_probe = steps * 256 * 8
    args = dict(num_steps=steps, num_probes=5, seed=2, reorth=reorth, basis_bytes=2 * per_probe + 7)
    reference = pt.slq(W.problem_slq(), **args)
    lockstep = pt.slq(W.problem_slq(), **{**args, "basis_bytes": None})
    assert torch.allclose(reference.nodes, lockstep.nodes, rtol=0, atol=1e-12 * lockstep.nodes.abs().max())
    assert torch.allclose(reference.weights, lockstep.weights, rtol=0, atol=1e-10)
    path = tmp_path / "c.pt"
    H = W.problem_slq()
    inner, count = H._matmat, [0]

    def flaky(V):
        count[0] += 1
        if count[0] == steps + 8:  # 8th product of the second group (probes 2, 3)
            raise KeyboardInterrupt
        assert V.shape[1] <= 2
        return inner(V)

    H._matmat = flaky
    with pytest.raises(KeyboardInterrupt):
        pt.slq(H, checkpoint=path, checkpoint_every=3, **args)
    saved = _io.safe_torch_load(path)["state"]
    assert saved["steps"] == 6 and saved["group_start"] == 2
    resumed = pt.slq(W.problem_slq(), checkpoint=path, checkpoint_every=3, **args)
    assert _same_density(resumed, reference)
    with pytest.raises(ValueError, match="probe_group"):  # another grouping is another run
        pt.slq(W.problem_slq(), checkpoint=path, **{**args, "basis_bytes": 3 * per_probe})


def test_slq_checkpoint_argument_mismatch(tmp_path):
    path = tmp_path / "c.pt"
    H = W.problem_slq()
    pt.slq(H, num_steps=6, num_probes=2, seed=0, checkpoint=path)
    for bad in (dict(num_steps=7, num_probes=2, seed=0), dict(num_steps=6, num_probes=3, seed=0),
                dict(num_steps=6, num_probes=2, seed=1),
                dict(num_steps=6, num_probes=2, seed=0, reorth="none")):
        with pytest.raises(ValueError, match="checkpoint.*different arguments"):
            pt.slq(H, checkpoint=path, **bad)
    # another operator (other weights) with the same arguments
    H2 = W.problem_slq()
    with torch.no_grad():
        H2.model[0].weight[0, 0] += 1.0
    with pytest.raises(ValueError, match="operator"):
        pt.slq(H2, num_steps=6, num_probes=2, seed=0, checkpoint=path)
    # a dense matrix of another size
    with pytest.raises(ValueError, match="dim"):
        pt.slq(torch.eye(5, dtype=torch.float64), num_steps=6, num_probes=2, seed=0, checkpoint=path)
    # not a checkpoint at all
    other = tmp_path / "other.pt"
    torch.save({"a": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a phasetrans slq checkpoint"):
        pt.slq(H, num_steps=6, num_probes=2, checkpoint=other)
    with pytest.raises(TypeError, match="checkpoint"):
        pt.slq(H, num_steps=6, checkpoint=3)
    with pytest.raises(ValueError, match="checkpoint_every"):
        pt.slq(H, num_steps=6, checkpoint=path, checkpoint_every=0)
    with pytest.raises(ValueError, match="checkpoint"):
        pt.slq(H, num_steps=6, checkpoint=tmp_path)  # a directory


def test_slq_dense_checkpoint_roundtrip(tmp_path):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(30, 30, generator=g, dtype=torch.float64)
    A = A + A.T
    ref = pt.slq(A, num_steps=12, num_probes=3)
    path = tmp_path / "d.pt"
    assert pt.slq(A, num_steps=12, num_probes=3, checkpoint=path, checkpoint_every=5) == ref
    assert pt.slq(A, num_steps=12, num_probes=3, checkpoint=path) == ref
    with pytest.raises(ValueError, match="operator"):
        pt.slq(A + torch.eye(30, dtype=torch.float64), num_steps=12, num_probes=3, checkpoint=path)


# --- train_l1 -------------------------------------------------------------------------------
def _train(checkpoint=None, eval_fn=None):
    model, loss_fn, loader, kwargs = W.problem_train()
    hist = pt.train_l1(model, loss_fn, loader, checkpoint=checkpoint, eval_fn=eval_fn, **kwargs)
    return model, hist


@pytest.mark.slow
def test_train_l1_kill9_and_resume_is_bit_identical(tmp_path):
    ref_model, ref_hist = _train(eval_fn=lambda m: 0.0)
    path = tmp_path / "train.pt"
    proc = _spawn("train", path, delay=0.4)
    _kill_when(proc, lambda: 2 <= _train_epoch(path) < 6)
    killed_at = _train_epoch(path)
    assert 2 <= killed_at < 6
    print(f"train_l1: SIGKILL with the checkpoint at epoch {killed_at}/6")
    model, hist = _train(checkpoint=path, eval_fn=lambda m: 0.0)
    assert fingerprints_equal(model_fingerprint(model), model_fingerprint(ref_model))
    assert hist.to_dict() == ref_hist.to_dict()


def test_train_l1_interrupt_and_resume_in_process(tmp_path):
    ref_model, ref_hist = _train(eval_fn=lambda m: 1.0)
    path = tmp_path / "t.pt"
    calls = [0]

    def interrupting(m):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return 1.0

    with pytest.raises(KeyboardInterrupt):
        _train(checkpoint=path, eval_fn=interrupting)
    assert _train_epoch(path) == 2
    model, hist = _train(checkpoint=path, eval_fn=lambda m: 1.0)
    assert fingerprints_equal(model_fingerprint(model), model_fingerprint(ref_model))
    assert hist.to_dict() == ref_hist.to_dict()
    # the finished checkpoint: a rerun trains nothing and returns the same weights and history
    model2, hist2 = _train(checkpoint=path, eval_fn=lambda m: pytest.fail("no epoch should run"))
    assert fingerprints_equal(model_fingerprint(model2), model_fingerprint(ref_model))
    assert hist2.to_dict() == ref_hist.to_dict()


def test_train_l1_checkpoint_mismatch(tmp_path):
    path = tmp_path / "t.pt"
    model, loss_fn, loader, kwargs = W.problem_train()
    pt.train_l1(model, loss_fn, loader, checkpoint=path, **{**kwargs, "epochs": 1})
    model, loss_fn, loader, kwargs = W.problem_train()
    with pytest.raises(ValueError, match="different arguments.*epochs"):
        pt.train_l1(model, loss_fn, loader, checkpoint=path, **kwargs)
    with pytest.raises(ValueError, match="different arguments.*lr"):
        pt.train_l1(model, loss_fn, loader, checkpoint=path, **{**kwargs, "epochs": 1, "lr": 0.1})
    with torch.no_grad():
        model[0].weight[0, 0] += 1
    with pytest.raises(ValueError, match="different model weights"):
        pt.train_l1(model, loss_fn, loader, checkpoint=path, **{**kwargs, "epochs": 1})
    with pytest.raises(TypeError, match="eval_fn must return plain values"):
        m, lf, ld, kw = W.problem_train()
        pt.train_l1(m, lf, ld, checkpoint=tmp_path / "u.pt", eval_fn=lambda m: object(),
                    **{**kw, "epochs": 1})


# --- sweep ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_kill9_and_resume(tmp_path):
    model, evaluate = W.problem_sweep()
    reference = pt.sweep(model, evaluate, W.SWEEP_GRID)
    path = tmp_path / "sweep.jsonl"

    def lines():
        return path.read_bytes().count(b"\n") if path.exists() else 0

    proc = _spawn("sweep", path, delay=0.15)
    _kill_when(proc, lambda: lines() >= 6)
    done_before = lines() - 1
    assert 5 <= done_before < len(W.SWEEP_GRID)
    print(f"sweep: SIGKILL with {done_before}/{len(W.SWEEP_GRID)} points written")
    calls = []
    model, evaluate = W.problem_sweep()
    resumed = pt.sweep(model, lambda m: (calls.append(1), evaluate(m))[1], W.SWEEP_GRID, path=path)
    assert resumed == reference
    assert len(calls) == len(W.SWEEP_GRID) - done_before
    # a torn last line (a write cut by the kill) is dropped and recomputed
    with open(path, "ab") as f:
        f.write(b'{"index": 3, "spars')
    assert pt.sweep(model, evaluate, W.SWEEP_GRID, path=path) == reference
    assert all(json.loads(line) for line in path.read_text().splitlines())


# --- atomic writes and untrusted files ------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def _evil_file(path: Path, payload=None) -> Path:
    with open(path, "wb") as f:
        pickle.dump(payload if payload is not None else {"state": _Evil()}, f)
    return path


def test_checkpoints_refuse_code_running_pickles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = _evil_file(tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refused to load"):
        _io.safe_torch_load(evil)
    with pytest.raises(ValueError, match="refused to load"):
        pt.slq(W.problem_slq(), num_steps=3, num_probes=1, checkpoint=evil)
    model, loss_fn, loader, kwargs = W.problem_train()
    before = model_fingerprint(model)
    with pytest.raises(ValueError, match="refused to load"):
        pt.train_l1(model, loss_fn, loader, checkpoint=evil, **kwargs)
    assert fingerprints_equal(before, model_fingerprint(model))
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="checkpoint"):
        _io.safe_torch_load(corrupt)


def test_cli_refuses_code_running_checkpoint(tmp_path):
    evil = _evil_file(tmp_path / "evil.pt")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "phasetrans", "predict", "--model", "digits_mlp", "--data", "digits",
         "--checkpoint", str(evil)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "refused" in (proc.stderr + proc.stdout)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    _io.atomic_write_json(target, {"a": 1, "b": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1, "b": None}
    real_replace = os.replace

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        _io.atomic_write_text(target, "new contents")
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads(target.read_text()) == {"a": 1, "b": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temp file left
    with pytest.raises(TypeError, match="JSON"):
        _io.atomic_write_json(target, {"x": object()})
    with pytest.raises(ValueError, match="not a valid JSON"):
        (tmp_path / "bad.json").write_text("{'a': __import__('os')}")
        _io.read_json(tmp_path / "bad.json")
    _io.atomic_torch_save(tmp_path / "t.pt", {"x": torch.arange(3)})
    assert torch.equal(_io.safe_torch_load(tmp_path / "t.pt")["x"], torch.arange(3))
    with pytest.raises(TypeError, match="path"):
        _io.atomic_write_text(None, "x")


def test_writes_and_the_sweep_log_fsync_their_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    _io.fsync_dir(tmp_path)
    _io.fsync_dir(tmp_path / "missing")  # best effort: an unopenable directory is skipped
    _io.atomic_write_text(tmp_path / "a.txt", "x")
    pt.sweep(torch.nn.Linear(3, 2), lambda m: 0.0, [0.5], path=tmp_path / "log.jsonl")
    if os.path.exists("/proc/self/fd"):
        assert synced.count(str(tmp_path.resolve())) == 3  # fsync_dir, atomic write, new log


# --- files that are not ours (issue 16) -----------------------------------------------------
def _no_hang(seconds: int = 30):
    """Fail (instead of blocking the suite forever) if the block does not end in time."""
    def alarm(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    return previous


def _end_no_hang(previous) -> None:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


FOREIGN = {
    "notes.txt": b"my notes\nthe last line has no newline",
    "table.csv": b"a,b\n1,2\n3,4",
    "one-line": b"hello",
    "binary.bin": bytes(range(256)) * 4,
    "sweep-like.jsonl": b'{"kind": "something else"}\n{"index": 0',
}


@pytest.mark.parametrize("name", sorted(FOREIGN) + ["weights.pt"])
def test_sweep_never_touches_a_file_that_is_not_its_log(tmp_path, name):
    """The header is checked before a torn last line is cut: a foreign file is refused as is."""
    path = tmp_path / name
    if name == "weights.pt":
        torch.save(torch.nn.Linear(30, 20).state_dict(), path)
    else:
        path.write_bytes(FOREIGN[name])
    before = path.read_bytes()
    with pytest.raises(ValueError, match="not a phasetrans sweep file; it was left untouched"):
        pt.sweep(torch.nn.Linear(3, 2), lambda m: 0.0, [0.5], path=path)
    assert path.read_bytes() == before
    if name == "weights.pt":
        assert set(_io.safe_torch_load(path)) == {"weight", "bias"}  # still loads


@pytest.mark.parametrize("target", [b"precious\nno newline", b"", "a sweep log"])
def test_sweep_log_is_never_opened_through_a_symlink(tmp_path, target):
    model = torch.nn.Linear(3, 2)
    real = tmp_path / "shared" / "target.jsonl"
    real.parent.mkdir()
    if target == "a sweep log":
        pt.sweep(model, lambda m: 0.0, [0.5, 0.9], path=real)
        with open(real, "ab") as f:
            f.write(b'{"index": 1, "spars')  # a torn line: would be cut through a link
    else:
        real.write_bytes(target)
    before = real.read_bytes()
    link = tmp_path / "sweep.jsonl"
    link.symlink_to(real)
    with pytest.raises(ValueError, match="symbolic link"):
        pt.sweep(model, lambda m: 0.0, [0.5, 0.9], path=link)
    assert real.read_bytes() == before and link.is_symlink()


def test_fifos_are_refused_not_waited_on(tmp_path):
    """A FIFO as a sweep log or a checkpoint would block a read forever: refused at once."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    model, loss_fn, loader, kwargs = W.problem_train()
    previous = _no_hang()
    try:
        with pytest.raises(ValueError, match="FIFO"):
            pt.sweep(torch.nn.Linear(3, 2), lambda m: 0.0, [0.5], path=fifo)
        with pytest.raises(ValueError, match="FIFO"):
            pt.slq(W.problem_slq(), num_steps=3, num_probes=1, checkpoint=fifo)
        with pytest.raises(ValueError, match="FIFO"):
            pt.train_l1(model, loss_fn, loader, checkpoint=fifo, **kwargs)
        with pytest.raises(ValueError, match="FIFO"):
            _io.safe_torch_load(fifo)
        with pytest.raises(ValueError, match="FIFO"):
            _io.read_json(fifo)
        with pytest.raises(ValueError, match="FIFO"):
            _io.atomic_write_text(fifo, "x")  # never replaced either
    finally:
        _end_no_hang(previous)
    assert fifo.exists() and not fifo.is_file()


def test_a_torn_header_of_ours_is_restarted_and_a_mismatch_names_what_differs(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"kind": "phasetrans.sw')  # a crash while the header was written
    assert pt.sweep(model, lambda m: 1.0, [0.5], path=path, metadata={"seed": 0}) == [(0.5, 1.0)]
    assert len(path.read_text().splitlines()) == 2
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"differs in: metadata\.seed \(file 0, this call 1\).*delete"):
        pt.sweep(model, lambda m: 1.0, [0.5], path=path, metadata={"seed": 1})
    assert path.read_bytes() == before


def test_booleans_are_not_sparsities():
    model = torch.nn.Linear(3, 2)
    for grid in ([True, 0.5], torch.tensor([True, False]), [torch.tensor(True)]):
        with pytest.raises(TypeError, match=r"sparsities\[0\].*boolean"):
            pt.sweep(model, lambda m: 0.0, grid)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_respect_the_umask(tmp_path, umask):
    """Files get ``0o666 & ~umask`` as with open() (mkstemp alone gives 0600); a file that is
    rewritten keeps its mode."""
    previous = os.umask(umask)
    try:
        _io.atomic_write_text(tmp_path / "a.json", "{}")
        _io.atomic_torch_save(tmp_path / "c.pt", {"x": torch.zeros(1)})
        pt.sweep(torch.nn.Linear(3, 2), lambda m: 0.0, [0.5], path=tmp_path / "s.jsonl")
        for name in ("a.json", "c.pt", "s.jsonl"):
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
        (tmp_path / "a.json").chmod(0o640)
        _io.atomic_write_text(tmp_path / "a.json", "{}")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)


def test_a_second_sweep_on_a_log_in_use_is_refused(tmp_path):
    path = tmp_path / "new" / "log.jsonl"  # the folder is created
    model = torch.nn.Linear(3, 2)
    seen = []

    def evaluate(m):
        if not seen:
            with pytest.raises(ValueError, match="in use by another running sweep"):
                pt.sweep(torch.nn.Linear(3, 2), lambda m: 0.0, [0.5, 0.9], path=path)
        seen.append(1)
        return 1.0

    assert pt.sweep(model, evaluate, [0.5, 0.9], path=path) == [(0.5, 1.0), (0.9, 1.0)]
    assert len(path.read_text().splitlines()) == 3 and len(seen) == 2
# --- issue 16: what a checkpoint identifies, and its integrity ------------------------------
def _slq_problem(bias=0.0, bn_shift=0.0, loss_fn=None, data_seed=0):
    """A float64 MLP with BatchNorm (statistics as buffers) over 3 batches; the knobs change what
    the selected weights do not show: a bias, the BatchNorm statistics, the loss, the data."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh(),
                                torch.nn.Linear(6, 3)).double().eval()
    with torch.no_grad():
        model[0].bias[0] += bias
        model[1].running_mean += bn_shift
    g = torch.Generator().manual_seed(data_seed)
    X = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    data = [(X[i:i + 10], y[i:i + 10]) for i in range(0, 30, 10)]
    return pt.HessianOperator(model, loss_fn or torch.nn.CrossEntropyLoss(), data)


SLQ_SMALL = dict(num_steps=5, num_probes=2, seed=0)


@pytest.mark.parametrize("change, pattern", [
    (dict(bias=0.5), "operator"),
    (dict(bn_shift=0.25), "operator"),
    (dict(loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=0.2)), "loss_fn gives other per-batch losses"),
    (dict(data_seed=1), "other data"),
])
def test_slq_checkpoint_refuses_another_model_loss_or_data(tmp_path, change, pattern):
    # before: only the selected weights were hashed; a resume on other biases, BatchNorm
    # statistics, loss or data returned a mixture of two spectra without a word
    path = tmp_path / "c.pt"
    pt.slq(_slq_problem(), checkpoint=path, **SLQ_SMALL)
    assert pt.slq(_slq_problem(), checkpoint=path, **SLQ_SMALL) == pt.slq(_slq_problem(), **SLQ_SMALL)
    with pytest.raises(ValueError, match=pattern):
        pt.slq(_slq_problem(**change), checkpoint=path, **SLQ_SMALL)


def _flip_byte_in_payload(path: Path, needle: bytes) -> None:
    raw = bytearray(path.read_bytes())
    at = raw.find(needle)
    assert at >= 0
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


def test_checkpoints_detect_a_flipped_byte_random_bytes_and_old_formats(tmp_path):
    from phasetrans.linalg._checkpoint import seal

    path = tmp_path / "c.pt"
    A = torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64))
    pt.slq(A, num_steps=6, num_probes=2, checkpoint=path, checkpoint_every=3)
    # one flipped bit in a stored float (the Lanczos alphas are 1..20 mixes; flip in the data)
    raw = path.read_bytes()
    obj = _io.safe_torch_load(path)
    alpha = obj["state"]["alphas"][0, 0].item()
    _flip_byte_in_payload(path, torch.tensor([alpha], dtype=torch.float64).numpy().tobytes())
    with pytest.raises(ValueError, match=f"{str(path)!r} is corrupt: its checksum"):
        pt.slq(A, num_steps=6, num_probes=2, checkpoint=path)
    # random bytes, and truncations of a valid file: a ValueError naming the file, never a raw
    # IndexError/KeyError from the unpickler
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        junk = bytes(torch.randint(0, 256, (int(torch.randint(1, 400, (1,), generator=g)),),
                                   generator=g, dtype=torch.uint8).tolist())
        if trial % 2:
            junk = raw[: len(raw) * trial // 20] if trial < 20 else junk
        path.write_bytes(junk)
        with pytest.raises(ValueError, match="checkpoint"):
            pt.slq(A, num_steps=6, num_probes=2, checkpoint=path)
    # a hand edit with a recomputed checksum: the fields themselves are checked
    for edit, pattern in ((lambda s: s.update(steps=99), "steps"),
                          (lambda s: s.update(alphas=s["alphas"][:, :2]), "alphas"),
                          (lambda s: s["lengths"].fill_(7), "lengths")):
        state = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in obj["state"].items()}
        edit(state)
        _io.atomic_torch_save(path, seal({"kind": obj["kind"], "meta": obj["meta"], "state": state}))
        with pytest.raises(ValueError, match=pattern):
            pt.slq(A, num_steps=6, num_probes=2, checkpoint=path)
    # a file of the previous format (no checksum, no data fingerprint) is refused clearly
    _io.atomic_torch_save(path, {"kind": "phasetrans.slq-checkpoint/1", "meta": {}, "state": {}})
    with pytest.raises(ValueError, match="older phasetrans"):
        pt.slq(A, num_steps=6, num_probes=2, checkpoint=path)


def test_train_l1_checkpoint_with_numpy_eval_loads_back(tmp_path):
    # before: np.mean(...) was pickled as a NumPy object, which weights_only=True refuses, so
    # the resume said the file "would import or run code"
    import numpy as np

    path = tmp_path / "t.pt"
    model, loss_fn, loader, kwargs = W.problem_train()
    evals = [np.float64(0.5), np.float32(0.25), np.int64(3), {"acc": np.array([0.5, 1.0])}]
    calls = iter(evals * 2)
    hist = pt.train_l1(model, loss_fn, loader, checkpoint=path, eval_fn=lambda m: next(calls),
                       **{**kwargs, "epochs": 4})
    assert hist.eval == [0.5, 0.25, 3, {"acc": [0.5, 1.0]}]
    assert all(type(v) in (float, int, dict) for v in hist.eval)
    model, loss_fn, loader, kwargs = W.problem_train()
    again = pt.train_l1(model, loss_fn, loader, checkpoint=path,
                        eval_fn=lambda m: pytest.fail("finished: no epoch runs"), **{**kwargs, "epochs": 4})
    assert again.eval == hist.eval


def test_train_l1_checkpoint_refuses_other_data_loss_and_edits(tmp_path):
    from phasetrans.linalg._checkpoint import seal

    path = tmp_path / "t.pt"
    model, loss_fn, loader, kwargs = W.problem_train()
    args = {**kwargs, "epochs": 2}
    pt.train_l1(model, loss_fn, loader, checkpoint=path, **args)
    X, y = W._data(seed=7)
    other = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=32,
                                        shuffle=True)
    model, loss_fn, loader, _ = W.problem_train()
    with pytest.raises(ValueError, match="other data"):
        pt.train_l1(model, loss_fn, other, checkpoint=path, **args)
    with pytest.raises(ValueError, match="loss_fn gives other per-batch losses"):
        pt.train_l1(model, torch.nn.CrossEntropyLoss(label_smoothing=0.3), loader, checkpoint=path,
                    **args)
    obj = _io.safe_torch_load(path)
    rest = {k: v for k, v in obj.items() if k != "checksum"}
    for edit, pattern in ((dict(epoch=9), "epoch"), (dict(epoch=1), "history"),
                          (dict(history={**obj["history"], "loss": [0.1, float("nan")]}), "loss")):
        _io.atomic_torch_save(path, seal({**rest, **edit}))
        with pytest.raises(ValueError, match=pattern):
            pt.train_l1(*W.problem_train()[:3], checkpoint=path, **args)
    _io.atomic_torch_save(path, {**rest, "epoch": 1})  # edited without the checksum
    with pytest.raises(ValueError, match="corrupt"):
        pt.train_l1(*W.problem_train()[:3], checkpoint=path, **args)
