"""CPU threads that do not collapse on a busy machine.

PyTorch's OpenMP threads spin while they wait for work (``OMP_WAIT_POLICY`` active, GNU OpenMP's
default). When other processes hold the cores, spinning threads steal time from the ones doing
work and a parallel region can take many times longer than on one thread. ``phasetrans
spectrum`` on a 2-core machine at load average 16-19, SLQ stage: 444 s with torch's defaults
(2 threads, busy-waiting), 318 s with 2 threads forced active, 12-27 s with 2 threads passive,
30-40 s with the command's choice (passive, 1 thread: the cores less the load). The wait policy is read once, when the OpenMP runtime loads (at
``import torch``), so it has to be in the environment before that.

- The command line sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set it) before torch is
  imported (:func:`prepare_cli_environment`, called by ``phasetrans/__init__`` only when the
  process is the ``phasetrans`` command) and picks its thread count with :func:`auto_threads`
  (``--threads`` overrides).
- The library changes no global setting behind its user's back. For scripts and notebooks:
  ``OMP_WAIT_POLICY=PASSIVE python script.py`` (or ``os.environ`` before ``import torch``), and
  ``pt.set_threads()`` (:func:`set_threads`) to pick the thread count from the cores this process
  may use and the load average.

This module imports nothing heavy: it runs before torch is imported.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

__all__ = ["auto_threads", "set_threads", "prepare_cli_environment", "is_cli_process"]

_SCRIPT_NAMES = ("phasetrans", "phasetrans.exe", "phasetrans-script.py")


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _load_average() -> float:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # not available on this platform
        return 0.0


def auto_threads(cpus: int | None = None, load: float | None = None) -> int:
    """Threads for a CPU computation: the cores this process may use (``os.sched_getaffinity``)
    less the ones the others keep busy (the 1-minute load average, rounded), at least 1:
    ``max(1, cpus − round(load))``, at most ``cpus``. ``cpus`` and ``load`` default to the
    machine's (given: for tests)."""
    cpus = _available_cpus() if cpus is None else cpus
    load = _load_average() if load is None else load
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise ValueError(f"cpus must be an integer >= 1, got {cpus!r}")
    if isinstance(load, bool) or not isinstance(load, (int, float)) or not math.isfinite(load) or load < 0:
        raise ValueError(f"load must be a finite number >= 0, got {load!r}")
    return int(max(1, min(cpus, cpus - math.floor(load + 0.5))))


def set_threads(threads: int | str = "auto") -> int:
    """Set torch's CPU threads (``torch.set_num_threads``) and return the previous count.

    ``threads``: an integer ``>= 1``, or ``"auto"`` (:func:`auto_threads`: the available cores
    less the load average). This changes a process-wide setting; call it from your script, not
    from library code. The OpenMP wait policy cannot be changed once torch is imported: for a
    busy machine start Python with ``OMP_WAIT_POLICY=PASSIVE`` as well (see the module notes).
    """
    import torch

    if isinstance(threads, str):
        if threads != "auto":
            raise ValueError(f"threads must be an integer >= 1 or 'auto', got {threads!r}")
        threads = auto_threads()
    elif isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an integer >= 1 or 'auto', got {type(threads).__name__}")
    elif threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    return previous


def is_cli_process(argv: list[str] | None = None) -> bool:
    """Whether this process is the ``phasetrans`` command: the console script
    (``…/phasetrans``) or ``python -m phasetrans`` (read from ``sys.orig_argv``)."""
    argv = list(getattr(sys, "orig_argv", sys.argv) if argv is None else argv)
    if argv and Path(argv[0]).name in _SCRIPT_NAMES:  # a frozen or directly run executable
        return True
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            return i + 1 < len(argv) and argv[i + 1] == "phasetrans"
        if arg == "-c":
            return False
        if not arg.startswith("-"):  # the script the interpreter runs
            return Path(arg).name in _SCRIPT_NAMES
        i += 2 if arg in ("-X", "-W") else 1
    return False


def prepare_cli_environment(environ: dict | None = None) -> None:
    """For the command line only: ``OMP_WAIT_POLICY=PASSIVE`` unless set (before torch loads)."""
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
