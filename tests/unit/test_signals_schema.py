"""The strict parser of a provider's answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signal_worker.schema import (
    MAX_RATIONALE_CHARS,
    MAX_RISKS,
    RESPONSE_SCHEMA,
    Action,
    InvalidSignal,
    TradingSignal,
)

NOT_A_TICKER = "symbol must be empty or a ticker (1-15 of A-Z, 0-9, '.', '/')"
VALID = {
    "action": "BUY",
    "symbol": "aapl ",
    "confidence": 0.7,
    "rationale": " Up. ",
    "risks": ["r"],
}


def test_a_valid_answer_is_normalised() -> None:
    signal = TradingSignal.from_json(json.dumps(VALID))
    assert signal == TradingSignal(Action.BUY, "AAPL", 0.7, "Up.", ("r",))
    assert signal.to_dict() == {
        "action": "BUY",
        "symbol": "AAPL",
        "confidence": 0.7,
        "rationale": "Up.",
        "risks": ["r"],
    }


@pytest.mark.parametrize("symbol", ["BRK.B", "btc/usd", " spy ", "A" * 15, "", "  "])
def test_tickers_are_accepted(symbol: str) -> None:
    signal = TradingSignal.from_json(json.dumps({**VALID, "symbol": symbol}))
    assert signal.symbol == symbol.strip().upper()


def test_lenient_where_harmless() -> None:
    signal = TradingSignal.from_json(
        json.dumps(
            {
                "action": "hold",
                "symbol": None,
                "confidence": 1,
                "rationale": "x" * (MAX_RATIONALE_CHARS + 50),
                "risks": [" ", *[f"r{i}" for i in range(MAX_RISKS + 5)]],
            }
        )
    )
    assert signal.action is Action.HOLD
    assert signal.symbol == ""
    assert len(signal.rationale) == MAX_RATIONALE_CHARS
    assert len(signal.risks) <= MAX_RISKS


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "empty response"),
        ("", "empty response"),
        ("BUY AAPL", "response is not JSON"),
        ("[1]", "response is not a JSON object"),
        (json.dumps({**VALID, "action": "SHORT"}), "action must be BUY, SELL or HOLD"),
        (json.dumps({**VALID, "symbol": 5}), "symbol must be a string"),
        *(
            (json.dumps({**VALID, "symbol": symbol}), NOT_A_TICKER)
            for symbol in ('AAPL"}]', "A" * 16, "BUY TSLA", "TS\nLA", "\u0391APL", "X\u2028")
        ),
        (json.dumps({**VALID, "confidence": 1.5}), "confidence must be a number from 0 to 1"),
        (json.dumps({**VALID, "confidence": -0.1}), "confidence must be a number from 0 to 1"),
        (json.dumps({**VALID, "confidence": "0.5"}), "confidence must be a number from 0 to 1"),
        (json.dumps({**VALID, "confidence": True}), "confidence must be a number from 0 to 1"),
        ('{"action": "BUY", "confidence": NaN}', "confidence must be a number from 0 to 1"),
        (json.dumps({**VALID, "rationale": ""}), "rationale must be a non-empty string"),
        (json.dumps({**VALID, "risks": "none"}), "risks must be a list of strings"),
        (json.dumps({**VALID, "risks": [1]}), "risks must be a list of strings"),
    ],
)
def test_invalid_answers_are_refused(text: Any, reason: str) -> None:
    with pytest.raises(InvalidSignal) as raised:
        TradingSignal.from_json(text)
    assert str(raised.value) == reason


def test_the_schema_requires_every_field() -> None:
    assert set(RESPONSE_SCHEMA["required"]) == set(RESPONSE_SCHEMA["properties"])
    assert RESPONSE_SCHEMA["properties"]["action"]["enum"] == ["BUY", "SELL", "HOLD"]
