"""Long-running jobs for tests/test_resume.py: run in a subprocess and killed with SIGKILL midway.

    python tests/_resume_worker.py slq|train|sweep PATH [DELAY]

Each job is slowed down by ``DELAY`` seconds per step (Lanczos step / epoch / sweep point) so
that the test can kill it between checkpoints. The problem definitions are shared with the test
(``problem_*``), so an in-process resume sees exactly the same model, data and arguments.
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn

import phasetrans as pt

torch.set_num_threads(1)

SLQ_ARGS = dict(num_steps=40, num_probes=3, seed=5, reorth="full", checkpoint_every=4)
SWEEP_GRID = [i / 20 for i in range(21)]


def _data(n=240, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 12, generator=g, dtype=dtype)
    w = torch.randn(12, 4, generator=g, dtype=dtype)
    y = (X @ w).argmax(1)
    return X, y


def problem_slq():
    """A float64 MLP (D = 12·16 + 16·4 = 256) and its data-set Hessian over 4 uneven batches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    X, y = _data()
    data = [(X[i : i + 70], y[i : i + 70]) for i in range(0, len(y), 70)]
    return pt.HessianOperator(model, nn.CrossEntropyLoss(), data)


def problem_train():
    """Model with dropout (RNG-dependent) and a shuffling DataLoader (RNG-dependent)."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4)
    ).double()
    X, y = _data()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=32, shuffle=True
    )
    kwargs = dict(l1=1e-4, epochs=6, lr=0.05, warmup_epochs=1, seed=3, progress=False)
    return model, nn.CrossEntropyLoss(), loader, kwargs


def problem_sweep():
    model, loss_fn, loader, kwargs = problem_train()
    X, y = _data(seed=1)

    def evaluate(m):
        return pt.evaluate_accuracy(m, (X, y))

    return model, evaluate


def main(argv: list[str]) -> None:
    job, path = argv[0], argv[1]
    delay = float(argv[2]) if len(argv) > 2 else 0.2
    if job == "slq":
        H = problem_slq()
        inner = H._matmat

        def slow(V):
            time.sleep(delay)
            return inner(V)

        H._matmat = slow
        pt.slq(H, checkpoint=path, **SLQ_ARGS)
    elif job == "train":
        model, loss_fn, loader, kwargs = problem_train()

        def eval_fn(m):
            time.sleep(delay)
            return 0.0

        pt.train_l1(model, loss_fn, loader, checkpoint=path, eval_fn=eval_fn, **kwargs)
    elif job == "sweep":
        model, evaluate = problem_sweep()

        def slow(m):
            time.sleep(delay)
            return evaluate(m)

        pt.sweep(model, slow, SWEEP_GRID, path=path)
    else:
        raise SystemExit(f"unknown job {job!r}")
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
