"""Distributed runs: fetch tasks from a queue or a task file, delete them when done."""

from __future__ import annotations

import logging
import os

import click

from chunkflow.cli.framework import operator

logger = logging.getLogger("chunkflow")

QUEUE_HELP = "sqs://NAME (AWS SQS), or a local queue folder (file:///PATH, a path or a name)."


def endpoint_option(fn):
    return click.option(
        "--endpoint-url",
        default=None,
        help="SQS-compatible endpoint [default: AWS, or $AWS_ENDPOINT_URL_SQS].",
    )(fn)


@operator("fetch-task", family="distributed", aliases=["fetch-task-from-sqs"], kind="source")
@click.option("-q", "--queue-name", required=True, help=QUEUE_HELP)
@click.option(
    "-v",
    "--visibility-timeout",
    type=click.IntRange(min=1),
    default=1800,
    show_default=True,
    help="Seconds a fetched task stays hidden from other workers.",
)
@click.option(
    "-n",
    "--num",
    type=int,
    default=-1,
    show_default=True,
    help="Tasks to fetch; -1: until the queue stays empty.",
)
@click.option(
    "-r",
    "--retry-times",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Empty polls in a row before giving up.",
)
@click.option(
    "-w",
    "--wait-seconds",
    type=click.IntRange(0, 20),
    default=20,
    show_default=True,
    help="Long-polling wait of each poll.",
)
@click.option(
    "--heartbeat/--no-heartbeat",
    default=True,
    show_default=True,
    help="Renew the lease while a task is processed, so long tasks are not handed out twice.",
)
@endpoint_option
def fetch_task(
    task, queue_name, visibility_timeout, num, retry_times, wait_seconds, heartbeat, endpoint_url
):
    """Fetch tasks from a queue, one at a time, until it stays empty.

    Finish the chain with delete-task-in-queue; a task that is not deleted (the worker died or
    an operator failed) comes back after the visibility timeout.
    """
    from chunkflow.progress import progress, progress_enabled
    from chunkflow.queues import open_queue, parse_body
    from chunkflow.queues.lease import Lease
    from chunkflow.task import Task

    queue = open_queue(queue_name, endpoint_url)
    waiting = queue.count() if progress_enabled() and num < 0 else num
    bar = progress(desc=f"tasks from {queue_name}", total=waiting, unit="task")
    fetched = empty = 0
    while num < 0 or fetched < num:
        message = queue.receive(visibility_timeout, wait_seconds)
        if message is None:
            empty += 1
            if empty > retry_times:
                bar.close()
                logger.info("fetch-task: %s stayed empty, %d tasks fetched", queue_name, fetched)
                return
            continue
        empty = 0
        bbox = parse_body(message.body)
        lease = Lease(queue, message, visibility_timeout)
        if heartbeat:
            lease.start_heartbeat()
        new = Task(bbox=bbox)
        new.lease = lease
        new.log["queue"] = queue_name
        fetched += 1
        try:
            yield new
        finally:
            lease.stop()
        bar.update()
    bar.close()


@operator("delete-task-in-queue", family="distributed", kind="finalizer")
def delete_task_in_queue(task):
    """Delete the task's message from its queue; runs for skipped tasks too."""
    if task.lease is None:
        logger.warning("delete-task-in-queue: task %s did not come from a queue", task.bbox)
        return
    if not task.lease.delete():
        logger.warning(
            "delete-task-in-queue: the lease of task %s had expired; another worker "
            "may process it again",
            task.bbox,
        )


@operator("fetch-task-from-file", family="distributed", kind="source")
@click.option("-f", "--file-path", required=True, help="Task file (.npy or .txt).")
@click.option(
    "-i",
    "--job-index",
    type=click.IntRange(min=0),
    default=None,
    help="Index of this job [default: $SLURM_ARRAY_TASK_ID].",
)
@click.option(
    "-n",
    "--num-tasks",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Tasks per job: job i takes tasks i*n .. i*n+n-1.",
)
def fetch_task_from_file(task, file_path, job_index, num_tasks):
    """Take this job's tasks from a task file (Slurm job arrays, GNU parallel)."""
    from chunkflow.errors import ChunkflowError
    from chunkflow.queues import read_task_file
    from chunkflow.task import Task

    if job_index is None:
        value = os.environ.get("SLURM_ARRAY_TASK_ID")
        if value is None or not value.isdigit():
            raise ChunkflowError("--job-index is missing and $SLURM_ARRAY_TASK_ID is not set")
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
    for bbox in mine:
        yield Task(bbox=bbox)
