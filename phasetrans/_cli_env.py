"""Imported first by ``phasetrans/__init__`` (before anything imports torch): when this process is
the ``phasetrans`` command (console script or ``python -m phasetrans``), set
``OMP_WAIT_POLICY=PASSIVE`` unless the user set it (:mod:`phasetrans._threads`). OpenMP reads the
policy once, when torch loads; a library import changes nothing."""

from ._threads import is_cli_process, prepare_cli_environment

if is_cli_process():
    prepare_cli_environment()
