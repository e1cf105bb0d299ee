"""Transition shim: the spectral estimators moved to :mod:`phasetrans.linalg` (``lanczos.py``,
``slq.py``, ``_checkpoint.py``, ``density.py``, ``trace/``, ``eigs.py``); this module re-exports
the names (public and private) imported from it before the split."""

# ruff: noqa: F401  (transition shim: names re-exported for their old importers)
from .linalg._checkpoint import SLQ_KIND as _SLQ_KIND
from .linalg._checkpoint import load_slq_checkpoint as _load_slq_checkpoint
from .linalg._checkpoint import operator_fingerprint as _operator_fingerprint
from .linalg._checkpoint import run_with_checkpoints as _run_with_checkpoints
from .linalg.density import Estimate, SpectralDensity, _as_grid
from .linalg.eigs import Eigen, top_eigenvalues
from .linalg.lanczos import Lanczos as _Lanczos
from .linalg.lanczos import breakdown_tol as _breakdown_tol
from .linalg.lanczos import tridiag_eigh as _tridiag_eigh
from .linalg.operator import Operator, all_finite, as_operator
from .linalg.operator import apply as _apply
from .linalg.operator import guard as _guard
from .linalg.probes import rademacher as _rademacher
from .linalg.slq import available_bytes as _available_bytes
from .linalg.slq import human_bytes as _human_bytes
from .linalg.slq import probe_group_size as _probe_group_size
from .linalg.slq import slq
from .linalg.trace import trace
from .linalg.trace.xtrace import xtrace_estimates as _xtrace_estimates

__all__ = ["Estimate", "Eigen", "SpectralDensity", "slq", "trace", "top_eigenvalues"]
