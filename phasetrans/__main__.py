"""``python -m phasetrans``: the command line (:mod:`phasetrans.cli`)."""

import sys

from .cli import main

sys.exit(main())
