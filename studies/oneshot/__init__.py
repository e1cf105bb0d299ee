"""The one-shot study (issue 15): does the paper's prediction describe one-shot magnitude pruning
of the networks users hold, what does ``applies`` say, and how close is ``pt.predict_oneshot``?

Run from the repository root: ``python -m studies.oneshot --out docs [--weights DIR]``. Files:
:mod:`.cases` (architectures, l1 strengths, schedules, held-out data; the digits/teacher data and
training come from :mod:`studies.validation.cases`), :mod:`.measure` (one case), :mod:`.render`
(summary and markdown), :mod:`.run` (the command line); figures by :mod:`phasetrans.report.plots`.
"""

from .cases import ARCHS, HELDOUT, HELDOUT2, L1S, SCHEDULES, case_name, load_or_train
from .measure import measure_case, window_of
from .render import SHIPPED, render_markdown, summarize
from .run import all_cases, main, reassess, run_study

__all__ = ["ARCHS", "HELDOUT", "HELDOUT2", "L1S", "SCHEDULES", "SHIPPED", "all_cases", "case_name",
           "load_or_train", "main", "measure_case", "reassess", "render_markdown", "run_study",
           "summarize", "window_of"]
