"""Distributed runs from the command line: fetch-task, delete-task-in-queue, fetch-task-from-file.

Every test that involves a queue runs against both kinds where it matters: a local folder queue
and SQS on a moto server on loopback (see tests/queues/conftest.py). The workers of the
reliability and heartbeat tests are real `chunkflow` processes; the rest runs in-process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from chunkflow.cli.main import main
from chunkflow.geometry import BoundingBox, grid_bboxes
from chunkflow.io.precomputed import read_precomputed
from chunkflow.queues import open_queue, read_task_file
from tests.conftest import error_line
from tests.queues import conftest as queue_fixtures
from tests.queues.moto import free_port

# the fixtures of tests/queues/conftest.py, for this module too
aws_env = queue_fixtures.aws_env  # autouse: dummy credentials, no other AWS setting
moto_endpoint = queue_fixtures.moto_endpoint
new_queue = queue_fixtures.new_queue
CHUNKFLOW = queue_fixtures.CHUNKFLOW

KINDS = ["local", "sqs"]
SHAPE = (32, 64, 64)
BLOCK = (8, 16, 16)
WHOLE = BoundingBox((0, 0, 0), SHAPE)
TASK = "0-8_0-16_0-16"

# Inverts the image after a pause. With $CHUNKFLOW_TEST_MARKS set it leaves a file per task it
# starts, and a worker whose hang_{pid} file exists hangs in its next task (to be killed there).
SLOW_PLUGIN = """\
import os
import time


def execute(chunk):
    marks = os.environ.get("CHUNKFLOW_TEST_MARKS")
    if marks:
        tag = f"{os.getpid()}_{chunk.bbox.string}"
        open(os.path.join(marks, "start_" + tag), "w").close()
        if os.path.exists(os.path.join(marks, f"hang_{os.getpid()}")):
            open(os.path.join(marks, "hung_" + tag), "w").close()
            time.sleep(600)
    time.sleep(float(os.environ.get("CHUNKFLOW_TEST_DELAY", "0.1")))
    return 255 - chunk.array
"""

FAILING_PLUGIN = """\
def execute(chunk):
    raise ValueError("injected failure")
"""


def run_main(argv: list) -> None:
    code = main([str(a) for a in argv])
    assert code == 0, f"chunkflow {' '.join(map(str, argv))} exited {code}"


def random_volume(root: Path, shape, block, seed: int) -> tuple[str, np.ndarray]:
    """A random uint8 precomputed volume of `shape` at `root`/in, stored in blocks of `block`:
    its path and its voxels."""
    source = f"file://{root / 'in'}"
    run_main(
        ["create-chunk", "-s", *shape, "--pattern", "random", "--seed", seed, "-t", "uint8"]
        + ["save", "-v", source, "--block-size", *block]
    )
    return source, read_precomputed(source, BoundingBox((0, 0, 0), shape)).array


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> dict:
    """A random uint8 input volume, its inverse, and the plugins."""
    root = tmp_path_factory.mktemp("queue-volumes")
    source, image = random_volume(root, SHAPE, BLOCK, seed=1)
    (root / "slow.py").write_text(SLOW_PLUGIN)
    (root / "failing.py").write_text(FAILING_PLUGIN)
    assert image.std() > 50  # random, not a constant
    return {
        "in": source,
        "slow": str(root / "slow.py"),
        "failing": str(root / "failing.py"),
        "inverse": 255 - image,
    }


def chain(volumes: dict, out: str, plugin: str | None = None) -> list:
    """The operators after fetch-task: cut out, invert slowly, save, delete the message."""
    return [
        *("cutout", "-v", volumes["in"]),
        *("plugin", "-f", plugin or volumes["slow"], "-i", "chunk", "-o", "chunk"),
        *("save", "-v", out),
        "delete-task-in-queue",
    ]


def create_output(out: str) -> None:
    run_main(["create-info", "-v", out, "-z", *SHAPE, "-b", *BLOCK, "-d", "uint8"])


@pytest.fixture(scope="module")
def reference(volumes, tmp_path_factory) -> np.ndarray:
    """The output of the same chain run by a single process from a fresh queue."""
    root = tmp_path_factory.mktemp("queue-reference")
    out, queue = f"file://{root / 'out'}", f"file://{root / 'queue'}"
    create_output(out)
    run_main(["generate-tasks", "-v", volumes["in"], "-c", *BLOCK, "-q", queue])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHUNKFLOW_TEST_DELAY", "0")
        run_main(["fetch-task", "-q", queue, "-v", 3, "-r", 0, "-w", 0, *chain(volumes, out)])
    assert open_queue(queue).count() == 0
    array = read_precomputed(out, WHOLE).array
    np.testing.assert_array_equal(array, volumes["inverse"])
    return array


def block_files(bboxes) -> set[str]:
    """Names of the precomputed chunk files of these blocks (x, y, z order)."""
    return {"_".join(f"{a}-{b}" for a, b in zip(bb.start.xyz, bb.stop.xyz)) for bb in bboxes}


def start_worker(argv: list, log: Path, env: dict) -> subprocess.Popen:
    with open(log, "w") as err:
        return subprocess.Popen(
            [str(CHUNKFLOW), *map(str, argv)], stdout=subprocess.DEVNULL, stderr=err, env=env
        )


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return result


def stop_all(procs: list) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()  # only the processes this test started, by their PIDs
            proc.wait()


def done_tasks(log: str) -> set[str]:
    """The bounding boxes of the tasks a worker's log reports as finished."""
    return set(re.findall(r"task (\S+): fetch-task", log))


@pytest.mark.parametrize("kind", KINDS)
def test_killed_worker_loses_nothing(kind, new_queue, volumes, reference, run_cli, tmp_path):
    """Three workers share 64 tasks; one is SIGKILLed in the middle of a task. The others finish
    everything, its task included, and the output is that of a single-process run."""
    spec = new_queue(kind)
    out = f"file://{tmp_path / 'out'}"
    create_output(out)
    run_cli(["generate-tasks", "-v", volumes["in"], "-c", *BLOCK, "-q", spec.name, *spec.options])
    queue = spec.open()
    assert queue.count() == 64
    marks = tmp_path / "marks"
    marks.mkdir()
    env = os.environ | {"CHUNKFLOW_TEST_MARKS": str(marks), "CHUNKFLOW_TEST_DELAY": "0.1"}
    argv = ["fetch-task", "-q", spec.name, "-v", 3, "-r", 2, "-w", 1, *spec.options]
    argv += chain(volumes, out)
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [start_worker(argv, log, env) for log in logs]
    victim = workers[0]
    try:
        wait_for(
            lambda: len(list(marks.glob(f"start_{victim.pid}_*"))) >= 3,
            60,
            "the first worker to start its third task",
        )
        (marks / f"hang_{victim.pid}").touch()
        hung = wait_for(lambda: list(marks.glob(f"hung_{victim.pid}_*")), 30, "it to hang")
        killed_task = hung[0].name.split("_", 2)[2]
        os.kill(victim.pid, signal.SIGKILL)  # in the middle of the task: after cutout
        assert victim.wait(timeout=10) == -signal.SIGKILL
        for worker, log in zip(workers[1:], logs[1:]):
            assert worker.wait(timeout=90) == 0, log.read_text()[-3000:]
    finally:
        stop_all(workers)

    texts = [log.read_text() for log in logs]
    assert len(done_tasks(texts[0])) >= 2  # the victim had finished a few tasks
    assert killed_task not in done_tasks(texts[0])  # and died before finishing this one
    assert any(killed_task in done_tasks(text) for text in texts[1:])  # someone else did it
    for text in texts[1:]:
        assert "0 dead-lettered, 0 leased by other workers" in text
        assert "Traceback" not in text
    everything = set().union(*map(done_tasks, texts))
    tasks = grid_bboxes(WHOLE, BLOCK)
    assert everything == {b.string for b in tasks}
    assert queue.count() == 0
    assert set(os.listdir(tmp_path / "out" / "1_1_1")) == block_files(tasks)
    np.testing.assert_array_equal(read_precomputed(out, WHOLE).array, reference)


@pytest.mark.parametrize("kind", KINDS)
def test_heartbeat_keeps_a_long_task_leased(kind, new_queue, volumes, tmp_path):
    """A task of 5 s under a 2 s visibility timeout: renewed, no second worker receives it;
    with --no-heartbeat its lease expires and a second worker gets it."""
    marks = tmp_path / "marks"
    marks.mkdir()
    env = os.environ | {"CHUNKFLOW_TEST_MARKS": str(marks), "CHUNKFLOW_TEST_DELAY": "5"}
    cases = {"heartbeat": [], "no-heartbeat": ["--no-heartbeat"]}
    specs = {case: new_queue(kind) for case in cases}
    slow, other, procs = {}, {}, []
    try:
        for case, flags in cases.items():
            spec = specs[case]
            spec.open(create=True).send([TASK])
            argv = ["fetch-task", "-q", spec.name, "-v", 2, "-n", 1, *flags, *spec.options]
            argv += ["cutout", "-v", volumes["in"], "plugin", "-f", volumes["slow"]]
            argv += ["delete-task-in-queue"]
            slow[case] = tmp_path / f"slow-{case}.log"
            procs.append(start_worker(argv, slow[case], env))
        # both slow workers are inside their task: start a second worker on each queue
        wait_for(lambda: len(list(marks.glob("start_*"))) == 2, 30, "the slow workers")
        for case in cases:
            spec = specs[case]
            argv = ["fetch-task", "-q", spec.name, "-v", 30, "-n", 1, "-r", 3, "-w", 1]
            other[case] = tmp_path / f"other-{case}.log"
            procs.append(start_worker(argv + spec.options, other[case], env))
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        stop_all(procs)
    text = {case: (slow[case].read_text(), other[case].read_text()) for case in cases}

    slow_log, other_log = text["heartbeat"]
    assert done_tasks(slow_log) == {TASK}
    assert "expired" not in slow_log
    assert done_tasks(other_log) == set()
    assert ": 0 tasks done, 0 failed" in other_log
    assert specs["heartbeat"].open().count() == 0

    slow_log, other_log = text["no-heartbeat"]
    assert done_tasks(other_log) == {TASK}  # handed out a second time
    assert done_tasks(slow_log) == {TASK}
    if kind == "local":  # SQS (moto) accepts a stale receipt handle; the local queue does not
        assert f"the lease of task {TASK} had expired" in slow_log
        assert specs["no-heartbeat"].open().count() == 1  # the second worker holds it


@pytest.mark.parametrize("kind", KINDS)
def test_failed_task_is_retried_then_dead_lettered(kind, new_queue, volumes, run_cli, tmp_path):
    """A failing task never stops the worker: it is retried --max-retries times, then moved to
    the dead-letter place with its error, while the other tasks are done; the run says so and
    exits non-zero."""
    spec = new_queue(kind)
    queue = spec.open(create=True)
    good = ["8-16_0-16_0-16", "16-24_0-16_0-16"]
    queue.send([TASK, *good])
    out = tmp_path / "out"
    create_output(f"file://{out}")
    failing = tmp_path / "failing.py"  # fails on the first task only
    failing.write_text(
        "def execute(chunk):\n"
        f"    if chunk.bbox.string == {TASK!r}:\n"
        "        raise ValueError('injected failure')\n"
        "    return 255 - chunk.array\n"
    )
    argv = ["fetch-task", "-q", spec.name, "-v", 30, "-r", 0, "-w", 0, "--max-retries", 1]
    result = run_cli(
        [*argv, *spec.options, *chain(volumes, f"file://{out}", str(failing))], expect=1
    )
    assert result.err.count("ValueError: injected failure") == 3  # two attempts, the dead letter
    assert "failed (attempt 1 of 2), released for retry" in result.err
    assert error_line(result).startswith(
        f"chunkflow: error: fetch-task: {spec.name}: 2 tasks done, 1 failed and released for "
        "retry, 1 dead-lettered, 0 leased by other workers; the queue holds 0 pending, "
        "0 leased, 1 dead"
    )
    assert done_tasks(result.err) == set(good)
    for body in good:
        bbox = BoundingBox.from_string(body)
        expected = volumes["inverse"][bbox.to_slices()]
        np.testing.assert_array_equal(read_precomputed(f"file://{out}", bbox).array, expected)
    counts = queue.counts()
    assert (counts.pending, counts.leased, counts.dead) == (0, 0, 1)
    if kind == "local":
        [(body, reason)] = queue.dead_letters()
        assert body == TASK and "plugin (task 0-8_0-16_0-16): ValueError: injected" in reason
    status = run_cli(["queue-status", "-q", spec.name, *spec.options])
    assert "0 pending, 0 leased, 1 dead" in status.out
    line = error_line(run_cli(["queue-status", "-q", spec.name, "--check", *spec.options], 1))
    assert line.endswith("is not drained: 0 pending, 0 leased, 1 dead")
    run_cli(["queue-purge", "-q", spec.name, *spec.options])
    run_cli(["queue-status", "-q", spec.name, "--check", *spec.options])


@pytest.mark.parametrize("kind", KINDS)
def test_stop_on_error_keeps_the_task(kind, new_queue, volumes, run_cli, tmp_path, monkeypatch):
    spec = new_queue(kind)
    queue = spec.open(create=True)
    queue.send([TASK])
    out = f"file://{tmp_path / 'out'}"
    fetch = ["fetch-task", "-q", spec.name, "-v", 30, *spec.options]
    argv = [*fetch, "-r", 0, "-w", 0, "--stop-on-error", *chain(volumes, out, volumes["failing"])]
    line = error_line(run_cli(argv, expect=1))
    assert line == (
        f"chunkflow: error: plugin (task {TASK}): ValueError: injected failure; released the "
        f"lease of task {TASK} (run with --verbose for the traceback)"
    )
    assert queue.count() == 1
    assert not (tmp_path / "out").exists()  # save never ran
    # released at once, not after the visibility timeout: a healthy worker finishes it now
    monkeypatch.setenv("CHUNKFLOW_TEST_DELAY", "0")
    result = run_cli([*fetch, "-n", 1, "-r", 0, "-w", 1, *chain(volumes, out)])
    assert done_tasks(result.err) == {TASK}
    assert queue.count() == 0
    bbox = BoundingBox.from_string(TASK)
    np.testing.assert_array_equal(
        read_precomputed(out, bbox).array, volumes["inverse"][bbox.to_slices()]
    )


def test_processing_a_task_twice_writes_the_same_bytes(
    new_queue, volumes, run_cli, tmp_path, monkeypatch
):
    monkeypatch.setenv("CHUNKFLOW_TEST_DELAY", "0")
    spec = new_queue("local")
    queue = spec.open(create=True)
    out = tmp_path / "out"
    create_output(f"file://{out}")
    task = "8-16_16-48_32-64"  # four storage blocks
    argv = ["fetch-task", "-q", spec.name, "-r", 0, "-w", 0, *chain(volumes, f"file://{out}")]
    queue.send([task])
    run_cli(argv)
    files = sorted((out / "1_1_1").iterdir())
    blocks = grid_bboxes(BoundingBox.from_string(task), BLOCK)
    assert {f.name for f in files} == block_files(blocks) and len(files) == 4
    first = {f.name: (f.read_bytes(), f.stat()) for f in files}
    time.sleep(0.05)
    queue.send([task])  # the same task again, as after an expired lease
    run_cli(argv)
    assert sorted((out / "1_1_1").iterdir()) == files
    for f in files:
        data, stat = first[f.name]
        assert f.read_bytes() == data
        now = f.stat()
        assert (now.st_ino, now.st_mtime_ns) != (stat.st_ino, stat.st_mtime_ns)  # rewritten
    assert queue.count() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_skipped_tasks_are_deleted_too(kind, new_queue, volumes, run_cli, tmp_path):
    spec = new_queue(kind)
    zero, out = f"file://{tmp_path / 'zero'}", f"file://{tmp_path / 'out'}"
    run_cli(["create-chunk", "-s", 16, 32, 32, "--pattern", "zero"] + ["save", "-v", zero])
    run_cli(["generate-tasks", "-v", zero, "-c", *BLOCK, "-q", spec.name, *spec.options])
    queue = spec.open()
    assert queue.count() == 8
    result = run_cli(
        ["fetch-task", "-q", spec.name, "-r", 0, "-w", 0, *spec.options]
        + ["cutout", "-v", zero, "skip-all-zero", *chain(volumes, out)[3:]]
    )
    assert result.err.count("skipped (chunk is all zero)") == 8
    assert queue.count() == 0
    assert not (tmp_path / "out").exists()


def test_fetch_a_number_of_tasks_and_dry_run(new_queue, run_cli, tmp_path):
    spec = new_queue("local")
    run_cli(
        ["--dry-run", "generate-tasks", "-s", 0, 0, 0, "-z", 2, 2, 10, "-c", 2, 2, 2]
        + ["-q", spec.name]
    )
    assert not os.listdir(tmp_path)  # no queue created
    run_cli(["generate-tasks", "-s", 0, 0, 0, "-z", 2, 2, 10, "-c", 2, 2, 2, "-q", spec.name])
    result = run_cli(["fetch-task", "-q", spec.name, "-n", 2, "-w", 0, "delete-task-in-queue"])
    assert done_tasks(result.err) == {"0-2_0-2_0-2", "0-2_0-2_2-4"}
    assert spec.open().count() == 3
    result = run_cli("create-bbox -b 0-1_0-1_0-1 delete-task-in-queue")
    assert "did not come from a queue" in result.err


@pytest.mark.parametrize("ext", ["npy", "txt"])
def test_fetch_task_from_file(ext, run_cli, tmp_path, monkeypatch):
    run_cli(f"generate-tasks -s 0 0 0 -z 4 4 8 -c 2 2 2 -f tasks.{ext}")
    assert len(read_task_file(str(tmp_path / f"tasks.{ext}"))) == 16
    done = tmp_path / "done"
    done.mkdir()

    def job(args: str) -> list[str]:
        for f in done.iterdir():
            f.unlink()
        result = run_cli(f"fetch-task-from-file -f tasks.{ext} {args} mark-complete -p done/")
        assert sorted(done_tasks(result.err)) == sorted(os.listdir(done))
        return sorted(os.listdir(done))

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert job("-n 3") == ["0-2_2-4_4-6", "0-2_2-4_6-8", "2-4_0-2_0-2"]  # tasks 6, 7, 8
    assert job("") == ["0-2_0-2_4-6"]  # task 2
    assert job("--job-index 5 -n 3") == ["2-4_2-4_6-8"]  # the option wins; the last job is short
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "15")
    assert job("") == ["2-4_2-4_6-8"]
    result = run_cli(f"fetch-task-from-file -f tasks.{ext} -i 16 mark-complete -p done/")
    assert "job 16 has no tasks (16 in" in result.err


def test_fetch_task_from_file_errors(run_cli, tmp_path, monkeypatch):
    run_cli("generate-tasks -s 0 0 0 -z 2 2 2 -c 2 2 2 -f t.txt")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    missing = "--job-index is missing and $SLURM_ARRAY_TASK_ID is not set"
    assert missing in error_line(run_cli("fetch-task-from-file -f t.txt", expect=1))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "x")
    assert missing in error_line(run_cli("fetch-task-from-file -f t.txt", expect=1))
    line = error_line(run_cli("fetch-task-from-file -f none.npy -i 0", expect=1))
    assert "task file none.npy: no such file" in line
    (tmp_path / "t.txt").write_text("0-2_0-2_0-2\nhello\n")
    line = error_line(run_cli("fetch-task-from-file -f t.txt -i 0", expect=1))
    assert "t.txt, line 2: 'hello' is not a bounding box" in line
    line = error_line(run_cli("generate-tasks -s 0 0 0 -z 2 2 2 -c 2 2 2 -f t.csv", expect=1))
    assert "expected a .npy or .txt name" in line


def test_unreachable_endpoint_fails_fast(run_cli):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    commands = [
        ["fetch-task", "-q", "sqs://cf-x", "--endpoint-url", url],
        ["generate-tasks", "-s", 0, 0, 0, "-z", 1, 1, 1, "-c", 1, 1, 1, "-q", "sqs://cf-x"]
        + ["--endpoint-url", url],
    ]
    for argv in commands:
        start = time.monotonic()
        line = error_line(run_cli(argv, expect=1))
        assert time.monotonic() - start < 15
        assert "sqs://cf-x: queue endpoint unreachable" in line and url in line


def test_missing_credentials_fail_fast(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",  # the tests stay off the network
    }
    # a closed loopback port as the endpoint: nothing could leave this machine anyway
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    proc = subprocess.run(
        [str(CHUNKFLOW), "fetch-task", "-q", "sqs://cf-x", "--endpoint-url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert time.monotonic() - start < 15
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "chunkflow: error: fetch-task: sqs://cf-x: no AWS credentials found (set "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure ~/.aws/credentials); "
        "for a local queue folder use -q file://PATH or a path with a /"
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_poison_messages_are_moved_aside(kind, new_queue, volumes, run_cli, tmp_path):
    spec = new_queue(kind)
    queue = spec.open(create=True)
    queue.send(["hello", TASK, "0-8_0-16"])
    if kind == "local":  # a stray file and an unreadable one in the queue folder
        (Path(queue.pending) / "README").write_text("not a task")
        (Path(queue.pending) / "zz-binary").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    argv = ["fetch-task", "-q", spec.name, "-v", 30, "-r", 0, "-w", 0, *spec.options]
    result = run_cli(argv + chain(volumes, f"file://{tmp_path / 'out'}"), expect=1)
    assert "fetch-task: message 'hello' moved to " in result.err
    assert "malformed task message 'hello': expected a bounding box z0-z1_y0-y1_x0-x1" in (
        result.err
    )
    assert done_tasks(result.err) == {TASK}  # the good task is done regardless
    dead = 4 if kind == "local" else 2
    assert error_line(result).endswith(f"; the queue holds 0 pending, 0 leased, {dead} dead")
    assert "Traceback" not in result.err
    if kind == "local":
        reasons = dict(queue.dead_letters())
        assert reasons["not a task"].startswith("malformed task message 'not a task'")
        assert any(r.startswith("unreadable (UnicodeDecodeError") for r in reasons.values())


def test_task_outside_the_volume(new_queue, volumes, run_cli, tmp_path):
    spec = new_queue("local")
    queue = spec.open(create=True)
    queue.send(["100-108_0-16_0-16"])
    argv = ["fetch-task", "-q", spec.name, "-r", 0, "-w", 0, "--stop-on-error"]
    line = error_line(run_cli(argv + chain(volumes, f"file://{tmp_path / 'out'}"), expect=1))
    assert line.startswith("chunkflow: error: cutout (task 100-108_0-16_0-16): ")
    assert "outside the volume" in line
    assert queue.count() == 1


def test_missing_queues(new_queue, run_cli, tmp_path):
    line = error_line(run_cli(f"fetch-task -q file://{tmp_path}/nowhere", expect=1))
    assert line == (
        f"chunkflow: error: fetch-task: local queue {tmp_path}/nowhere does not exist "
        "(generate-tasks --queue-name creates it)"
    )
    line = error_line(run_cli(f"fetch-task -q {tmp_path}/", expect=1))  # a folder, not a queue
    assert "does not exist" in line
    spec = new_queue("sqs")
    line = error_line(run_cli(["fetch-task", "-q", spec.name, *spec.options], expect=1))
    assert line.startswith(f"chunkflow: error: fetch-task: {spec.name}: ")
    assert "NonExistentQueue" in line


@pytest.mark.parametrize("kind", KINDS)
def test_drained_queue_exits_within_seconds(kind, new_queue, run_cli):
    spec = new_queue(kind)
    spec.open(create=True)
    start = time.monotonic()
    result = run_cli(["fetch-task", "-q", spec.name, *spec.options, "delete-task-in-queue"])
    assert time.monotonic() - start < 10  # default polls: 3 of 2 s
    assert ": 0 tasks done, 0 failed" in result.err


@pytest.mark.parametrize("kind", KINDS)
def test_worker_waits_for_tasks_leased_elsewhere(kind, new_queue, run_cli):
    """A task leased by a worker that died comes back after its visibility timeout: a worker
    on the otherwise empty queue waits for it instead of reporting success."""
    spec = new_queue(kind)
    queue = spec.open(create=True)
    queue.send([TASK])
    assert queue.receive(6) is not None  # leased by a worker that then died
    fetch = ["fetch-task", "-q", spec.name, "-w", 1, *spec.options]
    result = run_cli([*fetch, "--lease-wait", 0, "-r", 0, "-w", 0, "delete-task-in-queue"])
    assert ": 0 tasks done, 0 failed and released for retry, 0 dead-lettered, 1 leased by " in (
        result.err
    )  # told not to wait: reported, not waited for
    result = run_cli([*fetch, "-v", 30, "delete-task-in-queue"])
    assert done_tasks(result.err) == {TASK}
    assert queue.count() == 0
    # a lease that outlives the wait fails the run with the counts
    queue.send([TASK])
    assert queue.receive(60) is not None
    line = error_line(run_cli([*fetch, "--lease-wait", 2, "delete-task-in-queue"], expect=1))
    assert "0 tasks done, 0 failed and released for retry, 0 dead-lettered, 1 leased by" in line


def test_fetch_task_from_sqs_never_reads_a_local_folder(new_queue, run_cli):
    spec = new_queue("local")
    spec.open(create=True)
    line = error_line(run_cli(["fetch-task-from-sqs", "-q", spec.name], expect=1))
    assert line == (
        f"chunkflow: error: fetch-task-from-sqs: {spec.name!r} is a local queue folder; use "
        "fetch-task"
    )
    line = error_line(run_cli(["fetch-task", "-q", "gs://bucket/q"], expect=1))
    assert "queue 'gs://bucket/q': unknown scheme" in line
