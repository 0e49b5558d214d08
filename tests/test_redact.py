"""Credentials of URLs never reach what we print: `chunkflow.redact` and the errors using it."""

import pytest

from chunkflow.cli.framework import OperatorError
from chunkflow.errors import ChunkflowError
from chunkflow.redact import redact, redact_url


@pytest.mark.parametrize(
    "text, expected",
    [
        ("http://user:secret@127.0.0.1:9/sqs", "http://***@127.0.0.1:9/sqs"),
        ("https://TOKEN@github.com/org/repo", "https://***@github.com/org/repo"),
        ("https://u:p@ss@host/a@b", "https://***@host/a@b"),  # the last @ of the authority
        ("http://u:pa/ss@host:5/v", "http://***@host:5/v"),  # a password typed with a /
        (
            "s3://b/k?X-Amz-Credential=AKID%2F1&X-Amz-Signature=ab12&X-Amz-Expires=60",
            "s3://b/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
        ),
        (
            "https://h/v?token=t&api_key=k&client_secret=s&password=p&sig=z&sv=2020#top",
            "https://h/v?token=***&api_key=***&client_secret=***&password=***&sig=***&sv=2020#top",
        ),
        (
            'Could not connect to the endpoint URL: "http://a:b@127.0.0.1:1/?AWSAccessKeyId=A"',
            'Could not connect to the endpoint URL: "http://***@127.0.0.1:1/?AWSAccessKeyId=***"',
        ),
        # urllib3 quotes the path and query without the URL
        ("Max retries exceeded with url: /vol?token=abc/info (Caused", "url: /vol?token=***"),
    ],
)
def test_credentials_become_stars(text, expected):
    assert expected in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "http://host:8080/a@b",  # a port, then an @ in the path: no user information
        "gs://bucket/a:b@c",
        "file:///tmp/vol?x=1",
        "s3://bucket/img?mip=2&version=3",
        "no URL here, a == b and x=3",
        "sqs://queue: 2 tasks done",
    ],
)
def test_what_holds_no_credential_is_left_as_it_is(text):
    assert redact(text) == text


def test_redact_url_is_the_same_rule_for_one_url():
    assert redact_url("s3://k:v@bucket/x?X-Amz-Security-Token=t&a=1") == (
        "s3://***@bucket/x?X-Amz-Security-Token=***&a=1"
    )


def test_error_messages_are_redacted_where_they_are_made():
    """Whatever shows them later (the error line, a task log, a dead letter) has no secret."""
    url = "http://user:secret@127.0.0.1:1/v?X-Amz-Signature=f00d"
    for error in (ChunkflowError(f"{url}: unreachable"), OperatorError(f"save: {url}")):
        assert "secret" not in str(error) and "f00d" not in str(error)
        assert "http://***@127.0.0.1:1/v?X-Amz-Signature=***" in str(error)
