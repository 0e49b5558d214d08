"""Task logs: one JSON file per task, and a summary of many.

`save-log` and `save --upload-log` both write a task's log with `write_task_log`, so every log
file has the same schema (version 1); `log-summary` reads them with `read_logs` and
`summarize`; `cloud-watch` sends the timers as CloudWatch metrics (`put_timer_metrics`).

A log file is named `{bbox}.json` and holds one JSON object::

    {
      "schema": 1,                        # version of this layout
      "bbox": "0-64_0-512_0-512",         # the task's bounding box string, or null
      "voxels": 16777216,                 # voxels of that bbox, or null without a bbox
      "timer": {                          # seconds per operator, in chain order; operators
        "generate-tasks": 0.0001,         #   after the writer (and the writer itself, still
        "cutout": 1.52,                   #   running) are missing; a skipped task has only
        "inference": 30.1                 #   the operators that ran before the skip
      },
      "device": "cuda:0",                 # task.log["device"] (set by inference), or null
      "skipped": null,                    # the skip reason of a skipped task, or null
      "timestamp": "2024-05-01T12:00:00.123+00:00",   # UTC, when the log was written
      "hostname": "worker-17"
    }

Other facts an operator put in `task.log` (e.g. "queue") follow under their own names. Only
"timer" is required when reading, so logs of older chunkflow versions (with "compute_device"
and without "voxels") are summarized too.
"""

from __future__ import annotations

import json
import math
import os
import socket
from datetime import datetime, timezone

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox

__all__ = [
    "SCHEMA_VERSION",
    "task_log_record",
    "write_task_log",
    "write_log_record",
    "volume_log_dir",
    "read_logs",
    "parse_log",
    "summarize",
    "format_summary",
    "cloudwatch_client",
    "timer_metrics",
    "put_timer_metrics",
]

SCHEMA_VERSION = 1
LOG_SUFFIX = ".json"


# ---------------------------------------------------------------------------------------------
# Writing


def task_log_record(task, bbox: BoundingBox | None = None) -> dict:
    """The log record of `task` in the schema above; `bbox` overrides the task's bbox."""
    bbox = task.bbox if bbox is None else bbox
    record = {
        "schema": SCHEMA_VERSION,
        "bbox": None if bbox is None else bbox.string,
        "voxels": None if bbox is None else int(bbox.voxel_count),
        "timer": {str(name): float(s) for name, s in task.log.get("timer", {}).items()},
        "device": None if task.log.get("device") is None else str(task.log["device"]),
        "skipped": task.skip_reason,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "hostname": socket.gethostname(),
    }
    for key, value in task.log.items():
        record.setdefault(key, value)
    return record


def write_log_record(log_dir: str, record: dict, name: str | None = None) -> str:
    """Write `record` as `{log_dir}/{name or record's bbox}.json`; returns the file name.

    `log_dir` is a local folder (created if missing), file://, gs:// or s3://.
    """
    from chunkflow.io.files import put_files

    name = name or record.get("bbox")
    if not name:
        raise ChunkflowError(
            "the task has no bounding box to name its log file "
            "(start the chain with create-bbox or generate-tasks)"
        )
    filename = f"{name}{LOG_SUFFIX}"
    data = json.dumps(record, indent=2, default=str).encode()
    local = _local_path(log_dir)
    target = "file://" + os.path.abspath(local) if local is not None else log_dir.rstrip("/")
    try:
        put_files(target, [(filename, data)])
    except ChunkflowError:
        raise
    except OSError as err:
        reason = err.strerror or err
        raise ChunkflowError(f"{log_dir}: cannot write {filename} ({reason})") from None
    return filename


def write_task_log(task, log_dir: str, bbox: BoundingBox | None = None) -> str:
    """Write the log of `task` to `{log_dir}/{bbox}.json` (see `write_log_record`)."""
    record = task_log_record(task, bbox)
    return write_log_record(log_dir, record)


def volume_log_dir(volume_path: str) -> str:
    """The folder of a volume's task logs (`save --upload-log`): `{volume}/log`."""
    return f"{volume_path.rstrip('/')}/log"


# ---------------------------------------------------------------------------------------------
# Reading


def _local_path(path: str) -> str | None:
    """The local path of a plain or file:// path; None for a cloud path."""
    if path.startswith("file://"):
        return os.path.expanduser(path[len("file://") :])
    if "://" in path:
        return None
    return os.path.expanduser(path)


def read_logs(log_dir: str) -> list[dict]:
    """Parse every `*.json` file directly in `log_dir` (local or cloud), sorted by name.

    Other files and sub-folders are ignored. A file that is not a task log raises a
    `ChunkflowError` naming it.
    """
    local = _local_path(log_dir)
    if local is not None:
        if not os.path.isdir(local):
            what = "not a folder" if os.path.exists(local) else "no such folder"
            raise ChunkflowError(f"{log_dir}: {what} (expected a folder of task logs)")
        names = sorted(
            n
            for n in os.listdir(local)
            if n.endswith(LOG_SUFFIX) and os.path.isfile(os.path.join(local, n))
        )
        records = []
        for name in names:
            path = os.path.join(local, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as err:
                raise ChunkflowError(f"{path}: cannot read ({err.strerror or err})") from None
            records.append(parse_log(data, path))
        return records

    from cloudfiles import CloudFiles

    base = log_dir.rstrip("/")
    try:
        files = CloudFiles(base)
        names = sorted(n for n in files.list(flat=True) if n.endswith(LOG_SUFFIX))
        results = files.get(names, raw=True) if names else []
    except Exception as err:  # cloud errors come in many types; report them in one line
        raise ChunkflowError(f"{log_dir}: cannot list or read the task logs ({err})") from None
    records = []
    for result in sorted(results, key=lambda r: r["path"]):
        path = f"{base}/{result['path']}"
        if result.get("error") is not None or result.get("content") is None:
            raise ChunkflowError(f"{path}: cannot read ({result.get('error') or 'missing'})")
        records.append(parse_log(result["content"], path))
    return records


def parse_log(data: bytes | str, where: str) -> dict:
    """Check and normalize one log file's content; `where` names it in errors.

    The result always has "bbox", "voxels", "timer", "device", "skipped", "timestamp" and
    "hostname" (None where the file has none).
    """

    def bad(reason: str) -> ChunkflowError:
        return ChunkflowError(f"{where}: not a chunkflow task log ({reason})")

    try:
        record = json.loads(data)
    except UnicodeDecodeError:
        raise bad("not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise bad(f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(record, dict):
        raise bad(f"expected a JSON object, got {type(record).__name__}")
    timer = record.get("timer")
    if not isinstance(timer, dict):
        raise bad('no "timer" object')
    for name, seconds in timer.items():
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise bad(f'timer "{name}" is {seconds!r}, not a number of seconds')
        if not math.isfinite(seconds) or seconds < 0:
            raise bad(f'timer "{name}" is {seconds!r}, not a number of seconds')
    bbox = record.get("bbox", record.get("output_bbox"))
    voxels = record.get("voxels")
    if voxels is None and isinstance(bbox, str):
        try:
            voxels = BoundingBox.from_string(bbox).voxel_count
        except ChunkflowError as err:
            raise bad(f"bbox: {err}") from None
    if voxels is not None and (isinstance(voxels, bool) or not isinstance(voxels, int)):
        raise bad(f'"voxels" is {voxels!r}, not an integer')
    device = record.get("device", record.get("compute_device"))
    skipped = record.get("skipped")
    out = dict(record)
    out.update(
        bbox=bbox,
        voxels=voxels,
        timer={str(k): float(v) for k, v in timer.items()},
        device=None if device is None else str(device),
        skipped=None if skipped in (None, False) else str(skipped),
        timestamp=record.get("timestamp"),
        hostname=record.get("hostname"),
    )
    return out


# ---------------------------------------------------------------------------------------------
# Summary


def _stats(seconds: list[float], voxels: list[int | None]) -> dict:
    total = sum(seconds)
    known = [(s, v) for s, v in zip(seconds, voxels, strict=True) if v is not None]
    known_seconds = sum(s for s, _ in known)
    speed = sum(v for _, v in known) / known_seconds if known and known_seconds > 0 else None
    return {
        "count": len(seconds),
        "mean": total / len(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "total": total,
        "voxels_per_second": speed,
    }


def summarize(records: list[dict], output_size=None, log_dir: str | None = None) -> dict:
    """Per-operator statistics of parsed log records.

    Voxels of a task: `prod(output_size)` when given, else the voxels of its bbox. An
    operator's voxels/s is the voxels of the tasks it timed over the seconds it took for them
    (tasks without a voxel count are left out of it). "chain" holds the same statistics over
    each task's total seconds (all operators in its log, skipped tasks included).
    """
    if not records:
        raise ChunkflowError(f"no task logs (*{LOG_SUFFIX} files) in {log_dir or 'the input'}")
    per_task = None if output_size is None else math.prod(int(n) for n in output_size)
    seconds: dict[str, list[float]] = {}
    voxels: dict[str, list[int | None]] = {}
    chain_seconds, chain_voxels = [], []
    devices: dict[str, int] = {}
    hosts: dict[str, int] = {}
    for record in records:
        task_voxels = per_task if per_task is not None else record["voxels"]
        for name, s in record["timer"].items():
            seconds.setdefault(name, []).append(s)
            voxels.setdefault(name, []).append(task_voxels)
        chain_seconds.append(sum(record["timer"].values()))
        chain_voxels.append(task_voxels)
        if record["device"] is not None:
            devices[record["device"]] = devices.get(record["device"], 0) + 1
        if record["hostname"] is not None:
            hosts[record["hostname"]] = hosts.get(record["hostname"], 0) + 1
    stamps = sorted(r["timestamp"] for r in records if isinstance(r["timestamp"], str))
    return {
        "log_dir": log_dir,
        "tasks": len(records),
        "skipped": sum(r["skipped"] is not None for r in records),
        "voxels_per_task": per_task,
        "voxels": None if None in chain_voxels else sum(chain_voxels),
        "devices": devices,
        "hostnames": hosts,
        "first": stamps[0] if stamps else None,
        "last": stamps[-1] if stamps else None,
        "operators": {name: _stats(seconds[name], voxels[name]) for name in seconds},
        "chain": _stats(chain_seconds, chain_voxels),
    }


def _seconds(value: float) -> str:
    return f"{value:.4f}" if value < 1000 else f"{value:.1f}"


def _speed(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def format_table(rows: list[tuple], rule_before_last: bool = False) -> list[str]:
    """Text rows: the first column left-aligned, the others right-aligned; the first row is the
    header. Optionally a rule above the last row (a total)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if rule_before_last and k == len(rows) - 2:
            lines.append("-" * len(lines[-1]))
    return lines


def run_timing_table(totals: dict[str, list], wall_seconds: float) -> str:
    """The end-of-run profile: {operator: [calls, seconds]} as operator, calls, total s,
    mean s and share of the wall time, slowest first, with the wall time as the last row."""
    rows = [("operator", "calls", "total s", "mean s", "% of wall")]
    for name, (calls, seconds) in sorted(totals.items(), key=lambda item: -item[1][1]):
        share = 100 * seconds / wall_seconds if wall_seconds > 0 else 0.0
        mean = _seconds(seconds / calls)
        rows.append((name, str(calls), _seconds(seconds), mean, f"{share:.1f}"))
    rows.append(("(wall time of the run)", "", _seconds(wall_seconds), "", "100.0"))
    return "\n".join(format_table(rows, rule_before_last=True))


def format_summary(summary: dict) -> str:
    """The summary as a plain-text table, one row per operator and one for the whole chain."""
    header = ("operator", "count", "mean s", "min s", "max s", "total s", "voxels/s")
    rows = [header]
    entries = list(summary["operators"].items()) + [("(all operators)", summary["chain"])]
    for name, st in entries:
        rows.append(
            (
                name,
                str(st["count"]),
                _seconds(st["mean"]),
                _seconds(st["min"]),
                _seconds(st["max"]),
                _seconds(st["total"]),
                _speed(st["voxels_per_second"]),
            )
        )
    lines = []
    where = f" in {summary['log_dir']}" if summary.get("log_dir") else ""
    skipped = f" ({summary['skipped']} skipped)" if summary["skipped"] else ""
    lines.append(f"{summary['tasks']} task logs{where}{skipped}")
    if summary["voxels_per_task"] is not None:
        lines.append(f"voxels per task: {summary['voxels_per_task']:,} (--output-size)")
    else:
        lines.append("voxels per task: from each task's bounding box")
    lines += format_table(rows, rule_before_last=True)
    devices = summary["devices"]
    lines.append(
        "devices: "
        + (", ".join(f"{d} ({n} tasks)" for d, n in sorted(devices.items())) or "none recorded")
    )
    if summary["hostnames"]:
        lines.append(f"hosts: {len(summary['hostnames'])}")
    if summary["first"]:
        lines.append(f"logs written from {summary['first']} to {summary['last']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CloudWatch

CLOUDWATCH_BATCH = 20  # metrics per put_metric_data call (the classic CloudWatch limit)


def cloudwatch_client(endpoint_url: str | None = None, region: str | None = None):
    """A CloudWatch client; `endpoint_url` for compatible servers."""
    from botocore.config import Config

    from chunkflow.aws import aws_session

    session = aws_session()
    region = region or session.region_name or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3})
    return session.client(
        "cloudwatch", endpoint_url=endpoint_url, region_name=region, config=config
    )


def timer_metrics(record: dict, log_name: str) -> list[dict]:
    """CloudWatch MetricData for the timers of a log record: one metric per operator.

    Dimensions: LogName = `log_name`, plus Device when the task recorded one.
    """
    dimensions = [{"Name": "LogName", "Value": log_name}]
    if record.get("device") is not None:
        dimensions.append({"Name": "Device", "Value": str(record["device"])})
    return [
        {"MetricName": name, "Dimensions": dimensions, "Value": float(s), "Unit": "Seconds"}
        for name, s in record["timer"].items()
    ]


def put_timer_metrics(client, record: dict, namespace: str, log_name: str) -> int:
    """Send the timers of `record` to CloudWatch; returns the number of metrics sent."""
    from botocore.exceptions import BotoCoreError, ClientError

    from chunkflow.aws import short_error

    metrics = timer_metrics(record, log_name)
    for start in range(0, len(metrics), CLOUDWATCH_BATCH):
        try:
            client.put_metric_data(
                Namespace=namespace, MetricData=metrics[start : start + CLOUDWATCH_BATCH]
            )
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "") or "error"
            raise ChunkflowError(f"put_metric_data failed: {code} ({short_error(err)})") from None
        except BotoCoreError as err:
            raise ChunkflowError(
                f"CloudWatch endpoint unreachable or failing ({short_error(err)})"
            ) from None
    return len(metrics)
