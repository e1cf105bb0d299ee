"""The command line killed (SIGKILL) right after its first checkpoint, for tests/test_cli_resume.py:

    python tests/_cli_kill_worker.py slq|train PHASETRANS-ARGS...

``slq``: killed after the first SLQ checkpoint is on disk; ``train``: after the first epoch's
training checkpoint. The kill is the real thing (no cleanup runs); only its moment is fixed, so
the test does not race the run.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys


def main() -> int:
    which, argv = sys.argv[1], sys.argv[2:]
    module = importlib.import_module({"slq": "phasetrans.linalg._checkpoint",
                                      "train": "phasetrans.train"}[which])
    real = module.atomic_torch_save

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    module.atomic_torch_save = save_then_die
    from phasetrans.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
