"""Distributed runs: fetch tasks from a queue or a task file, delete them when done."""

from __future__ import annotations

import logging
import os

import click

from chunkflow.cli.framework import operator
from chunkflow.errors import ChunkflowError

logger = logging.getLogger("chunkflow")

QUEUE_HELP = (
    "Queue: NAME or sqs://NAME (AWS SQS), or a local queue folder (file://PATH, or a path "
    "with a /)."
)


def endpoint_option(fn):
    return click.option(
        "--endpoint-url",
        default=None,
        help="SQS-compatible endpoint [default: AWS, or $AWS_ENDPOINT_URL_SQS].",
    )(fn)


def worker_options(fn):
    """The options of fetch-task and fetch-task-from-sqs."""
    options = [
        click.option("-q", "--queue-name", required=True, help=QUEUE_HELP),
        click.option(
            "-v",
            "--visibility-timeout",
            type=click.IntRange(min=1),
            default=1800,
            show_default=True,
            help="Seconds a fetched task stays hidden from other workers.",
        ),
        click.option(
            "-n",
            "--num",
            type=int,
            default=-1,
            show_default=True,
            help="Tasks to fetch; -1: until the queue is drained.",
        ),
        click.option(
            "-r",
            "--retry-times",
            type=click.IntRange(min=0),
            default=2,
            show_default=True,
            help="Empty polls in a row, with nothing leased elsewhere, before stopping.",
        ),
        click.option(
            "-w",
            "--wait-seconds",
            type=click.IntRange(0, 20),
            default=2,
            show_default=True,
            help="Long-polling wait of each poll.",
        ),
        click.option(
            "--max-retries",
            type=click.IntRange(min=0),
            default=2,
            show_default=True,
            help="Retries of a failing task before it goes to the dead-letter place "
            "(SQS: the queue NAME-dead; local: the queue's dead/ folder).",
        ),
        click.option(
            "--stop-on-error",
            is_flag=True,
            help="Stop at the first failing task (it comes back after the visibility timeout).",
        ),
        click.option(
            "--lease-wait",
            type=click.FloatRange(min=0),
            default=None,
            help="On an empty queue, seconds to wait for tasks leased by other workers; "
            "0: do not wait [default: the visibility timeout].",
        ),
        click.option(
            "--heartbeat/--no-heartbeat",
            default=True,
            show_default=True,
            help="Renew the lease while a task is processed, so long tasks are not handed "
            "out twice.",
        ),
        endpoint_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _work(queue_name, endpoint_url, config, sqs_only=False, **options):
    from chunkflow.queues import open_queue, queue_kind
    from chunkflow.queues.worker import Worker, WorkerOptions

    if sqs_only and queue_kind(queue_name)[0] != "sqs":
        raise ChunkflowError(f"{queue_name!r} is a local queue folder; use fetch-task")
    queue = open_queue(queue_name, endpoint_url)
    if config.dry_run:
        return _peek(queue, queue_name, options["num"])

    def report(line, complete):  # printed after the run's timing table
        config.closing.append((line, complete))

    return Worker(queue, queue_name, WorkerOptions(**options), report=report).tasks()


def _peek(queue, queue_name, num):
    """Tasks of the waiting messages, read without leasing them (dry run)."""
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


@operator("fetch-task", family="distributed", kind="source", effects=("queue",), dry_run="self")
@worker_options
def fetch_task(task, queue_name, endpoint_url, config, **options):
    """Lease tasks from a queue, one at a time, until it is drained.

    Finish the chain with delete-task-in-queue. A task whose operator fails is released for
    another try, and after --max-retries retries it goes to the dead-letter place with its
    error; a message that is not a task goes there at once. A worker that dies lets its lease
    expire and the task comes back. On an empty queue the worker waits while other workers
    hold leases, then stops; its last line counts what is done, failed, dead and still leased
    elsewhere, and it exits non-zero unless all of it is done. Under --dry-run a local queue is
    read without leasing and nothing is deleted.
    """
    return _work(queue_name, endpoint_url, config, **options)


@operator(
    "fetch-task-from-sqs",
    family="distributed",
    kind="source",
    effects=("queue",),
    dry_run="self",
)
@worker_options
def fetch_task_from_sqs(task, queue_name, endpoint_url, config, **options):
    """fetch-task from an AWS SQS queue only: a local queue folder is refused."""
    return _work(queue_name, endpoint_url, config, sqs_only=True, **options)


@operator("delete-task-in-queue", family="distributed", kind="finalizer", effects=("queue",))
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


@operator("queue-status", family="distributed")
@click.option("-q", "--queue-name", required=True, help=QUEUE_HELP)
@click.option(
    "--check",
    is_flag=True,
    help="Exit non-zero unless the queue is drained: nothing pending, leased or dead.",
)
@click.option(
    "--show-dead",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Dead letters of a local queue to print with their reasons.",
)
@endpoint_option
def queue_status(task, queue_name, check, show_dead, endpoint_url):
    """Print how many tasks are pending, leased and dead in a queue (and why they died)."""
    from chunkflow.queues import open_queue

    queue = open_queue(queue_name, endpoint_url)
    counts = queue.counts()
    lines = [f"{queue_name}: {counts}"]
    letters = queue.dead_letters()
    lines += [f"  dead {body!r}: {reason}" for body, reason in letters[:show_dead]]
    if len(letters) > show_dead:
        lines.append(f"  ... and {len(letters) - show_dead} more dead letters")
    click.echo("\n".join(lines))
    task["queue_counts"] = counts
    if check and (counts.pending or counts.leased or counts.dead):
        raise ChunkflowError(f"{queue_name} is not drained: {counts}")


@operator("queue-purge", family="distributed", effects=("queue",))
@click.option("-q", "--queue-name", required=True, help=QUEUE_HELP)
@endpoint_option
def queue_purge(task, queue_name, endpoint_url):
    """Delete every message of a queue: pending, leased and dead."""
    from chunkflow.queues import open_queue

    counts = open_queue(queue_name, endpoint_url).purge()
    logger.info("queue-purge: %s purged (it held %s)", queue_name, counts)


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
