"""The import graph runs one way, and ``import mbtrain`` pulls in no optional package.

The graph is read from the source with :mod:`ast`, so it counts every import:
at module level and inside functions alike (an import hidden in a function to
dodge a cycle is still a cycle). Importing ``a.b.c`` is an edge to ``a.b.c``;
``from . import x`` is an edge to the submodule ``x`` when there is one, else to
the package's ``__init__`` (so a module that reads ``from .. import __version__``
depends on everything the package's ``__init__`` imports).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "mbtrain"

#: The only imports allowed inside a function: optional third-party packages (extras),
#: imported where they are used so that ``import mbtrain`` works without them.
OPTIONAL_PACKAGES = {"torch", "sklearn", "scipy", "dask", "distributed", "joblib", "pooch"}

#: The layers of the package, lowest first: a module may import only from its own layer or below.
LAYERS = [
    {"mbtrain._version", "mbtrain._validation", "mbtrain._atomic", "mbtrain.params", "mbtrain.costs",
     "mbtrain.activations", "mbtrain.synthetic", "mbtrain.threads", "mbtrain._kernel_api", "mbtrain.optim", "mbtrain.schedules"},
    {"mbtrain.kernels", "mbtrain.fast_tiles", "mbtrain.fast_layers", "mbtrain.fast_kernels"},
    {"mbtrain.backends"},
    {"mbtrain.datasets", "mbtrain.callbacks", "mbtrain.training", "mbtrain.serialization", "mbtrain.optimize",
     "mbtrain.gradcheck", "mbtrain.gradcheck_hints"},
    {"mbtrain.network"},
    {"mbtrain"},
    {"mbtrain.sklearn", "mbtrain._sklearn_names", "mbtrain.bench", "mbtrain.commands", "mbtrain.cli", "mbtrain.__main__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str):
    """``(imported module, line, inside a function)`` for every import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(name, child)
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in MODULES else target, child.lineno, in_function))
            visit(child, inside)

    visit(tree, False)
    return found


def _is_type_checking_only(name: str, line: int) -> bool:
    tree = ast.parse(MODULES[name].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            if node.lineno <= line <= max(getattr(n, "lineno", node.lineno) for n in ast.walk(node)):
                return True
    return False


def graph():
    edges = {name: set() for name in MODULES}
    for name in MODULES:
        for target, line, _ in imports_of(name):
            if target not in MODULES or target == name or _is_type_checking_only(name, line):
                continue
            edges[name].add(target)
    return edges


def _cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def strongconnect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in edges:
        if v not in index:
            strongconnect(v)
    return result


def layer_of(name: str) -> int:
    best = None
    for level, members in enumerate(LAYERS):
        for member in members:
            if name == member or (member != "mbtrain" and name.startswith(member + ".")):
                if best is None or len(member) > best[1]:
                    best = (level, len(member))
    assert best is not None, f"{name} is in no layer of tests/test_imports.py: add it to LAYERS"
    return best[0]


def test_the_package_has_no_import_cycle():
    cycles = _cycles(graph())
    assert not cycles, f"import cycles (counting imports inside functions): {cycles}"


def test_imports_run_one_way_through_the_layers():
    wrong = []
    for name, targets in graph().items():
        for target in targets:
            if layer_of(target) > layer_of(name):
                wrong.append(f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_imports_inside_functions_are_only_for_optional_packages():
    hidden = []
    for name in MODULES:
        for target, line, in_function in imports_of(name):
            if in_function and target.split(".")[0] not in OPTIONAL_PACKAGES:
                hidden.append(f"{MODULES[name].relative_to(PACKAGE_DIR.parent)}:{line} imports {target}")
    assert not hidden, "imports inside functions (only optional extras belong there):\n" + "\n".join(hidden)


def test_the_graph_reader_sees_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


BLOCK_OPTIONAL = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked by the test: " + name)
sys.meta_path.insert(0, Block())
"""


def test_import_mbtrain_works_without_any_optional_package():
    code = BLOCK_OPTIONAL.format(blocked=sorted(OPTIONAL_PACKAGES)) + "import mbtrain, mbtrain.cli; mbtrain.Network([2, 2])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# numba itself imports scipy when it is installed (numba/__init__.py, _ensure_critical_deps): not ours to avoid
@pytest.mark.parametrize("optional", sorted(OPTIONAL_PACKAGES - {"scipy"} | {"matplotlib"}))
def test_import_mbtrain_imports_no_optional_dependency(optional):
    code = f"import sys, mbtrain; sys.exit(1 if {optional!r} in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"`import mbtrain` imported {optional}: {result.stderr}"
