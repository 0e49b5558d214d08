"""What becomes of a leased message, for both kinds of queue: receive counts, release, dead
letters, counts, purge; and the queue naming rules."""

from __future__ import annotations

import os

import pytest

from chunkflow.errors import ChunkflowError
from chunkflow.queues import queue_kind
from chunkflow.queues.lease import Lease, release_held

KINDS = ["local", "sqs"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("my-queue", ("sqs", "my-queue")),
        ("sqs://my_queue", ("sqs", "my_queue")),
        ("jobs.fifo", ("sqs", "jobs.fifo")),
        ("file:///scratch/q", ("local", "/scratch/q")),
        ("./q", ("local", "./q")),
        ("/scratch/q", ("local", "/scratch/q")),
        ("queues/today", ("local", "queues/today")),
    ],
)
def test_queue_names(name, expected):
    assert queue_kind(name) == expected


@pytest.mark.parametrize("name", ["gs://bucket/q", "https://sqs.aws/q", "sqs:/typo", "s3://b"])
def test_unknown_schemes_are_refused(name):
    with pytest.raises(ChunkflowError, match=f"queue '{name}': unknown scheme"):
        queue_kind(name)


@pytest.mark.parametrize("name", ["my queue", "q!", "x" * 81])
def test_bad_sqs_names_are_refused(name):
    with pytest.raises(ChunkflowError, match="not a valid SQS queue name"):
        queue_kind(name)


@pytest.mark.parametrize("kind", KINDS)
def test_receive_counts_release_and_dead_letter(kind, new_queue):
    queue = new_queue(kind).open(create=True)
    queue.send(["0-1_0-1_0-1", "1-2_0-1_0-1"])
    first = queue.receive(60)
    assert first.attempts == 1
    assert queue.release(first.handle)  # visible again at once
    received = {m.body: m for m in (queue.receive(60, wait_seconds=2) for _ in range(2))}
    again, other = received[first.body], received["1-2_0-1_0-1"]  # in any order (SQS)
    assert (again.attempts, other.attempts) == (2, 1)
    counts = queue.counts()
    assert (counts.pending, counts.leased, counts.dead) == (0, 2, 0)
    assert queue.dead_letter(again.handle, "ValueError: injected", again.body)
    assert queue.delete(other.handle)
    counts = queue.counts()
    assert (counts.pending, counts.leased, counts.dead) == (0, 0, 1)
    assert queue.count() == 0  # dead letters are not work left
    if kind == "local":
        assert queue.dead_letters() == [(first.body, "ValueError: injected")]
        assert queue.peek(-1) == []
    purged = queue.purge()
    assert purged.dead == 1
    counts = queue.counts()
    assert (counts.pending, counts.leased, counts.dead) == (0, 0, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_held_leases_are_released_at_once(kind, new_queue):
    queue = new_queue(kind).open(create=True)
    queue.send(["0-1_0-1_0-1"])
    lease = Lease(queue, queue.receive(600), 600)
    lease.start_heartbeat()
    assert queue.receive(600) is None
    assert release_held() == ["0-1_0-1_0-1"]
    assert release_held() == []
    assert queue.receive(600, wait_seconds=2).body == "0-1_0-1_0-1"
    assert not lease.delete()  # settled already: a second outcome is refused


def test_stray_files_are_received_not_fatal(tmp_path):
    from chunkflow.queues.local import LocalQueue

    queue = LocalQueue(str(tmp_path / "q"), create=True)
    (tmp_path / "q" / "pending" / "notes.txt").write_bytes(b"\xff\xfe binary")
    (tmp_path / "q" / "pending" / "a-folder").mkdir()
    (tmp_path / "q" / "leased" / "no-deadline").write_text("0-1_0-1_0-1")
    received = [queue.receive(60) for _ in range(3)]
    assert queue.receive(60) is None
    problems = sorted(m.problem is not None for m in received)
    assert problems == [False, True, True]  # the folder and the binary file are unreadable
    for message in received:
        assert queue.dead_letter(message.handle, message.problem or "stray")
    assert sorted(os.listdir(queue.pending) + os.listdir(queue.leased)) == []
    assert queue.counts().dead == 3
    assert len(queue.dead_letters()) == 3


def test_peek_reads_without_leasing(tmp_path):
    from chunkflow.queues.local import LocalQueue

    queue = LocalQueue(str(tmp_path / "q"), create=True)
    queue.send(["a", "b", "c"])
    before = sorted(os.listdir(queue.pending))
    assert queue.peek(2) == ["a", "b"]
    assert queue.peek(-1) == ["a", "b", "c"]
    assert sorted(os.listdir(queue.pending)) == before
