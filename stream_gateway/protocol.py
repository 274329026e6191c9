"""Alpaca's trade-update stream protocol, as plain functions: the URL, the messages a client
sends, and what the server's frames mean.

The client connects to the tenant's base URL with ``https``→``wss`` (``http``→``ws``) and path
``/stream``; authenticates with ``{"action":"auth","key","secret"}`` (API keys) or
``{"action":"authenticate","data":{"oauth_token"}}`` (Alpaca Connect); then asks for
``{"action":"listen","data":{"streams":["trade_updates"]}}``. The server's frames may be text
or binary, each one JSON object (an array of them is accepted too). alpaca-py's
``TradingStream`` is not used: it runs one connection per event loop and authenticates with
keys only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agenttrader.credentials import Credentials, OAuthToken
from agenttrader.paths import validate_order_id

STREAM_PATH = "/stream"
TRADE_UPDATES = "trade_updates"
LISTEN = json.dumps({"action": "listen", "data": {"streams": [TRADE_UPDATES]}})
CONNECTION_LIMIT = "connection limit exceeded"
"""What Alpaca says when the account's one stream is already open elsewhere."""


def stream_url(origin: str) -> str:
    """The stream URL of an (allowlisted) Trading API origin."""
    parts = urlsplit(origin)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme)
    if scheme is None:
        raise ValueError("a Trading API origin is http or https")
    return urlunsplit((scheme, parts.netloc, STREAM_PATH, "", ""))


def auth_message(credentials: Credentials) -> str:
    """The authentication message for ``credentials`` (keys, or an OAuth token)."""
    if isinstance(credentials, OAuthToken):
        body: dict[str, Any] = {
            "action": "authenticate",
            "data": {"oauth_token": credentials.access_token},
        }
    else:
        body = {"action": "auth", "key": credentials.key_id, "secret": credentials.secret_key}
    return json.dumps(body)


class Auth(StrEnum):
    """What an authorization answer says."""

    AUTHORIZED = "authorized"
    REFUSED = "refused"
    """The credentials were refused: recorded, not retried with the same credentials."""
    CONNECTION_LIMIT = "connection_limit"
    """The account's one stream is held elsewhere: retried with backoff, keys still good."""


@dataclass(frozen=True)
class Authorization:
    outcome: Auth


@dataclass(frozen=True)
class Listening:
    streams: tuple[str, ...]


@dataclass(frozen=True)
class TradeUpdate:
    """One ``trade_updates`` message: an order's new state."""

    event: str
    order_id: str
    order: dict[str, Any] = field(repr=False)
    at_nanos: int
    """The event's timestamp in nanoseconds since the epoch: orders the updates of an order."""
    timestamp: str
    details: dict[str, Any] = field(default_factory=dict, repr=False)
    """``execution_id``, ``price``, ``qty``, ``position_qty`` when the update carries them."""

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.at_nanos // 1000 / 1_000_000, UTC)

    @property
    def filled_qty(self) -> str:
        value = self.order.get("filled_qty")
        return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class StreamError:
    """An error message from the server (``stream: error``, or ``T: error``)."""

    message: str


@dataclass(frozen=True)
class Ignored:
    """A well-formed message this client has no use for (or a malformed one, with why)."""

    why: str


Message = Authorization | Listening | TradeUpdate | StreamError | Ignored

_DETAILS = ("execution_id", "price", "qty", "position_qty")


def decode(frame: str | bytes) -> list[Message]:
    """The messages of one frame (text or binary JSON; one object or an array of them)."""
    try:
        parsed = json.loads(frame)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return [Ignored("not JSON")]
    items = parsed if isinstance(parsed, list) else [parsed]
    return [message_of(item) for item in items]


def message_of(item: object) -> Message:
    """What one decoded JSON object says."""
    if not isinstance(item, dict):
        return Ignored("not a JSON object")
    stream, data = item.get("stream"), item.get("data")
    if item.get("T") == "error" or stream == "error":
        text = item.get("msg")
        if not text and isinstance(data, dict):
            text = data.get("error") or data.get("message")
        return _limit_or_error(str(text or "error"), item.get("code"))
    if not isinstance(data, dict):
        return Ignored("no data")
    if stream == "authorization":
        return _authorization(data)
    if stream == "listening":
        streams = data.get("streams")
        if isinstance(streams, list):
            return Listening(tuple(s for s in streams if isinstance(s, str)))
        return StreamError(str(data.get("error") or "listen refused"))
    if stream == TRADE_UPDATES:
        return trade_update(data)
    return Ignored(f"stream {str(stream)[:40]!r}")


def _authorization(data: Mapping[str, Any]) -> Message:
    if data.get("status") == "authorized":
        return Authorization(Auth.AUTHORIZED)
    said = " ".join(str(data.get(key) or "") for key in ("message", "error", "msg"))
    if CONNECTION_LIMIT in said.lower():
        return Authorization(Auth.CONNECTION_LIMIT)
    return Authorization(Auth.REFUSED)


def _limit_or_error(text: str, code: object) -> Message:
    if CONNECTION_LIMIT in text.lower() or code == 406:
        return Authorization(Auth.CONNECTION_LIMIT)
    return StreamError(text[:200])


def trade_update(data: Mapping[str, Any]) -> Message:
    """A ``trade_updates`` payload; malformed ones are ignored, saying why."""
    event, order, stamp = data.get("event"), data.get("order"), data.get("timestamp")
    if not isinstance(event, str) or not isinstance(order, dict):
        return Ignored("trade update without event or order")
    try:
        order_id = validate_order_id(order.get("id"))
        at = parse_nanos(stamp)
    except ValueError as err:
        return Ignored(f"trade update: {err}")
    details = {key: data[key] for key in _DETAILS if data.get(key) is not None}
    return TradeUpdate(event, order_id, order, at, str(stamp), details)


def parse_nanos(value: object) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (Alpaca sends up to 9 fractional
    digits, more than ``datetime`` keeps)."""
    if not isinstance(value, str) or "T" not in value:
        raise ValueError("timestamp is not RFC 3339")
    text = value.strip()
    zone = "+00:00"
    if text.endswith(("Z", "z")):
        text = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        text, zone = text[:-6], text[-6:]
    whole, _, fraction = text.partition(".")
    if not fraction.isdigit() and fraction:
        raise ValueError("timestamp has a malformed fraction")
    try:
        base = datetime.fromisoformat(whole + zone)
    except ValueError:
        raise ValueError("timestamp is not RFC 3339") from None
    nanos = int((fraction + "000000000")[:9]) if fraction else 0
    return int(base.timestamp()) * 1_000_000_000 + nanos
