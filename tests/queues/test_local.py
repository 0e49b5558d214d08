"""The local folder queue: lease semantics, concurrent workers, task files and message bodies."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.queues import open_queue, parse_body, read_task_file, write_task_file
from chunkflow.queues.lease import Lease
from chunkflow.queues.local import LocalQueue


def bodies(n: int) -> list[str]:
    return [f"{i}-{i + 1}_0-8_0-8" for i in range(n)]


@pytest.fixture
def queue(tmp_path) -> LocalQueue:
    return LocalQueue(str(tmp_path / "q"), create=True)


def test_open_queue_picks_the_local_queue(tmp_path):
    assert isinstance(open_queue(f"file://{tmp_path}/a", create=True), LocalQueue)
    assert isinstance(open_queue(str(tmp_path / "b"), create=True), LocalQueue)
    assert open_queue(f"file://{tmp_path}/a").path == str(tmp_path / "a")


def test_missing_queue_folder(tmp_path):
    with pytest.raises(ChunkflowError, match="does not exist"):
        LocalQueue(str(tmp_path / "nowhere"))
    (tmp_path / "half").mkdir()  # a folder, but not a queue
    with pytest.raises(ChunkflowError, match="does not exist"):
        LocalQueue(str(tmp_path / "half"))


def test_send_receive_delete_count(queue):
    assert queue.count() == 0
    assert queue.receive(60) is None
    queue.send(bodies(3))
    assert queue.count() == 3
    received = [queue.receive(60) for _ in range(3)]
    assert [m.body for m in received] == bodies(3)  # oldest first
    assert queue.receive(60) is None  # all leased
    assert queue.count() == 3  # leased messages still count
    for m in received:
        assert queue.delete(m.handle)
    assert queue.count() == 0
    assert queue.receive(0.1) is None
    assert os.listdir(queue.pending) == os.listdir(queue.leased) == []


def test_send_keeps_order_across_calls(queue):
    queue.send(["a"])
    queue.send(["b", "c"])
    assert [queue.receive(60).body for _ in range(3)] == ["a", "b", "c"]


def test_message_is_invisible_until_its_deadline(queue):
    queue.send(["0-1_0-1_0-1"])
    first = queue.receive(0.5)
    assert queue.receive(0.5) is None
    time.sleep(0.6)
    again = queue.receive(60)
    assert again is not None and again.body == "0-1_0-1_0-1"
    assert again.handle != first.handle
    # the first worker's lease is gone: it can neither renew nor delete the message
    with pytest.raises(ChunkflowError, match="lease of task .* was lost"):
        queue.extend(first.handle, 60)
    assert not queue.delete(first.handle)
    assert queue.count() == 1
    assert queue.delete(again.handle)
    assert queue.count() == 0


def test_receive_waits_for_a_lease_to_expire(queue):
    queue.send(["x"])
    queue.receive(0.4)
    start = time.monotonic()
    message = queue.receive(60, wait_seconds=3)
    waited = time.monotonic() - start
    assert message is not None and message.body == "x"
    assert 0.2 < waited < 1.5
    start = time.monotonic()
    assert queue.receive(60, wait_seconds=0.5) is None
    assert time.monotonic() - start >= 0.5


def test_extend_renews_the_lease(queue):
    queue.send(["x"])
    message = queue.receive(0.5)
    handle = queue.extend(message.handle, 2)
    assert handle != message.handle
    assert not os.path.exists(message.handle) and os.path.exists(handle)
    time.sleep(0.7)  # past the first deadline, within the renewed one
    assert queue.receive(60) is None
    assert queue.delete(handle)
    assert queue.count() == 0


def test_lease_heartbeat_keeps_the_task_hidden(queue):
    queue.send(["x"])
    lease = Lease(queue, queue.receive(0.4), 0.4)
    lease.start_heartbeat()
    time.sleep(1.0)  # 2.5 visibility timeouts
    assert queue.receive(60) is None
    assert not lease.lost
    assert lease.delete()
    assert queue.count() == 0


def test_lease_reports_a_lost_lease(queue, caplog):
    queue.send(["0-1_0-1_0-1"])
    lease = Lease(queue, queue.receive(0.3), 0.3)  # no heartbeat: it expires
    time.sleep(0.4)
    other = queue.receive(60)
    assert other.body == "0-1_0-1_0-1"
    assert not lease.delete()  # another worker holds it now
    assert queue.count() == 1
    assert queue.delete(other.handle)
    # a worker that stalled past its deadline notices the loss at its next heartbeat
    queue.send(["0-2_0-2_0-2"])
    stalled = Lease(queue, queue.receive(0.3), 0.3)
    time.sleep(0.4)
    taker = queue.receive(60)
    assert taker.body == "0-2_0-2_0-2"
    with caplog.at_level("WARNING", logger="chunkflow"):
        stalled.start_heartbeat()
        deadline = time.monotonic() + 3
        while not stalled.lost and time.monotonic() < deadline:
            time.sleep(0.02)
    assert stalled.lost
    assert "task 0-2_0-2_0-2: the lease of task" in caplog.text and "was lost" in caplog.text
    assert not stalled.delete()
    assert queue.count() == 1  # the taker's lease is untouched
    assert queue.delete(taker.handle)


def _drain(path: str, start, out) -> None:
    """Worker process: receive and delete until the queue stays empty; report the bodies."""
    queue = LocalQueue(path)
    start.wait()  # all workers start together
    got = []
    while True:
        message = queue.receive(60)
        if message is None:
            break
        assert queue.delete(message.handle)
        got.append(message.body)
    out.put(got)


def test_racing_processes_get_disjoint_sets(queue):
    n, workers = 300, 3
    queue.send(bodies(n))
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_drain, args=(queue.path, start, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    everything = [body for got in results for body in got]
    assert len(everything) == len(set(everything)) == n  # disjoint, nothing twice
    assert set(everything) == set(bodies(n))  # and together all of them
    assert sum(1 for got in results if got) >= 2  # they really raced
    assert queue.count() == 0


def test_expired_leases_are_taken_by_exactly_one_worker(queue):
    n = 60
    queue.send(bodies(n))
    for _ in range(n):
        queue.receive(0.2)  # a dead worker's leases
    time.sleep(0.3)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_drain, args=(queue.path, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    everything = [body for got in results for body in got]
    assert sorted(everything) == sorted(bodies(n))
    assert queue.count() == 0


def test_parse_body():
    assert parse_body(" 0-8_0-16_0-32\n") == BoundingBox((0, 0, 0), (8, 16, 32))
    with pytest.raises(ChunkflowError, match="malformed task message 'hello'"):
        parse_body("hello")
    with pytest.raises(ChunkflowError, match=r"malformed task message 'xxx.*\.\.\.'"):
        parse_body("x" * 200)


@pytest.mark.parametrize("ext", ["npy", "txt"])
def test_task_file_round_trip(tmp_path, ext):
    bboxes = [BoundingBox((0, 0, 0), (2, 4, 8)), BoundingBox((2, 4, 8), (4, 8, 16))]
    path = str(tmp_path / f"tasks.{ext}")
    write_task_file(path, bboxes)
    assert read_task_file(path) == bboxes
    write_task_file(path, [])
    assert read_task_file(path) == []


def test_task_file_errors(tmp_path):
    with pytest.raises(ChunkflowError, match="no such file"):
        read_task_file(str(tmp_path / "none.npy"))
    with pytest.raises(ChunkflowError, match=r"expected a \.npy or \.txt name"):
        write_task_file(str(tmp_path / "tasks.csv"), [BoundingBox((0, 0, 0), (1, 1, 1))])
    assert not (tmp_path / "tasks.csv").exists()
    np.save(tmp_path / "bad.npy", np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(ChunkflowError, match=r"expected an \(N, 6\) array, got \(3, 4\)"):
        read_task_file(str(tmp_path / "bad.npy"))
    (tmp_path / "bad.txt").write_text("0-1_0-1_0-1\nnot a bbox\n")
    with pytest.raises(ChunkflowError, match=r"bad\.txt, line 2: 'not a bbox' is not a bounding"):
        read_task_file(str(tmp_path / "bad.txt"))
