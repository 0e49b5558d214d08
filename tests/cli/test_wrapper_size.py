"""Operator wrappers only parse options and call the library: no wrapper body over 20 lines.

The wrappers are found in the source (functions under an `@operator(...)` decorator in
chunkflow/cli/*.py) and checked against the registry, so a new operator cannot slip past.
A body is counted from its first statement after the docstring to its last line, as the
formatter lays it out (no `fmt: skip`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import chunkflow.cli.main  # noqa: F401  (importing registers every operator)
from chunkflow.cli.framework import OPERATORS

CLI = Path(chunkflow.cli.main.__file__).parent
MAX_BODY_LINES = 20


def _operator_name(decorator: ast.expr) -> str | None:
    if (
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Name)
        and decorator.func.id == "operator"
        and decorator.args
        and isinstance(decorator.args[0], ast.Constant)
    ):
        return decorator.args[0].value
    return None


def body_lines(function: ast.FunctionDef) -> int:
    """Lines of the body of `function`, without its docstring."""
    body = function.body
    if ast.get_docstring(function) is not None:
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def wrappers() -> dict[str, tuple[str, int]]:
    """Each operator's name: (where its wrapper is, the length of its body)."""
    return {name: (where, lines) for name, (where, lines, _) in _wrappers().items()}


def _wrappers() -> dict[str, tuple[str, int, str]]:
    found = {}
    for path in sorted(CLI.glob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text, str(path))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                name = _operator_name(decorator)
                if name is not None:
                    where = f"{path.name}:{node.lineno} {node.name}"
                    found[name] = (where, body_lines(node), ast.get_source_segment(text, node))
    return found


def test_every_registered_operator_is_measured():
    assert set(wrappers()) == set(OPERATORS)


def test_no_wrapper_body_over_20_lines():
    long = sorted(
        f"{where} ({name}): {lines} lines"
        for name, (where, lines) in wrappers().items()
        if lines > MAX_BODY_LINES
    )
    assert not long, "wrappers to shorten:\n" + "\n".join(long)


def test_no_wrapper_is_kept_short_by_hand_formatting():
    """Lines packed by hand past the formatter would make the count say nothing."""
    packed = sorted(
        where
        for where, _, source in _wrappers().values()
        if "fmt: skip" in source or "fmt: off" in source
    )
    assert not packed, packed


def test_body_lines_skips_the_docstring():
    source = 'def f(task):\n    """Doc.\n\n    More."""\n    a = 1\n\n    return a\n'
    assert body_lines(ast.parse(source).body[0]) == 3
