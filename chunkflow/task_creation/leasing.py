"""Tasks for workers: leased from a queue one at a time, or a job's share of a task file."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from chunkflow.errors import ParameterError

logger = logging.getLogger(__name__)


def lease_tasks(queue_name, endpoint_url=None, *, options=None, dry_run=False, report=None):
    """Tasks leased from the queue `queue_name` by a `Worker` (`chunkflow.queues.worker`) with
    `options` (`WorkerOptions`); `report(line, complete)` gets its closing line. A dry run
    reads the waiting tasks without leasing them (`peek_tasks`)."""
    from chunkflow.queues import open_queue
    from chunkflow.queues.worker import Worker, WorkerOptions

    options = options or WorkerOptions()
    queue = open_queue(queue_name, endpoint_url)
    if dry_run:
        return peek_tasks(queue, queue_name, options.num)
    return Worker(queue, queue_name, options, report=report).tasks()


def peek_tasks(queue, queue_name: str, num: int) -> list:
    """Tasks of the waiting messages, read without leasing them; none where the queue cannot
    be read so (SQS)."""
    from chunkflow.queues import parse_body
    from chunkflow.task import Task

    bodies = queue.peek(num)
    if bodies is None:
        logger.info(
            "fetch-task: dry run, %s holds %s; SQS messages cannot be read without leasing "
            "them, so no task is fetched",
            queue_name,
            queue.counts(),
        )
        return []
    logger.info("fetch-task: dry run, %d tasks read from %s, none leased", len(bodies), queue_name)
    return [Task(bbox=parse_body(body)) for body in bodies]


def job_tasks(file_path: str, job_index: int | None = None, num_tasks: int = 1) -> Iterable:
    """Tasks `job_index * num_tasks` .. `+ num_tasks - 1` of a task file; the job index is
    $SLURM_ARRAY_TASK_ID when `job_index` is None."""
    from chunkflow.queues import read_task_file
    from chunkflow.task import Task

    if job_index is None:
        value = os.environ.get("SLURM_ARRAY_TASK_ID")
        if value is None or not value.isdigit():
            raise ParameterError("`job_index` is missing and $SLURM_ARRAY_TASK_ID is not set")
        job_index = int(value)
    bboxes = read_task_file(file_path)
    mine = bboxes[job_index * num_tasks : (job_index + 1) * num_tasks]
    if not mine:
        logger.warning(
            "fetch-task-from-file: job %d has no tasks (%d in %s)",
            job_index,
            len(bboxes),
            file_path,
        )
    return [Task(bbox=bbox) for bbox in mine]
