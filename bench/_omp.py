"""``--omp-wait-policy``: the OpenMP wait policy of a bench, applied before torch is imported.

The headline numbers use the default policy, as users meet it (no ``OMP_WAIT_POLICY`` set).
``--omp-wait-policy PASSIVE|ACTIVE`` is a labelled variant: it sets the variable for the whole
process, so both peers of an interleaved comparison run under it. Call :func:`apply_from_argv`
before ``import torch`` (OpenMP reads the variable once, when the runtime starts).
"""

from __future__ import annotations

import os
import sys

CHOICES = ("default", "PASSIVE", "ACTIVE")


def apply_from_argv(argv: list[str] | None = None) -> str:
    """Read ``--omp-wait-policy X`` (or ``=X``) from ``argv`` and set ``OMP_WAIT_POLICY``;
    returns the policy's label (``"default"``: the variable left as the user's environment has it)."""
    argv = sys.argv[1:] if argv is None else argv
    value = "default"
    for i, arg in enumerate(argv):
        if arg == "--omp-wait-policy" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--omp-wait-policy="):
            value = arg.split("=", 1)[1]
    if value not in CHOICES:
        raise SystemExit(f"--omp-wait-policy must be one of {CHOICES}, got {value!r}")
    if value != "default":
        os.environ["OMP_WAIT_POLICY"] = value
    return label()


def label() -> str:
    return os.environ.get("OMP_WAIT_POLICY", "default (unset)")


def add_argument(parser) -> None:
    """The flag in the bench's argparse help (its value was applied before torch was imported)."""
    parser.add_argument("--omp-wait-policy", default="default", choices=CHOICES,
                        help="OpenMP wait policy for both peers (default: as the environment has it)")
