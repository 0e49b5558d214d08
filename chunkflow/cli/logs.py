"""Task logs: save-log (alias upload-log), log-summary and cloud-watch.

The log format is documented in `chunkflow.logs`; `save --upload-log` writes the same one.
"""

from __future__ import annotations

import logging

import click

from chunkflow.cli.framework import operator, vec3_option
from chunkflow.errors import ChunkflowError

logger = logging.getLogger(__name__)

LOG_DIR_HELP = "Folder of the task logs {bbox}.json: a local path, file://, gs:// or s3://."


@operator(
    "save-log", family="distributed", aliases=["upload-log"], kind="finalizer", effects=("logs",)
)
@click.option("-l", "--log-dir", required=True, help=LOG_DIR_HELP)
def save_log(task, log_dir):
    """Write the task log to {log-dir}/{bbox}.json (skipped tasks too).

    The log holds the bbox and its voxel count, the seconds of each operator so far (in chain
    order), the device, the skip reason, a UTC timestamp and the hostname; see
    `chunkflow.logs`. Summarize a folder of logs with log-summary.
    """
    from chunkflow.logs import write_task_log

    name = write_task_log(task, log_dir)
    logger.debug("save-log: wrote %s/%s", log_dir.rstrip("/"), name)


@operator("log-summary", family="distributed")
@click.option("-l", "--log-dir", required=True, help=LOG_DIR_HELP)
@vec3_option(
    "-s",
    "--output-size",
    positive=True,
    help="Voxels of each task (z y x) for voxels/s [default: each task's bbox].",
)
def log_summary(task, log_dir, output_size):
    """Print per-operator timings (count, mean, min, max, total, voxels/s) of task logs.

    Reads the *.json files that save-log and save --upload-log wrote (other files are ignored)
    and also lists the number of tasks, skipped tasks and the devices seen. An empty folder is
    an error. The summary is kept in the task as "log_summary".
    """
    from chunkflow.logs import format_summary, read_logs, summarize

    summary = summarize(read_logs(log_dir), output_size, log_dir)
    click.echo(format_summary(summary))
    task["log_summary"] = summary


def _check_credentials(ctx, param, value):
    """Fail at parse time, before any task runs, when there are no AWS credentials."""
    config = ctx.find_root().obj
    if not getattr(config, "dry_run", False):
        from chunkflow.aws import aws_session

        try:
            aws_session()
        except ChunkflowError as err:
            raise ChunkflowError(f"cloud-watch: {err}") from None
    return value


@operator("cloud-watch", family="distributed", effects=("metrics",))
@click.option(
    "--namespace",
    default="chunkflow",
    show_default=True,
    callback=_check_credentials,
    help="CloudWatch namespace of the metrics.",
)
@click.option(
    "--log-name",
    default="chunkflow",
    show_default=True,
    help="Value of the LogName dimension of every metric.",
)
@click.option(
    "--endpoint-url",
    default=None,
    help="CloudWatch-compatible endpoint [default: AWS, or $AWS_ENDPOINT_URL_CLOUDWATCH].",
)
@click.option(
    "--region", default=None, help="AWS region [default: the AWS config, else us-east-1]."
)
def cloud_watch(task, namespace, log_name, endpoint_url, region, config):
    """Send the task's operator timers to AWS CloudWatch as metrics (a live speedometer).

    One metric per operator (its name), unit Seconds, dimension LogName (and Device when the
    task recorded one). Place it after the compute operators; skipped tasks send nothing.
    Credentials come from boto3's standard chain; without any the command fails at once.
    """
    from chunkflow.logs import cloudwatch_client, put_timer_metrics, task_log_record

    key = ("cloud-watch", endpoint_url, region)
    client = config.extras.get(key)
    if client is None:
        client = config.extras[key] = cloudwatch_client(endpoint_url, region)
    sent = put_timer_metrics(client, task_log_record(task), namespace, log_name)
    logger.debug("cloud-watch: sent %d metrics for task %s", sent, task.bbox)
