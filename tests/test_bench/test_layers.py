"""The module graph: the layers import one way, and no cycle hides inside a function.

tasks imports nothing of ours; algorithms imports tasks; bench imports algorithms and tasks;
reports imports tasks and bench.records (what a record is); the command line (bench.cli and
bench.__main__) is the top and may import anything. Imports inside functions count: they
keep --help fast for heavy packages, never to dodge a cycle among our own modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "algorithms", "bench", "reports")
CLI = ("bench.cli", "bench.__main__")
MAY_IMPORT = {
    "tasks": ("tasks",),
    "algorithms": ("algorithms", "tasks"),
    "bench": ("bench", "algorithms", "tasks"),
    "reports": ("reports", "tasks", "bench.records", "bench"),  # bench: its __version__ only
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports anywhere in its file (functions included)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module; `from module import name`
            # the module (a package's own __init__ runs for every submodule: not an edge)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = our_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def _layer(name: str) -> str:
    return name.split(".")[0]


def _allowed(importer: str, imported: str) -> bool:
    if importer in CLI or importer.startswith("bench.cli."):
        return True
    if _layer(importer) == "reports" and _layer(imported) == "bench":
        return imported in ("bench", "bench.records")
    return _layer(imported) in MAY_IMPORT[_layer(importer)]


def test_the_layers_import_one_way():
    wrong = sorted(f"{a} imports {b}" for a, targets in graph().items() for b in targets
                   if not _allowed(a, b))
    assert not wrong, "\n".join(wrong)


def test_no_cycle_among_our_modules_not_even_through_a_function():
    edges = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_checks_see_what_they_look_for():
    """The graph finds imports inside functions and relative ones (else the tests above
    could pass on a graph that misses edges)."""
    edges = graph()
    assert "tasks.registry" in edges["tasks.envs"]
    assert "bench.records" in edges["reports.aggregate"]
    assert "bench.schedule" in edges["bench.cli.runs"]  # imported inside a command
    assert not _allowed("tasks.envs", "bench.records")
    assert not _allowed("reports.tables", "bench.run")
    assert _allowed("bench.cli", "reports.tables")
