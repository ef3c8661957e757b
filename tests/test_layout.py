"""
The package's layout keeps the data path visible: folders by job, no import
cycle, few top-level modules, modules small enough to read in one sitting,
and a core that imports no Twisted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import twisted_lambdagw

PACKAGE = Path(twisted_lambdagw.__file__).parent
NAME = "twisted_lambdagw"
MAX_TOP_LEVEL_MODULES = 12
MAX_MODULE_LINES = 600


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([NAME, *parts])] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    """
    The package's modules that C{module} imports, at any depth of its code
    (function-level and C{TYPE_CHECKING} imports included).
    """
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                target = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return {n for n in names if n == NAME or n.startswith(NAME + ".")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        graph[module] = {m for m in _imports(module, path) if m in modules and m != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    The strongly connected components of more than one module (Tarjan).
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


class LayoutTests:
    def test_no_import_cycle(self) -> None:
        """
        No module imports, directly or through others, a module that imports
        it: packages' C{__init__} modules aside, which only name their parts.
        """
        graph = _graph()
        for module in graph:
            if _modules()[module].name == "__init__.py":
                graph[module] = set()
        assert _cycles(graph) == []

    def test_the_cycle_check_finds_cycles(self) -> None:
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        assert _cycles(graph) == [["a", "b", "c"]]

    def test_few_top_level_modules(self) -> None:
        top = [p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
        assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(p.name for p in top)

    def test_modules_are_short(self) -> None:
        long = {
            str(path.relative_to(PACKAGE)): n
            for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
        }
        assert long == {}

    def test_core_imports_no_twisted(self) -> None:
        """
        Importing every module of the core loads neither Twisted nor any
        other part of the gateway.
        """
        core = sorted(m for m in _modules() if m.startswith(f"{NAME}.core"))
        code = (
            "import importlib, sys\n"
            f"for name in {core!r}:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m == 'twisted' or m.startswith('twisted.')"
            f" or (m.startswith('{NAME}.') and not m.startswith('{NAME}.core')))\n"
            "print(','.join(bad))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == ""
        assert len(core) >= 10
