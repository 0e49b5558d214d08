"""Layers run one way: no chunkflow module imports, directly or through others, a module that
imports it back.

The import graph is read from the source with `ast`, not by importing: an edge A -> B for every
`import`/`from ... import` of a chunkflow module B in A, at module level and inside functions
alike (an import moved into a function still makes the cycle, it only hides it until run time).
`from chunkflow.x import y` is an edge to the module `chunkflow.x.y` when there is one, else to
`chunkflow.x`. The parent packages Python runs first (`chunkflow.x` for `chunkflow.x.y`) are
not edges: a package that imports its own modules is not a cycle with each of them.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chunkflow"

# Cycles that stay for now, each as the sorted modules of one strongly connected component, with
# why. Empty: a new cycle fails `test_no_import_cycles`; so does one listed here that is gone.
ALLOWED_CYCLES: list[tuple[str, ...]] = []


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package at `root`."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (see the module doc)."""
    names = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parents, base] if base else parents)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in names:  # `import a.b.c` of a function c, say
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_cycles():
    found = cycles(import_graph(PACKAGE))
    new = [cycle for cycle in found if cycle not in ALLOWED_CYCLES]
    assert not new, f"import cycles among chunkflow modules: {new}"
    gone = [cycle for cycle in ALLOWED_CYCLES if cycle not in found]
    assert not gone, f"cycles allowed here no longer exist; remove them: {gone}"


def test_the_graph_sees_the_layers():
    """The graph holds the edges the layers are made of, one way (a graph that missed imports
    would find no cycle either)."""
    graph = import_graph(PACKAGE)
    assert len(graph) > 80 and sum(map(len, graph.values())) > 200
    assert "chunkflow.io.shard_writes" in graph["chunkflow.io.precomputed"]
    assert "chunkflow.io.volume" in graph["chunkflow.io.shard_writes"]
    assert "chunkflow.io.precomputed" not in graph["chunkflow.io.shard_writes"]
    assert {"chunkflow.queues.local", "chunkflow.queues.sqs"} <= graph["chunkflow.queues"]
    for queue in ("chunkflow.queues.local", "chunkflow.queues.sqs"):
        assert graph[queue] & {"chunkflow.queues"} == set(), queue
        assert "chunkflow.queues.messages" in graph[queue]
    assert "chunkflow.errors" in graph["chunkflow.pipeline"]


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


@pytest.mark.parametrize(
    "files, expected",
    [
        # a function-level import closes the cycle as much as a module-level one
        (
            {
                "__init__.py": "",
                "a.py": "from pkg.b import f\n",
                "b.py": "def f():\n    from pkg import a\n",
            },
            [("pkg.a", "pkg.b")],
        ),
        # a package and its module: the module imports the package's __init__, which opens it
        (
            {
                "__init__.py": "def open():\n    from .sub.queue import Q\n",
                "sub/__init__.py": "",
                "sub/queue.py": "from .. import open\n",
            },
            [("pkg", "pkg.sub.queue")],
        ),
        # three modules round, through `import a.b` and `from . import b`
        (
            {
                "__init__.py": "",
                "a.py": "import pkg.b\n",
                "b.py": "from . import c\n",
                "c.py": "from pkg.a import x as y\n",
                "d.py": "from pkg import a, b\n",
            },
            [("pkg.a", "pkg.b", "pkg.c")],
        ),
        # layers one way: a package opening its modules, which share a third
        (
            {
                "__init__.py": "from pkg.sub import q\n",
                "sub/__init__.py": "",
                "sub/q.py": "from pkg.sub.types import T\n",
                "sub/types.py": "T = 1\n",
            },
            [],
        ),
    ],
    ids=["function-level", "package-init", "three-round", "one-way"],
)
def test_cycles_are_found(tmp_path, files, expected):
    assert cycles(import_graph(_package(tmp_path, files))) == expected
