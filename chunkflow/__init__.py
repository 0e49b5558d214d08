"""chunkflow: process petascale 3D images chunk by chunk with composable operators.

`import chunkflow` stays light; the core types load on first use::

    from chunkflow import Chunk, BoundingBox, Cartesian

and a chain of operators runs from Python as from the command line (`chunkflow.pipeline`)::

    from chunkflow import Pipeline, op
"""

__version__ = "2.0.0"

__all__ = [
    "BoundingBox",
    "Cartesian",
    "Chunk",
    "ChunkflowError",
    "LayerType",
    "Operator",
    "Pipeline",
    "Task",
    "op",
]

_LAZY = {
    "BoundingBox": "chunkflow.geometry",
    "Cartesian": "chunkflow.geometry",
    "Chunk": "chunkflow.chunk",
    "LayerType": "chunkflow.chunk",
    "ChunkflowError": "chunkflow.errors",
    "Task": "chunkflow.task",
    "Operator": "chunkflow.pipeline",
    "Pipeline": "chunkflow.pipeline",
    "op": "chunkflow.operators",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chunkflow' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
