"""A production run under faults, on a real queue of each kind (a local folder, SQS on moto).

200 tasks, 4 worker processes, one task that always fails, two poison messages; one worker is
SIGKILLed and one SIGTERMed in the middle of a task. Every good task ends up in the output
exactly as the computation says, each deleted exactly once; the bad task and the poison
messages are in the dead-letter place; every worker exits with its counts; and the whole run
is bounded in time.
"""

from __future__ import annotations

import os
import re
import signal
import time

import numpy as np
import pytest

from chunkflow.geometry import BoundingBox, grid_bboxes
from chunkflow.io.precomputed import read_precomputed
from tests.cli.test_queue import (
    SLOW_PLUGIN,
    random_volume,
    run_main,
    start_worker,
    stop_all,
    wait_for,
)
from tests.queues import conftest as queue_fixtures

aws_env = queue_fixtures.aws_env
moto_endpoint = queue_fixtures.moto_endpoint
new_queue = queue_fixtures.new_queue

SHAPE = (16, 160, 160)
BLOCK = (8, 16, 16)  # 2 x 10 x 10 = 200 tasks
WHOLE = BoundingBox((0, 0, 0), SHAPE)
BAD = "8-16_80-96_80-96"
POISON = ["hello", "0-8_0-16"]

# The slow plugin of test_queue, failing on one task.
PLUGIN = SLOW_PLUGIN.replace(
    "def execute(chunk):\n",
    f"def execute(chunk):\n    if chunk.bbox.string == {BAD!r}:\n"
    "        raise ValueError('injected failure')\n",
)
SUMMARY = re.compile(
    r"(\d+) tasks done, (\d+) failed and released for retry, (\d+) dead-lettered, "
    r"(\d+) leased by other workers"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    source, image = random_volume(root, SHAPE, BLOCK, seed=3)
    (root / "plugin.py").write_text(PLUGIN)
    return source, str(root / "plugin.py"), 255 - image


@pytest.mark.parametrize("kind", ["local", "sqs"])
def test_workers_under_faults(kind, new_queue, data, tmp_path):
    source, plugin, inverse = data
    spec = new_queue(kind)
    out = f"file://{tmp_path / 'out'}"
    run_main(["create-info", "-v", out, "-z", *SHAPE, "-b", *BLOCK, "-d", "uint8"])
    run_main(["generate-tasks", "-v", source, "-c", *BLOCK, "-q", spec.name, *spec.options])
    queue = spec.open()
    queue.send(POISON)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = os.environ | {"CHUNKFLOW_TEST_MARKS": str(marks), "CHUNKFLOW_TEST_DELAY": "0.02"}
    argv = ["fetch-task", "-q", spec.name, "-v", 4, "-r", 1, "-w", 1, *spec.options]
    argv += ["cutout", "-v", source, "plugin", "-f", plugin, "-i", "chunk", "-o", "chunk"]
    argv += ["save", "-v", out]
    argv += ["delete-task-in-queue"]
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    start = time.monotonic()
    workers = [start_worker(argv, log, env) for log in logs]
    killed, terminated = workers[0], workers[1]
    try:
        for victim in (killed, terminated):
            wait_for(lambda v=victim: list(marks.glob(f"start_{v.pid}_*")), 60, "a first task")
            (marks / f"hang_{victim.pid}").touch()
            wait_for(lambda v=victim: list(marks.glob(f"hung_{v.pid}_*")), 60, "it to hang")
        killed.send_signal(signal.SIGKILL)
        terminated.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=150) for worker in workers]
    finally:
        stop_all(workers)
    elapsed = time.monotonic() - start
    texts = [log.read_text() for log in logs]

    assert codes[0] == -signal.SIGKILL
    assert codes[1] == 143
    hung_task = next(marks.glob(f"hung_{terminated.pid}_*")).name.split("_", 2)[2]
    assert texts[1].strip().splitlines()[-1] == (
        f"chunkflow: error: terminated (SIGTERM); released the lease of task {hung_task}"
    )
    summaries = []
    for code, text in zip(codes[2:], texts[2:]):
        assert "Traceback" not in text
        last = text.strip().splitlines()[-1]
        match = SUMMARY.search(last)
        assert match, last
        summaries.append([int(v) for v in match.groups()])
        assert code == (0 if summaries[-1][1:3] == [0, 0] else 1)
        assert last.endswith("the queue holds 0 pending, 0 leased, 3 dead")
    # The two that survived did everything the victims left, each good task deleted once.
    bboxes = grid_bboxes(WHOLE, BLOCK)
    done_by_victims = sum(
        len(re.findall(r"INFO    task \S+: fetch-task", text)) for text in texts[:2]
    )
    done = sum(s[0] for s in summaries)
    assert done + done_by_victims == len(bboxes) - 1
    assert sum(s[2] for s in summaries) + texts[0].count("dead-lettered") >= 3
    counts = queue.counts()
    assert (counts.pending, counts.leased, counts.dead) == (0, 0, 3)
    if kind == "local":
        reasons = dict(queue.dead_letters())
        assert set(reasons) == {BAD, *POISON}
        assert "ValueError: injected failure" in reasons[BAD]
    # The output is the computation, block by block; the bad task wrote nothing.
    array = read_precomputed(out, WHOLE, fill_missing=True).array
    bad = BoundingBox.from_string(BAD)
    expected = inverse.copy()
    expected[bad.to_slices()] = 0
    np.testing.assert_array_equal(array, expected)
    files = set(os.listdir(tmp_path / "out" / "1_1_1"))
    assert len(files) == len(bboxes) - 1
    assert elapsed < 150
