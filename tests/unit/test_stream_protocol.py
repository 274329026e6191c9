"""Alpaca's trade-update stream protocol as the gateway speaks it
(:mod:`stream_gateway.protocol`)."""

from __future__ import annotations

import json

import pytest

from agenttrader.credentials import AlpacaKeys, OAuthToken
from stream_gateway.protocol import (
    LISTEN,
    Auth,
    Authorization,
    Ignored,
    Listening,
    StreamError,
    TradeUpdate,
    auth_message,
    decode,
    parse_nanos,
    stream_url,
)

ORDER_ID = "61e69015-8549-4bfd-b9c3-01e75843f47d"


@pytest.mark.parametrize(
    ("origin", "url"),
    [
        ("https://paper-api.alpaca.markets", "wss://paper-api.alpaca.markets/stream"),
        ("https://api.alpaca.markets", "wss://api.alpaca.markets/stream"),
        ("http://127.0.0.1:8765", "ws://127.0.0.1:8765/stream"),
        ("https://broker.example:8443/v2", "wss://broker.example:8443/stream"),
    ],
)
def test_the_stream_url_is_the_origin_with_a_websocket_scheme(origin: str, url: str) -> None:
    assert stream_url(origin) == url


def test_an_origin_that_is_not_http_has_no_stream() -> None:
    with pytest.raises(ValueError, match="http or https"):
        stream_url("ftp://example.com")


def test_keys_authenticate_with_the_auth_action() -> None:
    keys = AlpacaKeys(
        "PKTEST00000000000001", "s3cr3t-value-0001", "https://paper-api.alpaca.markets"
    )
    assert json.loads(auth_message(keys)) == {
        "action": "auth",
        "key": "PKTEST00000000000001",
        "secret": "s3cr3t-value-0001",
    }


def test_an_oauth_token_authenticates_with_the_authenticate_action() -> None:
    token = OAuthToken("oauth-token-0001", "https://api.alpaca.markets")
    assert json.loads(auth_message(token)) == {
        "action": "authenticate",
        "data": {"oauth_token": "oauth-token-0001"},
    }


def test_listen_asks_for_trade_updates() -> None:
    assert json.loads(LISTEN) == {"action": "listen", "data": {"streams": ["trade_updates"]}}


def _frame(body: object, binary: bool) -> str | bytes:
    text = json.dumps(body)
    return text.encode() if binary else text


ANSWERS = [
    (
        {"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}},
        Authorization(Auth.AUTHORIZED),
    ),
    (
        {"stream": "authorization", "data": {"action": "authenticate", "status": "unauthorized"}},
        Authorization(Auth.REFUSED),
    ),
    (
        {
            "stream": "authorization",
            "data": {"status": "unauthorized", "message": "connection limit exceeded"},
        },
        Authorization(Auth.CONNECTION_LIMIT),
    ),
    (
        {
            "stream": "authorization",
            "data": {"status": "unauthorized", "error": "Connection Limit Exceeded"},
        },
        Authorization(Auth.CONNECTION_LIMIT),
    ),
    (
        {"T": "error", "code": 406, "msg": "connection limit exceeded"},
        Authorization(Auth.CONNECTION_LIMIT),
    ),
    ({"T": "error", "code": 406}, Authorization(Auth.CONNECTION_LIMIT)),
    ({"stream": "error", "data": {"error": "invalid action"}}, StreamError("invalid action")),
    (
        {"stream": "listening", "data": {"streams": ["trade_updates"]}},
        Listening(("trade_updates",)),
    ),
    ({"stream": "listening", "data": {"streams": []}}, Listening(())),
    (
        {"stream": "listening", "data": {"error": "not authenticated"}},
        StreamError("not authenticated"),
    ),
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize(("body", "message"), ANSWERS)
def test_what_the_server_says_in_text_or_binary_frames(
    body: object, message: object, binary: bool
) -> None:
    assert decode(_frame(body, binary)) == [message]


def _update(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "event": "partial_fill",
        "execution_id": "e1",
        "order": {"id": ORDER_ID, "status": "partially_filled", "filled_qty": "3"},
        "position_qty": "3",
        "price": "190.12",
        "qty": "3",
        "timestamp": "2026-11-27T15:04:05.123456789Z",
    }
    data.update(changes)
    return {"stream": "trade_updates", "data": data}


def test_a_trade_update_keeps_the_order_and_its_nanosecond_timestamp() -> None:
    [update] = decode(json.dumps(_update()).encode())
    assert isinstance(update, TradeUpdate)
    assert update.event == "partial_fill"
    assert update.order_id == ORDER_ID
    assert update.filled_qty == "3"
    assert update.at_nanos % 1_000_000_000 == 123_456_789
    assert update.details == {
        "execution_id": "e1",
        "price": "190.12",
        "qty": "3",
        "position_qty": "3",
    }
    assert update.at.microsecond == 123_456


def test_an_array_frame_holds_several_messages() -> None:
    messages = decode(json.dumps([_update(), _update(event="fill")]))
    assert [m.event for m in messages if isinstance(m, TradeUpdate)] == ["partial_fill", "fill"]


@pytest.mark.parametrize(
    "body",
    [
        _update(order={"status": "new"}),
        _update(order={"id": "../other-tenant/orders/x"}),
        _update(order={"id": "__reserved__"}),
        _update(timestamp="yesterday"),
        _update(timestamp=None),
        _update(event=None),
        {"stream": "trade_updates", "data": "not an object"},
        {"stream": "something_else", "data": {}},
        ["not", "objects"],
    ],
)
def test_malformed_or_foreign_messages_are_ignored(body: object) -> None:
    assert all(isinstance(m, Ignored) for m in decode(json.dumps(body)))


def test_a_frame_that_is_not_json_is_ignored() -> None:
    assert decode(b"\xff\xfe") == [Ignored("not JSON")]


@pytest.mark.parametrize(
    ("stamp", "nanos"),
    [
        ("1970-01-01T00:00:01.000000001Z", 1_000_000_001),
        ("1970-01-01T00:00:01.5Z", 1_500_000_000),
        ("1970-01-01T00:00:01Z", 1_000_000_000),
        ("1970-01-01T01:00:01.25+01:00", 1_250_000_000),
        ("1969-12-31T19:00:02.000000003-05:00", 2_000_000_003),
        ("1970-01-01T00:00:01.1234567891Z", 1_123_456_789),
    ],
)
def test_timestamps_keep_their_nanoseconds(stamp: str, nanos: int) -> None:
    assert parse_nanos(stamp) == nanos


@pytest.mark.parametrize(
    "stamp", ["", "2026-11-27", "2026-11-27T25:00:00Z", "2026-11-27T10:00:00.12a4Z", 5]
)
def test_malformed_timestamps_are_refused(stamp: object) -> None:
    with pytest.raises(ValueError):
        parse_nanos(stamp)
