"""A tenant's Alpaca credentials as the code holds them, in clear: API keys or an OAuth token.

:class:`~agenttrader.alpaca.AlpacaKeys` (key id, secret, base URL; parsed from a client's
plaintext ``secrets/alpaca`` write by :func:`parse_plaintext`) or :class:`OAuthToken` (an
Alpaca Connect access token and base URL, from ``connect_alpaca``). Neither ``repr`` nor any
error message shows a secret value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agenttrader.alpaca import AlpacaKeys
from agenttrader.errors import InvalidKeys, MissingKeys

AuthKind = Literal["keys", "oauth"]
"""How Alpaca is called: ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers, or
``Authorization: Bearer``; the sealed form's ``auth`` field."""

_TOKEN = re.compile(r"^[\x21-\x7e]{8,4096}$")
"""Printable ASCII without spaces: it travels in an ``Authorization`` header."""


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
