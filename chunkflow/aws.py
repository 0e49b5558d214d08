"""AWS sessions for the queue and CloudWatch operators."""

from __future__ import annotations

import os

from chunkflow.errors import ChunkflowError


def aws_session():
    """A boto3 session with credentials, or a one-line `ChunkflowError` at once.

    The instance metadata service is probed once with a short timeout, so a machine without
    credentials fails quickly instead of hanging. Credentials are never printed.
    """
    import boto3
    from botocore.exceptions import BotoCoreError

    os.environ.setdefault("AWS_METADATA_SERVICE_TIMEOUT", "1")
    os.environ.setdefault("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")
    try:
        session = boto3.session.Session()
        credentials = session.get_credentials()
    except BotoCoreError as err:
        raise ChunkflowError(f"AWS configuration error ({short_error(err)})") from None
    if credentials is None:
        raise ChunkflowError(
            "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or configure ~/.aws/credentials)"
        )
    return session


def short_error(err) -> str:
    """An exception as one short line (botocore messages can span lines), without the
    credentials of the endpoint URL it may name."""
    from chunkflow.redact import redact

    return redact(" ".join(str(err).split()))[:200]
