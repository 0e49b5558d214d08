"""AWS SQS through boto3.

Credentials come from boto3's standard chain (environment, ~/.aws, instance roles); they are
never printed. Probing the instance metadata service is limited to one quick attempt, so a
machine without credentials fails at once with a clear message instead of hanging.
"""

from __future__ import annotations

import os

from chunkflow.errors import ChunkflowError
from chunkflow.progress import progress
from chunkflow.queues import Message


class SQSQueue:
    def __init__(self, name: str, endpoint_url: str | None = None, create: bool = False):
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        from chunkflow.aws import aws_session, short_error

        self.name = name
        try:
            session = aws_session()
        except ChunkflowError as err:
            raise ChunkflowError(f"sqs://{name}: {err}") from None
        config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3})
        self.client = session.client(
            "sqs",
            endpoint_url=endpoint_url,
            config=config,
            region_name=session.region_name or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        self._errors = (BotoCoreError, ClientError)
        try:
            if create:
                self.url = self.client.create_queue(QueueName=name)["QueueUrl"]
            else:
                self.url = self.client.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            raise ChunkflowError(f"sqs://{name}: {code or 'error'} ({short_error(err)})") from None
        except BotoCoreError as err:
            raise ChunkflowError(
                f"sqs://{name}: queue endpoint unreachable ({short_error(err)})"
            ) from None

    def __repr__(self) -> str:
        return f"SQSQueue({self.name})"

    def _call(self, method: str, **kwargs):
        from chunkflow.aws import short_error

        try:
            return getattr(self.client, method)(QueueUrl=self.url, **kwargs)
        except self._errors as err:
            raise ChunkflowError(
                f"sqs://{self.name}: {method} failed ({short_error(err)})"
            ) from None

    def send(self, bodies: list[str]) -> None:
        starts = range(0, len(bodies), 10)
        for start in progress(starts, desc="send tasks", unit="batch of 10"):
            entries = [
                {"Id": str(k), "MessageBody": body}
                for k, body in enumerate(bodies[start : start + 10])
            ]
            failed = self._call("send_message_batch", Entries=entries).get("Failed")
            if failed:
                raise ChunkflowError(f"sqs://{self.name}: {len(failed)} messages not sent")

    def receive(self, visibility_timeout: float, wait_seconds: int = 0) -> Message | None:
        reply = self._call(
            "receive_message",
            MaxNumberOfMessages=1,
            VisibilityTimeout=int(visibility_timeout),
            WaitTimeSeconds=int(wait_seconds),
        )
        messages = reply.get("Messages") or []
        if not messages:
            return None
        return Message(messages[0]["Body"], messages[0]["ReceiptHandle"])

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

    def count(self) -> int:
        attributes = self._call(
            "get_queue_attributes",
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())
