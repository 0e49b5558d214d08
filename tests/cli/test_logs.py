"""save-log, log-summary and cloud-watch through the real entry point.

cloud-watch talks to the moto server the queue tests start on 127.0.0.1.
"""

import json
import os
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import error_line
from tests.queues import conftest as queue_fixtures

GRID = "generate-tasks -s 0 0 0 -z 4 8 32 -c 4 8 8"  # 4 tasks of 256 voxels
BBOXES = ["0-4_0-8_0-8", "0-4_0-8_16-24", "0-4_0-8_24-32", "0-4_0-8_8-16"]  # sorted names
SCHEMA_KEYS = {"schema", "bbox", "voxels", "timer", "device", "skipped", "timestamp", "hostname"}


def read_log_dir(path):
    return [json.loads((path / f"{b}.json").read_text()) for b in BBOXES]


def rows(out: str) -> dict:
    """The table rows of a log-summary output: {operator: [count, mean, min, max, total, v/s]}."""
    table = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) == 7 and cells[1].isdigit():
            table[cells[0]] = cells[1:]
    return table


def speed(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_round_trip(run_cli, tmp_path):
    run_cli(f"{GRID} create-chunk -t float32 threshold -t 0.2 save-log -l log")
    logs = read_log_dir(tmp_path / "log")
    assert sorted(os.listdir(tmp_path / "log")) == [f"{b}.json" for b in BBOXES]
    for log in logs:
        assert SCHEMA_KEYS <= set(log) and log["voxels"] == 256 and log["skipped"] is None
        # chain order; save-log is still running while it writes
        assert list(log["timer"]) == ["generate-tasks", "create-chunk", "threshold"]

    result = run_cli("log-summary -l log")
    assert result.out.startswith("4 task logs in log\n")
    table = rows(result.out)
    assert list(table) == ["generate-tasks", "create-chunk", "threshold"]
    assert all(row[0] == "4" for row in table.values())
    seconds = sum(log["timer"]["threshold"] for log in logs)
    assert float(table["threshold"][4]) == pytest.approx(seconds, abs=1e-4)
    assert float(table["threshold"][3]) == pytest.approx(
        max(log["timer"]["threshold"] for log in logs), abs=1e-4
    )
    assert speed(table["threshold"][5]) == pytest.approx(4 * 256 / seconds, rel=1e-6, abs=1)
    assert "(all operators) 4" in " ".join(result.out.split())
    assert "devices: none recorded" in result.out

    result = run_cli("log-summary -l log --output-size 156 1280 1280")
    assert "voxels per task: 255,590,400 (--output-size)" in result.out
    voxels = 4 * 156 * 1280 * 1280
    assert speed(rows(result.out)["threshold"][5]) == pytest.approx(voxels / seconds, rel=1e-6)


def test_upload_log_writes_the_same_schema(run_cli, tmp_path):
    run_cli("create-info -v vol -z 4 8 32 -b 4 8 8")
    run_cli(f"{GRID} create-chunk save -v vol --upload-log save-log -l log")
    uploaded = read_log_dir(tmp_path / "vol" / "log")
    saved = read_log_dir(tmp_path / "log")
    for up, log in zip(uploaded, saved, strict=True):
        assert set(up) == set(log)
        assert {k: up[k] for k in ("schema", "bbox", "voxels", "device", "skipped")} == {
            k: log[k] for k in ("schema", "bbox", "voxels", "device", "skipped")
        }
        assert list(up["timer"]) == ["generate-tasks", "create-chunk"]
        assert list(log["timer"]) == ["generate-tasks", "create-chunk", "save"]
    table = rows(run_cli("log-summary -l vol/log").out)
    assert table["create-chunk"][0] == "4" and "save" not in table


def test_skipped_tasks_are_logged(run_cli, tmp_path):
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / BBOXES[0]).write_text("")
    run_cli(f"{GRID} skip-task-by-file -p done/ create-chunk save-log -l log")
    logs = read_log_dir(tmp_path / "log")
    assert "exists" in logs[0]["skipped"]
    assert list(logs[0]["timer"]) == ["generate-tasks", "skip-task-by-file"]
    assert all(log["skipped"] is None for log in logs[1:])
    result = run_cli("log-summary -l log")
    assert result.out.startswith("4 task logs in log (1 skipped)")
    table = rows(result.out)
    assert table["skip-task-by-file"][0] == "4" and table["create-chunk"][0] == "3"


def test_device_is_logged(run_cli, tmp_path):
    run_cli(
        "generate-tasks -s 0 0 0 -z 4 8 16 -c 4 8 8 create-chunk -t float32 "
        "inference -f identity --patch-size 4 8 8 --patch-overlap 0 0 0 -c 1 "
        "--mask-output-chunk upload-log -l file://log"
    )
    logs = [json.loads(path.read_text()) for path in (tmp_path / "log").iterdir()]
    assert [log["device"] for log in logs] == ["cpu", "cpu"]
    assert "devices: cpu (2 tasks)" in run_cli("log-summary -l log").out


def test_cloud_log_dir(run_cli):
    log_dir = f"mem://chunkflow-test-{uuid.uuid4().hex[:8]}/log"
    run_cli(f"{GRID} create-chunk save-log -l {log_dir}")
    result = run_cli(f"log-summary -l {log_dir}")
    assert result.out.startswith(f"4 task logs in {log_dir}")


def test_summary_is_kept_in_the_task(run_cli, tmp_path):
    from chunkflow.cli.logs import log_summary
    from chunkflow.task import Task

    run_cli(f"{GRID} create-chunk save-log -l log")
    task = Task()
    log_summary(task, log_dir=str(tmp_path / "log"), output_size=(1, 2, 3))
    summary = task["log_summary"]
    assert summary["tasks"] == 4 and summary["voxels_per_task"] == 6
    assert summary["operators"]["create-chunk"]["count"] == 4


def test_dry_run_writes_no_log(run_cli, tmp_path):
    run_cli(f"--dry-run {GRID} create-chunk save-log -l log")
    assert not (tmp_path / "log").exists()


def test_save_log_needs_a_bbox(run_cli):
    assert "no bounding box" in error_line(run_cli("save-log -l log", expect=1))


def test_other_files_are_ignored_and_malformed_logs_named(run_cli, tmp_path):
    run_cli(f"{GRID} create-chunk save-log -l log")
    (tmp_path / "log" / "README.txt").write_text("not json")
    (tmp_path / "log" / "sub.json").mkdir()
    assert rows(run_cli("log-summary -l log").out)["create-chunk"][0] == "4"
    (tmp_path / "log" / "broken.json").write_text('{"timer": {"a": 1')
    line = error_line(run_cli("log-summary -l log", expect=1))
    assert line.startswith("chunkflow: error: log-summary: ")
    assert "log/broken.json: not a chunkflow task log (invalid JSON" in line


def test_empty_or_missing_log_dir(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("")
    line = error_line(run_cli("log-summary -l empty", expect=1))
    assert "no task logs (*.json files) in empty" in line
    assert "no such folder" in error_line(run_cli("log-summary -l nowhere", expect=1))


# ---------------------------------------------------------------------------------------------
# cloud-watch against moto


moto_endpoint = queue_fixtures.moto_endpoint  # the moto server of tests/queues/conftest.py


def no_aws(monkeypatch, tmp_path):
    """An AWS environment with nothing in it: no keys, no config files, no metadata service."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "1")  # restored afterwards
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")


SECRET = "cloudwatch-test-secret-Zq93"


@pytest.fixture
def aws(monkeypatch, tmp_path):
    no_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_cloud_watch(run_cli, moto_endpoint, aws):
    import boto3

    namespace = f"chunkflow-test-{uuid.uuid4().hex[:8]}"
    result = run_cli(
        f"{GRID} create-chunk cloud-watch --endpoint-url {moto_endpoint} --namespace {namespace} "
        "--log-name run1"
    )
    assert SECRET not in result.out + result.err

    client = boto3.client("cloudwatch", endpoint_url=moto_endpoint, region_name="us-east-1")
    metrics = client.list_metrics(Namespace=namespace)["Metrics"]
    assert {m["MetricName"] for m in metrics} == {"generate-tasks", "create-chunk"}
    dimensions = [{"Name": "LogName", "Value": "run1"}]
    assert all(m["Dimensions"] == dimensions for m in metrics)
    now = datetime.now(timezone.utc)
    points = client.get_metric_statistics(
        Namespace=namespace,
        MetricName="create-chunk",
        Dimensions=dimensions,
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=3600 * 2,
        Statistics=["SampleCount", "Maximum"],
    )["Datapoints"]
    assert sum(p["SampleCount"] for p in points) == 4
    assert all(p["Unit"] == "Seconds" and 0 <= p["Maximum"] < 10 for p in points)


def test_cloud_watch_without_credentials_fails_fast(run_cli, monkeypatch, tmp_path):
    no_aws(monkeypatch, tmp_path)
    start = time.monotonic()
    result = run_cli(
        "create-bbox -b 0-1_0-1_0-1 create-chunk write-h5 -f a.h5 cloud-watch", expect=1
    )
    assert time.monotonic() - start < 5
    line = error_line(result)
    assert line.startswith("chunkflow: error: cloud-watch: no AWS credentials found")
    assert not (tmp_path / "a.h5").exists()  # failed before any task ran
    # a dry run needs no credentials: it sends nothing
    run_cli("--dry-run create-bbox -b 0-1_0-1_0-1 create-chunk cloud-watch")


def test_cloud_watch_unreachable_endpoint(run_cli, aws):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = error_line(
        run_cli(
            f"create-bbox -b 0-1_0-1_0-1 cloud-watch --endpoint-url http://127.0.0.1:{port}",
            expect=1,
        )
    )
    assert line.startswith("chunkflow: error: cloud-watch (task 0-1_0-1_0-1): ")
    assert "unreachable" in line and SECRET not in line
