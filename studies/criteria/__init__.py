"""The criteria study: one-shot pruning criteria beside the predicted limit (issue 19).

Global magnitude pruning (the theory's pruner), Fisher–Taylor sensitivity, Optimal Brain Surgeon
with M-FAC's inverse empirical Fisher, and layer-adaptive rate–distortion allocation, each run
one-shot on the validation study's digits MLP trained with strong l1 and with weak or no l1; for
each: the one-shot threshold, its gap to the predicted limit (``pt.predict_sparsity``), ``R(s)``
at the threshold and the cost. Run from the repository root::

    python -m studies.criteria --out docs

writes ``OUT/CRITERIA.md``, ``OUT/criteria.json`` and ``OUT/figures/criteria_accuracy.png``. The
networks are built by :mod:`studies.validation.cases`; the figure by
:func:`phasetrans.report.plots.plot_criteria`.
"""

from .render import discussion, render_markdown
from .run import CASES, CRITERION_OPTIONS, main, run_case, run_study

__all__ = ["CASES", "CRITERION_OPTIONS", "run_case", "run_study", "render_markdown", "discussion",
           "main"]
