import time

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.logs import task_log_record
from chunkflow.task import Task


def test_named_items_and_clear_error_for_unknown_names():
    task = Task(image=Chunk(np.zeros((2, 2, 2))))
    assert task.chunk("image").shape == (2, 2, 2)
    with pytest.raises(ChunkflowError, match="no chunk named 'seg'.*holds: image"):
        task.chunk("seg")
    task["n"] = 3
    with pytest.raises(ChunkflowError, match="not a chunk"):
        task.chunk("n")


def test_timer_accumulates_per_name():
    task = Task()
    with task.timer("a"):
        time.sleep(0.01)
    with task.timer("a"):
        time.sleep(0.01)
    with task.timer("b"):
        pass
    assert task.log["timer"]["a"] >= 0.02
    assert set(task.log["timer"]) == {"a", "b"}


def test_skip_and_resume():
    task = Task(bbox=BoundingBox((0, 0, 0), (1, 1, 1)))
    assert not task.skipped
    task.skip("all zero", to="save")
    assert task.skipped and task.skip_to == "save"
    record = task_log_record(task)  # the one log schema, chunkflow.logs
    assert record["skipped"] == "all zero" and record["bbox"] == "0-1_0-1_0-1"
    task.resume()
    assert not task.skipped and task.skip_to is None


def test_bbox_set_only_if_missing():
    task = Task()
    first = BoundingBox((0, 0, 0), (1, 1, 1))
    task.set_bbox_if_missing(first)
    task.set_bbox_if_missing(BoundingBox((0, 0, 0), (2, 2, 2)))
    assert task.bbox == first
