"""AWS SQS through boto3.

Credentials come from boto3's standard chain (environment, ~/.aws, instance roles); they are
never printed. Probing the instance metadata service is limited to one quick attempt, so a
machine without credentials fails at once with a clear message instead of hanging.

Dead letters go to the queue `NAME-dead` (`NAME-dead.fifo` for a FIFO queue), created when the
first one is sent, with the reason as the message attribute `error`.
"""

from __future__ import annotations

import os

from chunkflow.errors import ChunkflowError
from chunkflow.progress import progress
from chunkflow.queues.messages import Counts, Message


class SQSQueue:
    """The SQS queue `name` (at `endpoint_url`, else boto3's endpoint); `create` makes it
    when missing, else a missing queue is refused."""

    def __init__(self, name: str, endpoint_url: str | None = None, create: bool = False):
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        from chunkflow.aws import aws_session

        self.name = name
        try:
            session = aws_session()
        except ChunkflowError as err:
            raise ChunkflowError(
                f"sqs://{name}: {err}; for a local queue folder use -q file://PATH "
                "or a path with a /"
            ) from None
        config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3})
        self.client = session.client(
            "sqs",
            endpoint_url=endpoint_url,
            config=config,
            region_name=session.region_name or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        self._errors = (BotoCoreError, ClientError)
        self.url = self._url(name, create)
        fifo = name.endswith(".fifo")
        self.dead_name = f"{name[:-5]}-dead.fifo" if fifo else f"{name}-dead"
        self._dead_url: str | None = None

    def _url(self, name: str, create: bool, missing_ok: bool = False) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        from chunkflow.aws import short_error

        try:
            if create:
                attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
                return self.client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            return self.client.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if missing_ok and "NonExistentQueue" in code:
                return None
            raise ChunkflowError(f"sqs://{name}: {code or 'error'} ({short_error(err)})") from None
        except BotoCoreError as err:
            raise ChunkflowError(
                f"sqs://{name}: queue endpoint unreachable ({short_error(err)})"
            ) from None

    @property
    def dead_place(self) -> str:
        """Where dead letters go, for messages."""
        return f"sqs://{self.dead_name}"

    @property
    def dead_url(self) -> str | None:
        if self._dead_url is None:
            self._dead_url = self._url(self.dead_name, create=False, missing_ok=True)
        return self._dead_url

    def __repr__(self) -> str:
        return f"SQSQueue({self.name})"

    def _call(self, method: str, url: str | None = None, **kwargs):
        from chunkflow.aws import short_error

        try:
            return getattr(self.client, method)(QueueUrl=url or self.url, **kwargs)
        except self._errors as err:
            raise ChunkflowError(
                f"sqs://{self.name}: {method} failed ({short_error(err)})"
            ) from None

    def send(self, bodies, total: int | None = None) -> None:
        """Send `bodies`, any iterable of strings, in batches of 10 (SQS's largest) as they come:
        memory stays bounded however many there are. `total` sizes the progress bar."""
        from itertools import islice

        if total is None and hasattr(bodies, "__len__"):
            total = len(bodies)
        bodies, sent = iter(bodies), 0
        with progress(desc="send tasks", total=total, unit="task") as bar:
            while batch := list(islice(bodies, 10)):
                entries = [{"Id": str(k), "MessageBody": body} for k, body in enumerate(batch)]
                failed = self._call("send_message_batch", Entries=entries).get("Failed")
                if failed:
                    raise ChunkflowError(
                        f"sqs://{self.name}: {len(failed)} of a batch of {len(batch)} messages "
                        f"not sent, after {sent} sent"
                    )
                sent += len(batch)
                bar.update(len(batch))

    def receive(self, visibility_timeout: float, wait_seconds: int = 0) -> Message | None:
        reply = self._call(
            "receive_message",
            MaxNumberOfMessages=1,
            VisibilityTimeout=int(visibility_timeout),
            WaitTimeSeconds=int(wait_seconds),
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages = reply.get("Messages") or []
        if not messages:
            return None
        first = messages[0]
        attempts = int(first.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        return Message(first["Body"], first["ReceiptHandle"], attempts)

    def extend(self, handle: str, visibility_timeout: float) -> str:
        self._call(
            "change_message_visibility",
            ReceiptHandle=handle,
            VisibilityTimeout=int(visibility_timeout),
        )
        return handle

    def delete(self, handle: str) -> bool:
        self._call("delete_message", ReceiptHandle=handle)
        return True

    def release(self, handle: str) -> bool:
        self._call("change_message_visibility", ReceiptHandle=handle, VisibilityTimeout=0)
        return True

    def dead_letter(self, handle: str, reason: str, body: str = "") -> bool:
        """Send the body to the dead-letter queue with the reason, then delete the message."""
        if self.dead_url is None:
            self._dead_url = self._url(self.dead_name, create=True)
        extra = {"MessageGroupId": "dead"} if self.dead_name.endswith(".fifo") else {}
        attribute = {"error": {"DataType": "String", "StringValue": reason[:4000] or "-"}}
        self._call(
            "send_message",
            url=self.dead_url,
            MessageBody=body or "(empty)",
            MessageAttributes=attribute,
            **extra,
        )
        return self.delete(handle)

    def dead_letters(self) -> list[tuple[str, str]]:
        """Dead letters can only be read by leasing them: see the queue NAME-dead instead."""
        return []

    def peek(self, limit: int) -> list[str] | None:
        """None: SQS cannot show messages without leasing them."""
        return None

    def _counts(self, url: str) -> tuple[int, int]:
        attributes = self._call(
            "get_queue_attributes",
            url=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes.get("ApproximateNumberOfMessages", 0)),
            int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        )

    def counts(self) -> Counts:
        pending, leased = self._counts(self.url)
        dead = sum(self._counts(self.dead_url)) if self.dead_url else 0
        return Counts(pending, leased, dead)

    def count(self) -> int:
        """Messages not yet done: waiting or leased."""
        counts = self.counts()
        return counts.pending + counts.leased

    def purge(self) -> Counts:
        """Remove every message, dead letters included; returns what was there."""
        counts = self.counts()
        for url in (self.url, self.dead_url):
            if url:
                self._call("purge_queue", url=url)
        return counts
