"""A tenant's Alpaca credentials as the code holds them, in clear: API keys or an OAuth token.

:class:`AlpacaKeys` (key id, secret, base URL; parsed from a client's plaintext
``secrets/alpaca`` write by :func:`parse_plaintext`) or :class:`OAuthToken` (an Alpaca Connect
access token and base URL, from ``connect_alpaca``). Their shape is validated here; the base
URL's host is checked where a client is built (:mod:`agenttrader.alpaca`). Neither ``repr``
nor any error message shows a secret value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agenttrader.errors import InvalidKeys, MissingKeys

AuthKind = Literal["keys", "oauth"]
"""How Alpaca is called: ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers, or
``Authorization: Bearer``; the sealed form's ``auth`` field."""

_KEY_ID = re.compile(r"^[A-Za-z0-9_\-]{8,128}$")
_SECRET = re.compile(r"^[\x21-\x7e]{8,256}$")
"""Printable ASCII without spaces: anything else could not travel in an HTTP header."""
_TOKEN = re.compile(r"^[\x21-\x7e]{8,4096}$")
"""Printable ASCII without spaces: it travels in an ``Authorization`` header."""


@dataclass(frozen=True)
class AlpacaKeys:
    """One tenant's Alpaca API keys. ``repr`` never shows the key values."""

    key_id: str = field(repr=False)
    secret_key: str = field(repr=False)
    base_url: str

    @classmethod
    def from_document(cls, data: Mapping[str, Any] | None) -> AlpacaKeys:
        """Validate the shape of a ``secrets/alpaca`` document (not yet the base URL's host)."""
        if not data:
            raise MissingKeys("no Alpaca keys stored")
        key_id, secret, base_url = data.get("key_id"), data.get("secret_key"), data.get("base_url")
        if key_id is None or secret is None:
            raise MissingKeys("Alpaca keys are incomplete: key_id and secret_key are required")
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise InvalidKeys("key_id must be 8-128 characters of letters, digits, '-' or '_'")
        if not isinstance(secret, str) or not _SECRET.fullmatch(secret):
            raise InvalidKeys("secret_key must be 8-256 printable characters without spaces")
        if not isinstance(base_url, str) or not base_url:
            raise InvalidKeys("base_url must be a non-empty string")
        return cls(key_id=key_id, secret_key=secret, base_url=base_url)

    @property
    def key_id_hint(self) -> str:
        """The last 4 characters of the key id: enough to tell keys apart in an audit entry."""
        return f"…{self.key_id[-4:]}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values to redact from anything logged while these keys are in use."""
        return (self.key_id, self.secret_key)


@dataclass(frozen=True)
class OAuthToken:
    """An Alpaca OAuth (Connect) access token for one tenant's account."""

    access_token: str = field(repr=False)
    base_url: str

    def __post_init__(self) -> None:
        if not isinstance(self.access_token, str) or not _TOKEN.fullmatch(self.access_token):
            raise InvalidKeys("access_token must be 8-4096 printable characters without spaces")
        if not isinstance(self.base_url, str) or not self.base_url:
            raise InvalidKeys("base_url must be a non-empty string")

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values to redact from anything logged while this token is in use."""
        return (self.access_token,)

    @classmethod
    def from_document(cls, data: Mapping[str, Any] | None) -> OAuthToken:
        """From ``{access_token, base_url}`` (``MissingKeys`` / ``InvalidKeys`` otherwise)."""
        if not data or data.get("access_token") is None:
            raise MissingKeys("no Alpaca OAuth token stored")
        token, base_url = data.get("access_token"), data.get("base_url")
        if not isinstance(token, str) or not isinstance(base_url, str):
            raise InvalidKeys("access_token and base_url must be strings")
        return cls(access_token=token, base_url=base_url)


Credentials = AlpacaKeys | OAuthToken
"""One tenant's credentials, whichever way they authenticate."""


def parse_plaintext(data: Mapping[str, Any] | None) -> AlpacaKeys:
    """Keys from a client's plaintext ``secrets/alpaca`` write (``MissingKeys`` /
    ``InvalidKeys`` when their shape is wrong; the base URL's host is checked later)."""
    return AlpacaKeys.from_document(data)


def auth_of(credentials: Credentials) -> AuthKind:
    return "oauth" if isinstance(credentials, OAuthToken) else "keys"


def hint_of(credentials: Credentials) -> str:
    """The last 4 characters of the key id (or token): enough to tell credentials apart."""
    value = credentials.access_token if isinstance(credentials, OAuthToken) else credentials.key_id
    return value[-4:]
