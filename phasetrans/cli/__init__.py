"""The ``phasetrans`` command line: ``demo``, ``spectrum``, ``predict``, ``sweep``, ``validate``.

Exit codes: 0 success, 2 bad usage or bad input (unknown option, bad config, unsafe checkpoint,
missing file, no trained weights, an unusable ``--out``, a request out of bounds), 1 a failure
while running, 130 interrupted (Ctrl-C), 143 terminated (``SIGTERM``); both interruptions say on
standard error what was kept. ``--json`` prints one JSON document on
standard output (progress bars and messages go to standard error).

Files: :mod:`~phasetrans.cli.config` (exit codes, ``--config``, checkpoints),
:mod:`~phasetrans.cli.inputs` (dataset, model, output folder from the settings),
:mod:`~phasetrans.cli.commands` (one ``cmd_*`` per subcommand), :mod:`~phasetrans.cli.parser`.
"""

from __future__ import annotations

import os
import sys

from .commands import DEMO, DEMO_QUICK, model_shape
from .config import (
    CONFIG_KEYS,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    load_checkpoint,
    load_config,
    max_threads,
)
from .guards import Terminated, handle_sigterm, kept_message
from .parser import build_parser

__all__ = ["main", "build_parser", "load_config", "load_checkpoint", "CONFIG_KEYS", "UsageError",
           "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "DEMO", "DEMO_QUICK",
           "model_shape"]


def _set_threads(args) -> int | None:
    """Apply ``--threads``; the exit code when it is bad, else ``None``. Default: 1 for the demo;
    torch's own count when the user set ``OMP_NUM_THREADS``; else
    :func:`~phasetrans._threads.auto_threads` (the cores this process may use less the load
    average), so that a busy machine does not make threads wait for cores. The OpenMP wait policy
    was set to passive before torch loaded (:mod:`phasetrans._cli_env`)."""
    import torch

    from .._threads import auto_threads

    threads = getattr(args, "threads", None)
    if threads is None and args.command == "demo":
        threads = 1
    elif threads is None and "OMP_NUM_THREADS" not in os.environ:
        threads = auto_threads()
    if threads is not None:
        if not 1 <= threads <= max_threads():
            print(f"phasetrans {args.command}: error: --threads must be between 1 and "
                  f"{max_threads()} (4 per CPU), got {threads}", file=sys.stderr)
            return EXIT_USAGE
        torch.set_num_threads(threads)
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``phasetrans`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on bad usage
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    import matplotlib

    matplotlib.use("Agg")
    import torch

    saved_threads = torch.get_num_threads()
    code = _set_threads(args)
    if code is not None:
        return code
    try:
        with handle_sigterm():
            return int(args.func(args))
    except (UsageError, ValueError, TypeError) as exc:
        print(f"phasetrans {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print(f"phasetrans {args.command}: terminated (SIGTERM); {kept_message(args)}", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"phasetrans {args.command}: interrupted; {kept_message(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - report any runtime failure with exit code 1
        print(f"phasetrans {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        torch.set_num_threads(saved_threads)
