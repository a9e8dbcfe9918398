"""The package's shape. Its import graph has no cycle: lazy imports inside functions count (they
hide a cycle, they do not remove it); imports under `if TYPE_CHECKING:` do not (annotations only).
Importing `a.b.c` runs `a/b/__init__.py` first, so that is an edge too. The same holds between
the first-level parts (codegen/, firmware/, bundle/, ...: each one node). The device stages
have no function over 80 lines and no module over 600."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_edge"


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of a package by dotted name (a package by its own name: its __init__)."""
    names = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)


def _ancestors(name: str) -> list[str]:
    """a.b.c -> [a, a.b]: the packages whose __init__ runs before a.b.c can."""
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of the package that `name` imports, at any depth of its code, with the
    packages whose __init__ that import runs (those `name` is not itself inside)."""
    found, todo = set(), list(ast.parse(path.read_text()).body)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    root = name.split(".")[0]
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
            if not target or target.split(".")[0] != root:
                continue
            # Its own packages are initialised (or initialising) before `name` runs at all.
            inside = {name, *_ancestors(name)}
            found.update(m for m in (*_ancestors(target), target) if m in modules)
            found.difference_update(inside)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules it imports (lazily or not), for every module of a package."""
    modules = module_names(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def part_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with each first-level part (mnist_edge.codegen and everything under
    it; mnist_edge.verify alone) as one node."""

    def part(name: str) -> str:
        return ".".join(name.split(".")[:2])

    parts: dict[str, set[str]] = {part(m): set() for m in graph}
    for name, targets in graph.items():
        parts[part(name)].update(part(t) for t in targets if part(t) != part(name))
    return parts


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


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_a_package_init_cycle_and_a_cycle_between_parts_are_found(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            # a.x imports only the leaf b.y, but that runs b/__init__, which reaches back.
            "pkg/a/__init__.py": "",
            "pkg/a/x.py": "from pkg.b.y import f\n",
            "pkg/b/__init__.py": "from pkg.b.z import g\n",
            "pkg/b/y.py": "def f():\n    pass\n",
            "pkg/b/z.py": "def g():\n    from pkg.a import x\n",
            # c and d: no module cycle, but each part imports the other.
            "pkg/c/__init__.py": "",
            "pkg/c/m.py": "import pkg.d.n\n",
            "pkg/c/l.py": "",
            "pkg/d/__init__.py": "",
            "pkg/d/n.py": "",
            "pkg/d/k.py": "from ..c import l\n",
            # Inside its own package: b.z's parent is no edge of b.z's (it runs first anyway).
            "pkg/e/__init__.py": "from pkg.e.v import h\n",
            "pkg/e/v.py": "from pkg.e.w import j\n",
            "pkg/e/w.py": "",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.a.x"] == {"pkg.b", "pkg.b.y"}
    assert graph["pkg.d.k"] == {"pkg.c", "pkg.c.l"} and graph["pkg.e.v"] == {"pkg.e.w"}
    assert cycles(graph) == [["pkg.a.x", "pkg.b", "pkg.b.z"]]
    parts = part_graph(graph)
    assert sorted(cycles(parts)) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    # Without the edge to b/__init__, a.x -> b.y alone closes no cycle: the edge is what counts.
    graph["pkg.a.x"].discard("pkg.b")
    assert cycles(graph) == []


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40  # the whole package was read
    assert cycles(graph) == [], "import cycles (lazy imports and package __init__ included)"


def test_the_first_level_parts_have_no_import_cycle():
    parts = part_graph(import_graph())
    assert {"mnist_edge.codegen", "mnist_edge.firmware", "mnist_edge.bundle"} <= set(parts)
    assert {"mnist_edge.proofs", "mnist_edge.records", "mnist_edge.device"} <= set(parts)
    assert "mnist_edge.runtimes" in parts and "mnist_edge.verify" in parts
    assert cycles(parts) == [], "import cycles between codegen/, firmware/, bundle/, ..."


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
