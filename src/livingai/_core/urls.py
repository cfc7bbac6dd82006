"""Passwords out of URLs: for every repr, log line and error that names a store (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)")
MIN_SECRET_CHARS = 4  # shorter secrets would mangle unrelated words of a message; the URL
# itself is masked wherever it appears, whatever its password


def _split(url: str) -> tuple[str, str, str] | None:
    """(scheme, netloc, the rest) of a URL as written, or None when it is not one."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    return scheme, rest[:end], rest[end:]


def mask_url(url: str) -> str:
    """`url` with its password (user info or `?password=`) replaced by ***; the rest of the
    text is kept exactly as written."""
    parts = _split(url)
    if parts is None:
        return url
    scheme, netloc, rest = parts
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    return f"{scheme}://{netloc}" + _QUERY_PASSWORD.sub(r"\1***", rest)


def url_secrets(url: str) -> list[str]:
    """The passwords a URL carries, as written and percent-decoded."""
    parts = _split(url)
    if parts is None:
        return []
    _, netloc, rest = parts
    found = [match.group(2) for match in _QUERY_PASSWORD.finditer(rest)]
    userinfo, at, _ = netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    return found


def redact(message: str, original: str, masked: str, secrets: Iterable[str]) -> str:
    """`message` with `original` (a URL or DSN) replaced by `masked`, and each secret (as
    given and percent-decoded) removed wherever else it appears."""
    message = message.replace(original, masked)
    every = {s for secret in secrets for s in (secret, unquote(secret))}
    for secret in sorted(every, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_CHARS:
            message = message.replace(secret, "***")
    return message


def scrub_url(message: str, url: str) -> str:
    """`message` with no trace of the passwords `url` (a store URL, tiered ones too)
    carries: for whatever prints a message that may name a store."""
    for part in url.removeprefix("tiered:").split("|"):
        message = redact(message, part, mask_url(part), url_secrets(part))
    return message
