"""The Alpaca base-URL allowlist: the only gate between a user-written ``base_url`` and the
network (server-side request forgery guard).

A base URL is reduced to its origin (scheme, host, port) and must equal an allowed origin
exactly: look-alike hosts, ``http://`` downgrades, userinfo tricks, other ports, queries,
fragments and any path but ``/`` or ``/v2`` are refused. Error messages never echo the URL:
a user might have pasted a key into it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from agenttrader.errors import DisallowedBaseUrl

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE = re.compile(r"[\s\\\x00-\x1f\x7f]")
_HOST = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?$|^\[[0-9a-f:.]+\]$"
)


def origin_of(url: object) -> str:
    """``scheme://host[:port]`` of a well-formed base URL, or ``DisallowedBaseUrl``."""
    if not isinstance(url, str) or not url:
        raise DisallowedBaseUrl("base_url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH or _UNSAFE.search(url):
        raise DisallowedBaseUrl("base_url contains whitespace, control characters or is too long")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DisallowedBaseUrl("base_url is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise DisallowedBaseUrl("base_url must use https:// (or http:// for an allowed local URL)")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise DisallowedBaseUrl("base_url must not contain user information")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise DisallowedBaseUrl("base_url must not have a query or fragment")
    if parts.path.rstrip("/") not in ("", "/v2"):
        raise DisallowedBaseUrl("base_url must not have a path other than /v2")
    host = (parts.hostname or "").lower()
    if not host or not _HOST.fullmatch(host if ":" not in host else f"[{host}]"):
        raise DisallowedBaseUrl("base_url has no valid host")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}"


def check_base_url(url: object, allowed: Iterable[str]) -> str:
    """Return the normalised origin of ``url`` if it is allowed, else ``DisallowedBaseUrl``.

    The origin is what the Alpaca client is given, so the request goes exactly where the
    allowlist said, whatever else the stored string contained.
    """
    origin = origin_of(url)
    if origin not in {origin_of(entry) for entry in allowed}:
        host = urlsplit(origin).hostname or ""
        raise DisallowedBaseUrl(f"base_url host {host[:64]!r} is not an allowed Alpaca endpoint")
    return origin
