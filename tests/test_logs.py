"""chunkflow.logs: the task log record, reading and checking log files, the summary."""

import ast
import json
import math
import uuid
from pathlib import Path

import pytest

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.logs import (
    SCHEMA_VERSION,
    format_summary,
    parse_log,
    read_logs,
    summarize,
    task_log_record,
    timer_metrics,
    volume_log_dir,
    write_log_record,
    write_task_log,
)
from chunkflow.task import Task

SCHEMA_KEYS = {"schema", "bbox", "voxels", "timer", "device", "skipped", "timestamp", "hostname"}


def make_task(bbox="0-2_0-4_0-8", timers=(("a", 1.0), ("b", 2.0)), **log):
    task = Task(bbox=None if bbox is None else BoundingBox.from_string(bbox))
    task.log["timer"].update(dict(timers))
    task.log.update(log)
    return task


def test_record_schema():
    task = make_task(timers=(("z-first", 0.5), ("a-second", 1.5)), device="cuda:0", queue="q")
    record = task_log_record(task)
    assert SCHEMA_KEYS <= set(record)
    assert record["schema"] == SCHEMA_VERSION
    assert record["bbox"] == "0-2_0-4_0-8" and record["voxels"] == 64
    assert list(record["timer"]) == ["z-first", "a-second"]  # chain order, not sorted
    assert record["device"] == "cuda:0" and record["skipped"] is None
    assert record["queue"] == "q"  # other facts of task.log are kept
    assert record["timestamp"].endswith("+00:00") and record["hostname"]
    json.dumps(record)  # JSON-ready


def test_record_of_skipped_task_and_bbox_override():
    task = make_task()
    task.skip("chunk is all zero")
    record = task_log_record(task, BoundingBox((0, 0, 0), (1, 2, 3)))
    assert record["skipped"] == "chunk is all zero"
    assert record["bbox"] == "0-1_0-2_0-3" and record["voxels"] == 6
    assert record["device"] is None


def test_write_needs_a_bbox(tmp_path):
    with pytest.raises(ChunkflowError, match="no bounding box"):
        write_task_log(make_task(bbox=None), str(tmp_path))


def test_write_and_read_local(tmp_path):
    log_dir = tmp_path / "new" / "log"  # created on write
    assert write_task_log(make_task(), str(log_dir)) == "0-2_0-4_0-8.json"
    write_task_log(make_task("0-2_0-4_8-16"), f"file://{log_dir}")
    (log_dir / "notes.txt").write_text("not a log")
    (log_dir / "folder.json").mkdir()
    records = read_logs(str(log_dir))
    assert [r["bbox"] for r in records] == ["0-2_0-4_0-8", "0-2_0-4_8-16"]
    assert read_logs(f"file://{log_dir}") == records


def test_write_and_read_cloud():
    log_dir = f"mem://chunkflow-test-{uuid.uuid4().hex[:8]}/log"
    write_task_log(make_task(device="cpu"), log_dir)
    write_log_record(log_dir, task_log_record(make_task("0-2_0-4_8-16")))
    records = read_logs(log_dir + "/")
    assert [r["bbox"] for r in records] == ["0-2_0-4_0-8", "0-2_0-4_8-16"]
    assert records[0]["device"] == "cpu"


def test_a_volume_keeps_its_task_logs_in_its_log_folder():
    assert volume_log_dir("gs://bucket/seg/") == "gs://bucket/seg/log"
    assert volume_log_dir("/data/seg") == "/data/seg/log"


def test_the_io_layer_does_not_import_logs():
    """Logs are written through chunkflow.io.files; no reader or writer depends on logs."""
    io = Path(__file__).resolve().parent.parent / "chunkflow" / "io"
    for path in io.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "chunkflow.logs", path
            elif isinstance(node, ast.Import):
                assert all(a.name != "chunkflow.logs" for a in node.names), path


def test_read_missing_folder(tmp_path):
    with pytest.raises(ChunkflowError, match="no such folder"):
        read_logs(str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ChunkflowError, match="not a folder"):
        read_logs(str(tmp_path / "file"))


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{not json", "invalid JSON"),
        (b'{"timer": "\xc3\x28"}', "not UTF-8"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"bbox": "0-1_0-1_0-1"}', 'no "timer" object'),
        (b'{"timer": {"a": "fast"}}', 'timer "a" is'),
        (b'{"timer": {"a": -1}}', 'timer "a" is -1'),
        (b'{"timer": {"a": true}}', 'timer "a" is True'),
        (b'{"timer": {}, "bbox": "nonsense"}', "bbox:"),
        (b'{"timer": {}, "voxels": "many"}', '"voxels" is'),
    ],
)
def test_malformed_logs(content, reason):
    with pytest.raises(ChunkflowError) as err:
        parse_log(content, "log/x.json")
    assert str(err.value).startswith("log/x.json: not a chunkflow task log (")
    assert reason in str(err.value)


def test_older_logs_are_read():
    record = parse_log(b'{"timer": {"a": 1}, "compute_device": "gpu", "bbox": "0-2_0-2_0-2"}', "x")
    assert record["voxels"] == 8 and record["device"] == "gpu" and record["timer"] == {"a": 1.0}
    assert record["skipped"] is None and record["timestamp"] is None


def records(*specs):
    """Parsed records from (timers, voxels, device, skipped) tuples."""
    out = []
    for timers, voxels, device, skipped in specs:
        data = {"timer": timers, "voxels": voxels, "device": device, "skipped": skipped}
        out.append(parse_log(json.dumps(data), "x"))
    return out


def test_summary_numbers():
    logs = records(
        ({"a": 1.0, "b": 3.0}, 10, "cpu", None),
        ({"a": 2.0}, 20, "cpu", "all zero"),
        ({"a": 3.0, "b": 1.0}, 30, "cuda:0", None),
    )
    summary = summarize(logs, log_dir="log")
    assert summary["tasks"] == 3 and summary["skipped"] == 1
    assert summary["devices"] == {"cpu": 2, "cuda:0": 1}
    assert summary["voxels"] == 60
    assert list(summary["operators"]) == ["a", "b"]
    a, b = summary["operators"]["a"], summary["operators"]["b"]
    assert (a["count"], a["mean"], a["min"], a["max"], a["total"]) == (3, 2.0, 1.0, 3.0, 6.0)
    assert a["voxels_per_second"] == pytest.approx(60 / 6)
    assert (b["count"], b["total"]) == (2, 4.0)
    assert b["voxels_per_second"] == pytest.approx(40 / 4)  # the tasks b timed: 10 + 30
    chain = summary["chain"]
    assert (chain["count"], chain["total"], chain["max"]) == (3, 10.0, 4.0)
    assert chain["voxels_per_second"] == pytest.approx(60 / 10)


def test_summary_with_output_size():
    logs = records(({"a": 2.0}, 10, None, None), ({"a": 2.0}, None, None, None))
    summary = summarize(logs, output_size=(2, 3, 4))
    assert summary["voxels_per_task"] == 24
    assert summary["operators"]["a"]["voxels_per_second"] == pytest.approx(48 / 4)
    # without --output-size, tasks with no voxel count are left out of voxels/s
    summary = summarize(logs)
    assert summary["operators"]["a"]["voxels_per_second"] == pytest.approx(10 / 2)
    assert summary["voxels"] is None
    none = summarize(records(({"a": 2.0}, None, None, None)))
    assert none["operators"]["a"]["voxels_per_second"] is None


def test_summary_of_nothing():
    with pytest.raises(ChunkflowError, match=r"no task logs \(\*\.json files\) in log"):
        summarize([], log_dir="log")


def test_format_summary():
    logs = records(({"load": 0.5, "net": 2.0}, 1000, "cpu", None), ({"load": 1.5}, 1000, None, "x"))
    text = format_summary(summarize(logs, log_dir="log"))
    lines = text.splitlines()
    assert lines[0] == "2 task logs in log (1 skipped)"
    assert lines[2].split() == ["operator", "count", "mean", "s", "min", "s", "max", "s"] + [
        "total",
        "s",
        "voxels/s",
    ]
    assert lines[3].split() == ["load", "2", "1.0000", "0.5000", "1.5000", "2.0000", "1,000"]
    assert lines[4].split() == ["net", "1", "2.0000", "2.0000", "2.0000", "2.0000", "500"]
    assert lines[6].split()[:3] == ["(all", "operators)", "2"]
    assert "devices: cpu (1 tasks)" in text


def test_timer_metrics():
    record = task_log_record(make_task(device="cuda:0"))
    metrics = timer_metrics(record, "run1")
    assert [m["MetricName"] for m in metrics] == ["a", "b"]
    assert all(m["Unit"] == "Seconds" for m in metrics)
    assert metrics[1]["Value"] == 2.0
    assert metrics[0]["Dimensions"] == [
        {"Name": "LogName", "Value": "run1"},
        {"Name": "Device", "Value": "cuda:0"},
    ]
    plain = timer_metrics(task_log_record(make_task()), "run1")
    assert plain[0]["Dimensions"] == [{"Name": "LogName", "Value": "run1"}]
    assert math.isclose(sum(m["Value"] for m in plain), 3.0)
