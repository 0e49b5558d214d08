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


# Where boto3 (so cloudfiles, cloud-volume and our queues) looks for an S3-compatible server,
# most specific first (the AWS SDKs' own names).
S3_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def s3_endpoint() -> str | None:
    """The S3-compatible endpoint `s3://` paths go to in this process, or None for AWS."""
    for name in S3_ENDPOINT_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None


def use_s3_endpoint(url: str) -> None:
    """Point every `s3://` path of this process, and of the processes it starts, at `url`.

    boto3 reads `AWS_ENDPOINT_URL_S3` for every S3 client it makes (cloudfiles, cloud-volume,
    our logs), and tensorstore gets it from `s3_endpoint()`. S3-compatible servers (MinIO, Ceph,
    older moto) may reject the request checksums newer boto3 sends by default, so those are
    sent only where a request requires them, unless the environment says otherwise.
    """
    os.environ["AWS_ENDPOINT_URL_S3"] = url
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
