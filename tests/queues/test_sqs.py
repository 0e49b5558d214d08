"""SQSQueue against a moto SQS server on loopback: the lease semantics of the local queue."""

from __future__ import annotations

import time
import uuid

import pytest

from chunkflow.errors import ChunkflowError
from chunkflow.queues import open_queue
from chunkflow.queues.lease import Lease
from chunkflow.queues.local import LocalQueue
from chunkflow.queues.sqs import SQSQueue


@pytest.fixture
def name() -> str:
    return f"cf-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def queue(moto_endpoint, name) -> SQSQueue:
    return SQSQueue(name, moto_endpoint, create=True)


def test_open_queue_picks_sqs(moto_endpoint, name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    created = open_queue(f"sqs://{name}", moto_endpoint, create=True)
    assert isinstance(created, SQSQueue) and created.name == name
    bare = open_queue(name, moto_endpoint)  # a bare name is SQS, as in every chunkflow release
    assert isinstance(bare, SQSQueue) and bare.url == created.url
    assert isinstance(open_queue(f"./{name}", create=True), LocalQueue)
    assert not (tmp_path / name).exists() or (tmp_path / name / "pending").is_dir()
    # the endpoint from the environment, as boto3 documents it
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    assert open_queue(f"sqs://{name}").url == created.url


def test_missing_queue(moto_endpoint, name):
    with pytest.raises(ChunkflowError, match=f"sqs://{name}: .*NonExistentQueue"):
        SQSQueue(name, moto_endpoint)


def test_send_receive_delete_count(queue):
    assert queue.count() == 0
    assert queue.receive(60) is None
    bodies = [f"{i}-{i + 1}_0-8_0-8" for i in range(23)]  # three batches of at most 10
    queue.send(bodies)
    assert queue.count() == 23
    received = []
    while (message := queue.receive(60)) is not None:
        received.append(message)
    assert sorted(m.body for m in received) == sorted(bodies)
    assert len({m.handle for m in received}) == 23
    assert queue.count() == 23  # in flight still counts
    for m in received:
        assert queue.delete(m.handle)
    assert queue.count() == 0


def test_message_returns_after_the_visibility_timeout(queue):
    queue.send(["0-1_0-1_0-1"])
    first = queue.receive(1)
    assert first.body == "0-1_0-1_0-1"
    assert queue.receive(1) is None  # invisible while leased
    time.sleep(1.2)
    again = queue.receive(60)
    assert again is not None and again.body == first.body
    assert again.handle != first.handle
    assert queue.delete(again.handle)
    assert queue.count() == 0


def test_long_poll_waits_for_the_lease_to_expire(queue):
    queue.send(["x"])
    queue.receive(1)
    start = time.monotonic()
    message = queue.receive(60, wait_seconds=3)
    assert message is not None and message.body == "x"
    assert time.monotonic() - start < 2.9


def test_change_message_visibility_extends_the_lease(queue):
    queue.send(["x"])
    message = queue.receive(1)
    assert queue.extend(message.handle, 3) == message.handle
    time.sleep(1.3)  # past the first timeout, within the extended one
    assert queue.receive(60) is None
    assert queue.count() == 1
    assert queue.delete(message.handle)
    assert queue.count() == 0


def test_lease_heartbeat_keeps_the_message_hidden(queue):
    queue.send(["x"])
    lease = Lease(queue, queue.receive(1), 1)
    lease.start_heartbeat()  # renews every 1/3 s
    time.sleep(1.6)  # past the first timeout
    assert queue.receive(60) is None
    assert lease.delete()
    assert queue.count() == 0


def test_failed_call_is_one_clear_error(queue, moto_endpoint):
    queue.send(["x"])
    with pytest.raises(ChunkflowError, match=f"sqs://{queue.name}: delete_message failed"):
        queue.delete("not-a-receipt-handle")
    assert queue.count() == 1
