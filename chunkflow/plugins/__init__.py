"""User plugins: a Python file with `execute(*inputs, **args)`.

`plugin -f my_plugin.py -i image -o result -a 'sigma=2'` loads `my_plugin.py` (files next to it
can be imported), calls `execute(image_chunk, sigma=2)` and stores what it returns under the
output names. A name without a path, like `invert`, is looked up among the built-in plugins in
this folder. Arguments are parsed as Python literals, never evaluated as code.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import sys

from chunkflow.errors import ChunkflowError

BUILTIN_DIR = os.path.dirname(os.path.abspath(__file__))


def builtin_plugins() -> list[str]:
    return sorted(
        f[:-3] for f in os.listdir(BUILTIN_DIR) if f.endswith(".py") and not f.startswith("_")
    )


def find_plugin(name: str) -> str:
    """The file of plugin `name`: a path (with or without .py) or a built-in name."""
    candidates = [name, name + ".py", os.path.join(BUILTIN_DIR, name + ".py")]
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise ChunkflowError(
        f"unknown plugin {name!r}: no file {name} or {name}.py, and no built-in plugin of that "
        f"name (built-ins: {', '.join(builtin_plugins())})"
    )


def load_source(path: str, what: str = "plugin"):
    """Import a Python file as a module; files next to it can be imported.

    No __pycache__ is written beside the file: its folder may be shared or read-only, and
    a dry run writes nothing.
    """
    if not path or not os.path.isfile(path):
        raise ChunkflowError(f"{what} {path}: no such file")
    folder = os.path.dirname(os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(f"chunkflow_user_{abs(hash(path))}", path)
    if spec is None:
        raise ChunkflowError(f"{what} {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, folder)
    dont_write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise ChunkflowError(f"{what} {path} failed to load: {type(err).__name__}: {err}") from err
    finally:
        sys.dont_write_bytecode = dont_write_bytecode
        sys.path.remove(folder)
    return module


@functools.cache
def load_plugin(name: str):
    """Import the plugin file and return its `execute` function."""
    path = find_plugin(name)
    execute = getattr(load_source(path), "execute", None)
    if not callable(execute):
        raise ChunkflowError(f"plugin {path} defines no function execute(*inputs, **args)")
    return execute


def parse_args(text: str | None) -> dict:
    """Parse `a=1;b=(1,2);c=name` into keyword arguments, values as Python literals."""
    kwargs = {}
    if not text:
        return kwargs
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ChunkflowError(f"plugin argument {item!r}: expected key=value")
        value = value.strip()
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def run_plugin(execute, inputs: list, kwargs: dict, output_names: list[str]) -> dict:
    """Call the plugin and name its results; bare arrays take the first input chunk's place."""
    import numpy as np

    from chunkflow.chunk import Chunk

    result = execute(*inputs, **kwargs)
    if not output_names:
        return {}
    values = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(values) != len(output_names):
        raise ChunkflowError(
            f"plugin returned {len(values)} value(s) for {len(output_names)} "
            f"output name(s) {','.join(output_names)}"
        )
    template = next((x for x in inputs if isinstance(x, Chunk)), None)
    named = {}
    for name, value in zip(output_names, values):
        if (
            isinstance(value, np.ndarray)
            and not isinstance(value, Chunk)
            and template is not None
            and value.ndim in (3, 4)
            and value.shape[-3:] == template.shape[-3:]
        ):
            value = template.with_array(value)
        named[name] = value
    return named
