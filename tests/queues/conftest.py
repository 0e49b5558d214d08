"""Fixtures for the queue tests: a moto SQS server on loopback, test AWS credentials, and queues
of either kind (a local folder or SQS on that server) behind one interface.

Nothing here talks to real AWS: the credentials are dummies, the endpoint is the moto server the
fixture starts on 127.0.0.1, and the instance metadata service is switched off.

tests/cli/test_queue.py reuses these fixtures by assigning them to module names.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
CHUNKFLOW = BIN / "chunkflow"
MOTO_SERVER = BIN / "moto_server"

TEST_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
# anything that could point boto3 at another account, endpoint or credential source
AWS_SCRUB = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def serve_moto(log_dir: Path):
    """Start `moto_server` on a free loopback port, yield its URL, stop it by its PID."""
    if not MOTO_SERVER.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    log = log_dir / "moto_server.log"
    env = {k: v for k, v in os.environ.items() if k not in AWS_SCRUB} | TEST_AWS
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not answer in 30 s:\n{log.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()  # the process we started, by its PID
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """URL of a moto SQS server on 127.0.0.1, one per test session."""
    yield from serve_moto(tmp_path_factory.mktemp("moto"))


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """Dummy AWS credentials for this process and the workers it starts; no other AWS setting."""
    for name in AWS_SCRUB:
        monkeypatch.delenv(name, raising=False)
    for name, value in TEST_AWS.items():
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
