"""The task sink: a queue and/or a task file, or the chain."""

import pytest

from chunkflow.errors import ParameterError
from chunkflow.geometry import BoundingBox, grid_bboxes
from chunkflow.queues import open_queue, read_task_file
from chunkflow.task_creation.dispatch import TaskSink, stream

BOXES = grid_bboxes(BoundingBox((0, 0, 0), (2, 4, 4)), (2, 2, 2))


def test_a_sink_sends_to_a_queue_and_a_file(tmp_path):
    queue = f"file://{tmp_path}/q"
    sink = TaskSink(queue, str(tmp_path / "tasks.txt"))
    assert not sink.streams
    done = sink.send(BOXES)
    assert done == [f"sent 4 tasks to {queue}", f"wrote 4 tasks to {tmp_path}/tasks.txt"]
    assert read_task_file(str(tmp_path / "tasks.txt")) == list(BOXES)
    assert sorted(open_queue(queue).peek(10)) == sorted(b.string for b in BOXES)
    # a rerun into the same queue is refused unless it appends
    with pytest.raises(ParameterError, match="already holds 4 messages; `append` adds"):
        TaskSink(queue).open()
    TaskSink(queue, append=True).send(BOXES[:1])
    assert open_queue(queue).count() == 5


def test_a_sink_refuses_a_task_file_without_format_before_anything_is_sent(tmp_path):
    sink = TaskSink(f"file://{tmp_path}/q", str(tmp_path / "tasks.csv"))
    with pytest.raises(ParameterError, match="`task_file` .*tasks.csv: expected a .npy or .txt"):
        sink.send(BOXES)
    assert not (tmp_path / "q").exists() and not (tmp_path / "tasks.csv").exists()


def test_without_queue_or_file_the_tasks_stream():
    assert TaskSink().streams
    tasks = list(stream(BOXES, mip=3))
    assert [t.bbox for t in tasks] == list(BOXES)
    assert all(t.log["mip"] == 3 for t in tasks)


def test_a_dry_run_sends_and_opens_nothing(tmp_path):
    sink = TaskSink(f"file://{tmp_path}/q", str(tmp_path / "tasks.txt"))
    assert sink.send(BOXES, dry_run=True) == ["dry run, 4 tasks not sent"]
    assert not (tmp_path / "q").exists() and not (tmp_path / "tasks.txt").exists()
