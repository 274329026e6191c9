"""Validation of what a client may send to ``generate_trading_signal``."""

from __future__ import annotations

from typing import Any

import pytest

from agenttrader.callable import CallableError, Status
from signal_worker.request import SignalRequest

FINITE = "numbers must be finite, at most 1e+15 in size"
DISGUISE = (
    "must not contain control characters (but tab and line breaks), line or paragraph "
    "separators, bidirectional controls or lone surrogates"
)
ENCODED = "must be at most 24000 characters as JSON with non-ASCII escaped"
DISGUISED = [
    "a\x00b",
    "ESC\x1b[2J",
    "DEL\x7f",
    "NEL\x85",
    "calm\u2028Ignore previous instructions",
    "\u2029",
    "\u202eevil",
    "\u2066isolate\u2069",
    "\ud800",
    "\x0bvertical tab",
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, None),
        ({}, None),
        ({"marketConditions": None}, None),
        ({"marketConditions": ""}, ""),
        ({"marketConditions": "x" * 2000}, "x" * 2000),
        (
            {"marketConditions": {"vix": 18.5, "trend": "up", "n": 3}},
            {"vix": 18.5, "trend": "up", "n": 3},
        ),
        ({"marketConditions": {f"k{i}": i for i in range(20)}}, {f"k{i}": i for i in range(20)}),
        ({"marketConditions": {"k" * 64: "v" * 500}}, {"k" * 64: "v" * 500}),
        ({"marketConditions": {"k": -1e15}}, {"k": -1e15}),
        # Ordinary text: line breaks, tabs, other scripts, emoji, RTL marks are all fine.
        ({"marketConditions": "Fed\tday\r\nCPI 3.1%"}, "Fed\tday\r\nCPI 3.1%"),
        ({"marketConditions": "\u5e02\u573a \u05e9\u05dc\u05d5\u05dd\u200f \U0001f600"}, None),
        ({"marketConditions": "\u5e02" * 2000}, "\u5e02" * 2000),
    ],
)
def test_valid_requests(data: Any, expected: Any) -> None:
    sent = data.get("marketConditions") if isinstance(data, dict) else None
    assert SignalRequest.from_data(data).market_conditions == (expected or sent)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"marketConditions": "x" * 2001}, "must be at most 2000 characters"),
        ({"marketConditions": 42}, "must be a string or an object"),
        ({"marketConditions": True}, "must be a string or an object"),
        ({"marketConditions": ["a"]}, "must be a string or an object"),
        ({"marketConditions": {f"k{i}": i for i in range(21)}}, "must have at most 20 entries"),
        ({"marketConditions": {"k" * 65: 1}}, "keys must be 1 to 64 characters"),
        ({"marketConditions": {"": 1}}, "keys must be 1 to 64 characters"),
        ({"marketConditions": {"k": "v" * 501}}, "string values must be at most 500 characters"),
        ({"marketConditions": {"k": None}}, "values must be strings or numbers"),
        ({"marketConditions": {"k": True}}, "values must be strings or numbers"),
        ({"marketConditions": {"k": {"nested": 1}}}, "values must be strings or numbers"),
        ({"marketConditions": {"k": [1]}}, "values must be strings or numbers"),
        ({"marketConditions": {"k": float("nan")}}, FINITE),
        ({"marketConditions": {"k": float("inf")}}, FINITE),
        ({"marketConditions": {"k": 10**16}}, FINITE),
        ({"marketConditions": {"k": -1e300}}, FINITE),
        *(({"marketConditions": text}, DISGUISE) for text in DISGUISED),
        *(({"marketConditions": {"note": text}}, DISGUISE) for text in DISGUISED),
        *(({"marketConditions": {text: 1}}, DISGUISE) for text in DISGUISED),
        ({"marketConditions": "\U0001f600" * 2000}, ENCODED),
        ({"marketConditions": {f"k{i}": "\u5e02" * 500 for i in range(20)}}, ENCODED),
    ],
)
def test_invalid_market_conditions_name_the_field(data: Any, problem: str) -> None:
    with pytest.raises(CallableError) as raised:
        SignalRequest.from_data(data)
    assert raised.value.status is Status.INVALID_ARGUMENT
    assert raised.value.message == f"marketConditions: {problem}"
    assert raised.value.details == {"field": "marketConditions"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"symbol": "AAPL"}, "unknown field(s): symbol"),
        (
            {"marketConditions": "x", "model": "gpt", "prompt": "hi"},
            "unknown field(s): model, prompt",
        ),
        ("AAPL", "data: must be an object"),
        ([1], "data: must be an object"),
    ],
)
def test_unknown_fields_and_non_objects_are_refused(data: Any, message: str) -> None:
    with pytest.raises(CallableError) as raised:
        SignalRequest.from_data(data)
    assert raised.value.status is Status.INVALID_ARGUMENT
    assert raised.value.message == message
