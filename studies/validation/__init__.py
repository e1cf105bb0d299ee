"""The validation study: the predicted critical sparsity of Zhang, Zhang, Sun & Liu (NeurIPS 2024)
against measured pruning thresholds, on quadratics with exact truth and on trained networks.

Run from the repository root: ``python -m studies.validation --out docs`` (``--quick`` for two
small cases). Files: :mod:`.cases` (the cases), :mod:`.ablations`, :mod:`.render` (the markdown),
:mod:`.run` (the study and its command line); the exact quadratic truths are library theory
(:mod:`phasetrans.theory.quadratic`), the figures are drawn by :mod:`phasetrans.report.plots`.
"""

from .ablations import quadratic_bruteforce_study, run_ablations
from .cases import (
    EXACT_MAX_DIM,
    NET_CASES,
    QUAD_CASES,
    measure_model,
    run_network_case,
    run_quadratic_case,
    train_case,
)
from .render import discussion, render_markdown
from .run import FULL_CASES, QUICK_CASES, draw_figures, main, run_study, summarize

__all__ = [
    "EXACT_MAX_DIM", "NET_CASES", "QUAD_CASES", "QUICK_CASES", "FULL_CASES",
    "run_quadratic_case", "run_network_case", "measure_model", "train_case", "run_ablations",
    "quadratic_bruteforce_study", "summarize", "draw_figures", "render_markdown", "discussion",
    "run_study", "main",
]
