"""Tasks for workers: leased from a queue, or a job's share of a task file."""

import pytest

from chunkflow.errors import ParameterError
from chunkflow.geometry import BoundingBox, grid_bboxes
from chunkflow.queues import open_queue, write_task_file
from chunkflow.queues.worker import WorkerOptions
from chunkflow.task_creation.dispatch import TaskSink
from chunkflow.task_creation.leasing import job_tasks, lease_tasks

BOXES = list(grid_bboxes(BoundingBox((0, 0, 0), (2, 4, 6)), (2, 2, 2)))


def test_job_tasks_take_their_share(tmp_path, monkeypatch):
    path = str(tmp_path / "tasks.npy")
    write_task_file(path, BOXES)
    assert [t.bbox for t in job_tasks(path, 1, 2)] == BOXES[2:4]
    assert [t.bbox for t in job_tasks(path, 2, 4)] == []  # past the end: no task
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    assert [t.bbox for t in job_tasks(path)] == BOXES[5:6]
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    with pytest.raises(ParameterError, match="`job_index` is missing"):
        job_tasks(path)


def test_a_dry_run_reads_without_leasing(tmp_path):
    queue = f"file://{tmp_path}/q"
    TaskSink(queue).send(BOXES)
    peeked = lease_tasks(queue, options=WorkerOptions(num=2), dry_run=True)
    assert len(peeked) == 2 and {t.bbox for t in peeked} <= set(BOXES)
    assert open_queue(queue).counts().leased == 0


def test_leased_tasks_are_settled_by_their_lease(tmp_path):
    queue = f"file://{tmp_path}/q"
    TaskSink(queue).send(BOXES)
    lines = []
    options = WorkerOptions(retry_times=0, wait_seconds=0, heartbeat=False, lease_wait=0)
    seen = []
    for task in lease_tasks(queue, options=options, report=lambda *a: lines.append(a)):
        seen.append(task.bbox)
        assert task.lease.delete()
    assert sorted(seen, key=str) == sorted(BOXES, key=str)
    assert open_queue(queue).count() == 0
    assert lines and lines[0][1] is True and "6 tasks done" in lines[0][0]
