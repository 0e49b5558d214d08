"""Credentials out of what we print: the secrets of URLs in error messages and logs.

A URL can carry credentials: a user and password (`http://user:secret@host`) or a signed or
keyed query (`?X-Amz-Signature=...&X-Amz-Credential=...`, `?token=...`). `redact` replaces
them by `***` in every URL of a text. It is applied where text leaves the program: every
`ChunkflowError` and operator error message (so also task logs and dead letters), the command
line's error line and traceback, and the log formatter (stderr and --log-file).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["REDACTED", "redact", "redact_url"]

REDACTED = "***"

# scheme://... up to whitespace, a quote or a bracket that ends it in prose and reprs
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>`\\]+")

# query parameters that hold a credential: signatures, credentials, tokens, keys, secrets,
# passwords (X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, X-Goog-Signature,
# AWSAccessKeyId, access_token, api_key, client_secret, password, Azure's sig, ...)
_SECRET_NAME = re.compile(r"signature|credential|token|key|secret|passw|pwd|auth|^sig$", re.I)

# name=value after ? or &, in a URL or in a message that quotes only its path and query
_QUERY_PARAMETER = re.compile(r"(?<=[?&])([^=&?#\s\"'<>`\\]+)=([^&#\s\"'<>`\\]*)")

# user:password@ where the password holds an unquoted / ? or # (not a URL, but typed so)
_LOOSE_USERINFO = re.compile(r"[^/?#@:\s]*:([^/?#@\s]*)[/?#][^@\s]*@")


def _first(text: str, characters: str, start: int = 0) -> int:
    """Index of the first of `characters` in `text` from `start`, or len(text)."""
    found = [i for i in (text.find(c, start) for c in characters) if i >= 0]
    return min(found, default=len(text))


def _authority_end(rest: str) -> int:
    """Where the authority (user information, host, port) of `rest`, a URL after `://`, ends."""
    end = _first(rest, "/?#")
    if "@" in rest[:end]:
        return end
    loose = _LOOSE_USERINFO.match(rest)
    if loose is None or loose.group(1).isdigit():  # digits: host:port/path@... is no password
        return end
    return _first(rest, "/?#", loose.end())


def redact_url(url: str) -> str:
    """`url` with its user information and credential query values replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = _authority_end(rest)
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = REDACTED + authority[authority.rindex("@") :]
    return f"{scheme}://{authority}{_QUERY_PARAMETER.sub(_redact_parameter, tail)}"


def _redact_parameter(match: re.Match) -> str:
    name = match.group(1)
    return f"{name}={REDACTED}" if _SECRET_NAME.search(unquote(name)) else match.group(0)


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***` (see `redact_url`),
    and of every query it quotes without its URL (`url: /vol?token=...`, as urllib3 says)."""
    if "://" in text:
        text = _URL.sub(lambda match: redact_url(match.group(0)), text)
    if "=" in text:
        text = _QUERY_PARAMETER.sub(_redact_parameter, text)
    return text
