"""The house's rules, checked: imports point one way (no cycle, nothing imports a higher layer),
and no library file grows past the size the house allows (docs/DEVELOPING.md)."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "phasetrans"

# lowest first; a module may import its own layer or lower ones
LAYERS = [
    ("base", ["_version", "_checks", "_io", "_batches", "_bisect", "_timing", "_types", "params", "distributed",
              "_progress", "_threads", "_cli_env"]),
    ("linalg", ["linalg"]),
    ("data", ["data", "models"]),
    ("theory", ["theory"]),
    ("prune", ["prune", "train", "finetune", "evaluate"]),
    ("predict", ["predict", "oneshot"]),
    ("report", ["report"]),
    ("cli", ["cli", "__main__"]),
    ("package", ["__init__"]),
]
# a `.plot()` method draws through the plotting module, imported when the method runs
LAZY_ALLOWED = {"phasetrans.report.plots"}
MAX_FILE_LINES = 550


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    for rank, (_, names) in enumerate(LAYERS):
        if head in names:
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if not is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    if node.module is None:  # from . import a, b
        return [f"{base}.{a.name}" for a in node.names]
    return [base]


def _imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(imported phasetrans module, imported at module level?) for every import in the file."""
    module = _module_name(path)
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    for node in tree.body:  # imports inside `if TYPE_CHECKING:` blocks count as top level too
        if isinstance(node, ast.If):
            top.update(map(id, node.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            targets = _resolve(module, path.name == "__init__.py", node)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            if t == "phasetrans" or t.startswith("phasetrans."):
                found.append((t, id(node) in top))
    return found


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    module = _module_name(path)
    mine = _layer(module)
    for target, top_level in _imports(path):
        if target == "phasetrans":
            assert module.count(".") == 0, f"{module} imports the whole package"
            continue
        if not top_level and any(target == a or target.startswith(a + ".") for a in LAZY_ALLOWED):
            continue
        assert _layer(target) <= mine, (
            f"{module} (layer {LAYERS[mine][0]}) imports {target} (layer {LAYERS[_layer(target)][0]})")


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for path in FILES:
        graph[_module_name(path)] = {t for t, top in _imports(path) if top}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            nxt = nxt if nxt in graph else nxt.rsplit(".", 1)[0]
            if nxt not in graph or nxt == node:
                continue
            # importing a submodule of your own package from the package's __init__ is not a cycle
            if node.endswith(("phasetrans",)) or nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [node, nxt]))
            if state.get(nxt) is None:
                visit(nxt, stack + [node])
        state[node] = 2

    for module in graph:
        if state.get(module) is None:
            visit(module, [])


def test_files_stay_small():
    big = {str(p.relative_to(PACKAGE)): n for p in FILES
           if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not big, f"files over {MAX_FILE_LINES} lines (split them by concept): {big}"


def test_layers_see_the_rule_break():
    """The checker itself: a lower layer importing a higher one is caught."""
    node = ast.parse("from ..report.plots import plot_spectrum").body[0]
    (target,) = _resolve("phasetrans.linalg.density", False, node)
    assert target == "phasetrans.report.plots"
    assert _layer(target) > _layer("phasetrans.linalg.density")
