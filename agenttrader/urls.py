"""The Alpaca base-URL allowlist: the only gate between a user-written ``base_url`` and the
network (server-side request forgery guard).

A base URL is reduced to its origin (scheme, host, port) and must equal an allowed origin
exactly: look-alike hosts, ``http://`` downgrades, userinfo tricks, other ports, queries,
fragments and any path but ``/`` or ``/v2`` are refused. A refusal names the rule that
failed (``base URL refused: host is not on the allowlist``), never the URL or any part of it:
a user might have pasted a key into it, and a host is lower-cased on the way, so redaction
could not recognise a key id in it either. :func:`allowed_host` is the one way to learn a host,
and only an allowlisted one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from agenttrader.errors import DisallowedBaseUrl

MAX_URL_LENGTH = 2048
REFUSED = "base URL refused"
"""Every refusal's message starts so, followed by the rule that failed."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE = re.compile(r"[\s\\\x00-\x1f\x7f]")
_HOST = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?$|^\[[0-9a-f:.]+\]$"
)


def origin_of(url: object) -> str:
    """``scheme://host[:port]`` of a well-formed base URL, or ``DisallowedBaseUrl``."""
    if not isinstance(url, str) or not url:
        raise DisallowedBaseUrl(f"{REFUSED}: must be a non-empty string")
    if len(url) > MAX_URL_LENGTH or _UNSAFE.search(url):
        raise DisallowedBaseUrl(
            f"{REFUSED}: whitespace, control characters or too long (over {MAX_URL_LENGTH})"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DisallowedBaseUrl(f"{REFUSED}: not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise DisallowedBaseUrl(
            f"{REFUSED}: scheme must be https (http only for an allowed local URL)"
        )
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise DisallowedBaseUrl(f"{REFUSED}: userinfo not allowed")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise DisallowedBaseUrl(f"{REFUSED}: query or fragment not allowed")
    if parts.path.rstrip("/") not in ("", "/v2"):
        raise DisallowedBaseUrl(f"{REFUSED}: path must be empty, / or /v2")
    host = (parts.hostname or "").lower()
    if not host or not _HOST.fullmatch(host if ":" not in host else f"[{host}]"):
        raise DisallowedBaseUrl(f"{REFUSED}: host is not a valid host name")
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
        raise DisallowedBaseUrl(f"{REFUSED}: host is not on the allowlist")
    return origin


def allowed_host(url: object, allowed: Iterable[str]) -> str | None:
    """The host ``url`` calls when it passes the allowlist (an operator-chosen name, safe to
    record), else ``None``: a refused URL's host is never recorded anywhere."""
    try:
        return urlsplit(check_base_url(url, allowed)).hostname
    except DisallowedBaseUrl:
        return None
