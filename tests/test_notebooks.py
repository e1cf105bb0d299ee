"""The notebooks: stored without outputs, run top to bottom in quick mode (PHASETRANS_QUICK=1) in a
plain Jupyter kernel (no ``MPLBACKEND``: what a user gets), every figure cell shows an image, and
the executed copies in docs/notebooks/ (``python scripts/render_notebooks.py``) are current."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RENDERED = ROOT / "docs" / "notebooks"
PNG = b"\x89PNG\r\n\x1a\n"

# a cell draws a figure when its last line shows one: a bare `fig`, or a figure function's result
_FIGURE_LINE = re.compile(r"^(fig\w*|display\(.*\)|.*\bplot(_\w+)?\(.*\))\s*$")


def figure_cells(nb) -> list:
    """The code cells whose last line displays a figure."""
    out = []
    for cell in nb.cells:
        lines = [re.sub(r"\s+#.*$", "", ln) for ln in cell.source.splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        if cell.cell_type == "code" and lines and _FIGURE_LINE.match(lines[-1]) and not lines[-1].startswith(" "):
            out.append(cell)
    return out


def images(cell) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in cell.get("outputs", [])
            if o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})]


def code_sources(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_the_four_notebooks_exist():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name
    assert figure_cells(nb), f"{path.name} has no figure cell (the image check would be empty)"


def test_figure_cell_rule():
    """The rule that finds figure cells (the image check below must be able to fail)."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1\nfig"), nbformat.v4.new_code_cell("pt.plots.plot_layers(r)"),
        nbformat.v4.new_code_cell("for a in b:\n    pt.plots.plot_spectrum(a)"),
        nbformat.v4.new_code_cell("print(1)"), nbformat.v4.new_code_cell("pred.plot()  # the figure"),
    ])
    assert [c.source for c in figure_cells(nb)] == ["x = 1\nfig", "pt.plots.plot_layers(r)", "pred.plot()  # the figure"]
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "<Figure size 704x440 with 1 Axes>"})]
    assert images(cell) == []


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Each notebook run once in quick mode by a fresh kernel without MPLBACKEND (a user's kernel:
    matplotlib's inline backend, nothing set up by the test), importing this checkout."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(PHASETRANS_QUICK="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    saved = dict(os.environ)
    out = {}
    try:
        os.environ.clear()
        os.environ.update(env)
        for path in NOTEBOOKS:
            nb = nbformat.read(path, as_version=4)
            cwd = tmp_path_factory.mktemp(path.stem)
            nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                    resources={"metadata": {"path": str(cwd)}}).execute()
            out[path.stem] = nb
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_in_quick_mode_and_shows_every_figure(path, executed):
    nb = executed[path.stem]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    for cell in figure_cells(nb):
        pngs = images(cell)
        assert pngs and all(p[:8] == PNG and len(p) > 5000 for p in pngs), (
            f"{path.name}: the figure cell {cell.source.splitlines()[-1]!r} shows no image")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_rendered_copy_is_current(path):
    """docs/notebooks/<name>.ipynb: the same code as notebooks/, executed without errors, every
    figure cell with its image, and the markdown copy with every image it links to."""
    copy = RENDERED / path.name
    assert copy.exists(), f"run `python scripts/render_notebooks.py` to write {copy}"
    nb, rendered = nbformat.read(path, as_version=4), nbformat.read(copy, as_version=4)
    assert code_sources(rendered) == code_sources(nb), f"{copy} is stale: re-run scripts/render_notebooks.py"
    assert [c.source for c in rendered.cells if c.cell_type == "markdown"] == \
        [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert all(c.execution_count is not None for c in rendered.cells if c.cell_type == "code")
    assert not [o for c in rendered.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    for cell in figure_cells(rendered):
        assert images(cell), f"{copy}: figure cell without an image"
    md = (RENDERED / f"{path.stem}.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == sum(len(images(c)) for c in rendered.cells if c.cell_type == "code")
    for link in links:
        assert (RENDERED / link).read_bytes()[:8] == PNG
