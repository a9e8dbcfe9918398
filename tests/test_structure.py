"""The package's shape. Its import graph has no cycle: lazy imports inside functions count (they
hide a cycle, they do not remove it); imports under `if TYPE_CHECKING:` do not (annotations only).
The device stages have no function over 80 lines and no module over 600."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_edge"


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of the package that `name` imports, at any depth of its code."""
    found, todo = set(), list(ast.parse(path.read_text()).body)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from pkg import module` imports the module; `from module import name` the module.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            todo.extend(ast.iter_child_nodes(node))
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("mnist_edge"):
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    # And a lazy import is read as an import.
    modules = {"mnist_edge.x": tmp_path / "x.py", "mnist_edge.y": tmp_path / "y.py"}
    modules["mnist_edge.x"].write_text("def f():\n    from mnist_edge.y import g\n")
    assert imports_of("mnist_edge.x", modules["mnist_edge.x"], modules) == {"mnist_edge.y"}


def test_the_package_has_no_import_cycle():
    modules = module_names()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert len(graph) > 40  # the whole package was read
    assert cycles(graph) == [], "import cycles (lazy imports included)"


# The device stages stay readable: a function a screen long, a module a sitting long.
DEVICE_STAGES = ("bundle", "firmware", "proofs", "device", "codegen")
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600


def test_device_stages_have_short_functions_and_modules():
    too_long = []
    for stage in DEVICE_STAGES:
        for path in sorted((PACKAGE / stage).rglob("*.py")):
            text = path.read_text()
            where = path.relative_to(PACKAGE.parent)
            if len(text.splitlines()) > MAX_MODULE_LINES:
                too_long.append(f"{where}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        too_long.append(f"{where}:{node.lineno} {node.name}: {lines} lines")
    assert too_long == []
