"""Fixtures for the queue tests: a moto SQS server on loopback, test AWS credentials, and queues
of either kind (a local folder or SQS on that server) behind one interface.

Nothing here talks to real AWS: the credentials are dummies, the endpoint is the moto server the
fixture starts on 127.0.0.1, and the instance metadata service is switched off.

tests/cli/test_queue.py reuses these fixtures by assigning them to module names.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.queues.moto import AWS_SCRUB, DUMMY_AWS, MOTO_SERVER, moto_server

CHUNKFLOW = Path(sys.executable).parent / "chunkflow"


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """URL of a moto server (SQS, S3, CloudWatch) on 127.0.0.1, one per test session."""
    if not MOTO_SERVER.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """Dummy AWS credentials for this process and the workers it starts; no other AWS setting."""
    for name in AWS_SCRUB:
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_AWS.items():
        monkeypatch.setenv(name, value)
    # SQSQueue sets these with os.environ.setdefault: undo that after each test
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "1")
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")


@dataclass
class QueueSpec:
    """A queue as the command line names it, and the same queue through chunkflow.queues."""

    kind: str  # "local" or "sqs"
    name: str  # the -q/--queue-name argument
    endpoint: str | None = None

    @property
    def options(self) -> list[str]:
        """Command-line options that go with -q NAME."""
        return ["--endpoint-url", self.endpoint] if self.endpoint else []

    def open(self, create: bool = False):
        from chunkflow.queues import open_queue

        return open_queue(self.name, self.endpoint, create)


@pytest.fixture
def new_queue(request, tmp_path):
    """`new_queue(kind)`: a fresh, not yet created queue name of that kind."""

    def make(kind: str) -> QueueSpec:
        tag = uuid.uuid4().hex[:12]
        if kind == "local":
            return QueueSpec("local", f"file://{tmp_path / ('queue-' + tag)}")
        if kind == "sqs":
            return QueueSpec("sqs", f"sqs://cf-{tag}", request.getfixturevalue("moto_endpoint"))
        raise ValueError(kind)

    return make
