"""Helpers the operator wrappers share (chunkflow.cli.framework)."""

from __future__ import annotations

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.cli.framework import chunks_on_one_grid, parameters
from chunkflow.errors import ChunkflowError
from chunkflow.task import Task


def test_parameters_rename_options_for_a_library_call():
    options = dict(roi_start=(1, 2, 3), stride=None, other=1)
    renamed = parameters(options, dict(roi_start="start", stride="stride"))
    assert renamed == dict(start=(1, 2, 3), stride=None)
    assert parameters(options, ("stride",)) == dict(stride=None)


def test_chunks_on_one_grid_names_the_chunks_that_do_not_line_up():
    task = Task(a=Chunk(np.zeros((2, 2, 2))), b=Chunk(np.zeros((2, 2, 2))))
    assert [c.bbox for c in chunks_on_one_grid(task, "a", "b")] == [task["a"].bbox] * 2
    task["c"] = Chunk(np.zeros((2, 2, 2)), (1, 0, 0))
    with pytest.raises(ChunkflowError, match="'a' .* and chunk 'c' .* do not cover the same"):
        chunks_on_one_grid(task, "a", "b", "c")
