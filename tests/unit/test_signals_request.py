"""Validation of what a client may send to ``generate_trading_signal``."""

from __future__ import annotations

from typing import Any

import pytest

from agenttrader.callable import CallableError, Status
from signal_worker.request import SignalRequest


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
    ],
)
def test_valid_requests(data: Any, expected: Any) -> None:
    assert SignalRequest.from_data(data).market_conditions == expected


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
        ({"marketConditions": {"k": float("nan")}}, "numbers must be finite"),
        ({"marketConditions": {"k": float("inf")}}, "numbers must be finite"),
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
