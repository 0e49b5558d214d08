"""chunkflow: process petascale 3D images chunk by chunk with composable operators.

`import chunkflow` stays light; the core types load on first use::

    from chunkflow import Chunk, BoundingBox, Cartesian
"""

__version__ = "2.0.0"

__all__ = ["BoundingBox", "Cartesian", "Chunk", "ChunkflowError", "LayerType", "Task"]

_LAZY = {
    "BoundingBox": "chunkflow.geometry",
    "Cartesian": "chunkflow.geometry",
    "Chunk": "chunkflow.chunk",
    "LayerType": "chunkflow.chunk",
    "ChunkflowError": "chunkflow.errors",
    "Task": "chunkflow.task",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chunkflow' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
