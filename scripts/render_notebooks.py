"""Execute the notebooks and write readable copies with their outputs and figures to docs/notebooks/.

    python scripts/render_notebooks.py            # full settings (minutes on 2 CPU cores)
    python scripts/render_notebooks.py --quick    # PHASETRANS_QUICK=1: the CI sizes

For each ``notebooks/NN_name.ipynb`` it writes ``docs/notebooks/NN_name.ipynb`` (executed, outputs
kept: GitHub shows it with its figures), ``docs/notebooks/NN_name.md`` (the same as Markdown) and
the figures as ``docs/notebooks/NN_name_files/*.png``, plus ``docs/notebooks/README.md``, an
index. Each notebook runs in a fresh kernel in a temporary folder (files it writes stay there),
without ``MPLBACKEND`` (a user's kernel) and importing this checkout. A notebook that raises stops
the script (exit code 1) and nothing of it is written; standard-error output (warnings, progress
bars) is left out of the copies. ``tests/test_notebooks.py`` checks that
the copies have the same code as ``notebooks/`` and an image in every figure cell.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path, quick: bool, timeout: int) -> nbformat.NotebookNode:
    """``path`` run top to bottom by a fresh ``python3`` kernel in a temporary folder."""
    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if quick:
        env["PHASETRANS_QUICK"] = "1"
    else:
        env.pop("PHASETRANS_QUICK", None)
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        with tempfile.TemporaryDirectory() as cwd:
            nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": cwd}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    for cell in nb.cells:  # no timestamps: a re-run with the same results changes nothing
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":  # no stderr (warnings, progress bars: machine paths, noise)
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    return nb


def _text(output: dict) -> str | None:
    if output["output_type"] == "stream":
        return output["text"]
    data = output.get("data", {})
    if "image/png" in data:
        return None
    return data.get("text/plain")


def to_markdown(nb: nbformat.NotebookNode, name: str, out: Path) -> str:
    """The notebook as Markdown; its PNG outputs written to ``out/<name>_files/``."""
    files = out / f"{name}_files"
    shutil.rmtree(files, ignore_errors=True)
    parts, count = [], 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            continue
        if cell.cell_type != "code":
            continue
        parts.append(f"```python\n{cell.source}\n```")
        for output in cell.outputs:
            if output["output_type"] == "error":
                raise RuntimeError(f"{name}: a cell raised {output['ename']}: {output['evalue']}")
            png = output.get("data", {}).get("image/png")
            if png is not None:
                count += 1
                files.mkdir(parents=True, exist_ok=True)
                (files / f"figure_{count}.png").write_bytes(base64.b64decode(png))
                parts.append(f"![figure {count}]({name}_files/figure_{count}.png)")
            elif (text := _text(output)) is not None and text.strip():
                parts.append(f"```text\n{text.rstrip()}\n```")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="PHASETRANS_QUICK=1: the CI sizes (about a minute)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "notebooks"), help="output folder")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("notebooks", nargs="*", help="notebooks to render (default: all of notebooks/)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    mode = "quick: PHASETRANS_QUICK=1" if args.quick else "full"
    for path in paths:
        start = time.perf_counter()
        nb = execute(path, args.quick, args.timeout)
        md = to_markdown(nb, path.stem, out)
        nbformat.write(nb, out / path.name)
        header = (f"<!-- rendered from notebooks/{path.name} by `python scripts/render_notebooks.py"
                  f"{' --quick' if args.quick else ''}` ({mode}); do not edit -->\n\n")
        (out / f"{path.stem}.md").write_text(header + md)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    rendered = sorted(out.glob("*.ipynb"))
    index = ["# Notebooks, executed", "",
             f"Rendered by `python scripts/render_notebooks.py{' --quick' if args.quick else ''}` "
             f"({mode} settings) from `notebooks/`; each as Markdown with its figures and as the "
             "executed notebook.", ""]
    index += [f"- [{p.stem}]({p.stem}.md) ([notebook]({p.name}))" for p in rendered]
    (out / "README.md").write_text("\n".join(index) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
