"""The figure class of the library: a matplotlib ``Figure`` that shows itself in Jupyter.

Figures are built without pyplot (no GUI backend, nothing kept in pyplot's state), so no
backend registers them for inline display; :class:`InlineFigure` carries its own
``_repr_png_``, which IPython's display machinery calls when a cell's value is the figure
(``fig`` as the last line, ``display(fig)``). When matplotlib's inline backend has registered
its own formatter for ``Figure`` (after ``%matplotlib inline``), that one is used instead: one
image either way.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure

__all__ = ["InlineFigure"]


class InlineFigure(Figure):
    """A ``matplotlib.figure.Figure`` with ``_repr_png_`` (PNG at the figure's dpi, cropped to
    the drawn content, as the inline backend shows figures)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
