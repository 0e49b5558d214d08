"""Distributed runs: fetch tasks from a queue or a task file, delete them when done."""

from __future__ import annotations

import logging

import click

from chunkflow.cli.framework import operator
from chunkflow.errors import ChunkflowError, flag_names

logger = logging.getLogger(__name__)

# A missing queue (`chunkflow.queues.open_queue`, `create`) is made by generate-tasks.
QUEUE_FLAGS = dict(create="generate-tasks --queue-name")

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


def _work(queue_name, endpoint_url, config, **options):
    from chunkflow.queues.worker import WorkerOptions
    from chunkflow.task_creation.leasing import lease_tasks

    def report(line, complete):  # printed after the run's timing table
        config.closing.append((line, complete))

    with flag_names(**QUEUE_FLAGS):
        return lease_tasks(
            queue_name,
            endpoint_url,
            options=WorkerOptions(**options),
            dry_run=config.dry_run,
            report=report,
        )


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
    from chunkflow.queues import queue_kind

    if queue_kind(queue_name)[0] != "sqs":
        raise ChunkflowError(f"{queue_name!r} is a local queue folder; use fetch-task")
    return _work(queue_name, endpoint_url, config, **options)


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

    with flag_names(**QUEUE_FLAGS):
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

    with flag_names(**QUEUE_FLAGS):
        queue = open_queue(queue_name, endpoint_url)
    counts = queue.purge()
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
    from chunkflow.errors import flag_names
    from chunkflow.task_creation.leasing import job_tasks

    with flag_names(job_index="--job-index"):
        yield from job_tasks(file_path, job_index, num_tasks)
