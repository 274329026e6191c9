"""The local heuristic provider: each rule, determinism and its label."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signal_worker.heuristic import MODEL, NOTICE, PROVIDER, HeuristicProvider, decide
from signal_worker.model import SignalInput
from signal_worker.portfolio import Portfolio
from signal_worker.schema import TradingSignal


def portfolio(cash: str, equity: str, *positions: tuple[str, str, str]) -> Portfolio:
    return Portfolio.from_snapshot(
        {
            "cash": cash,
            "equity": equity,
            "positions": [
                {"symbol": s, "qty": "1", "market_value": mv, "unrealized_pl": pl}
                for s, mv, pl in positions
            ],
        }
    )


@pytest.mark.parametrize(
    ("case", "action", "symbol"),
    [
        (portfolio("1000", "10000", ("BIG", "5000", "100"), ("SMALL", "2000", "0")), "SELL", "BIG"),
        (
            portfolio("6000", "10000", ("A", "2000", "10"), ("LOSER", "2000", "-800")),
            "SELL",
            "LOSER",
        ),
        (portfolio("6000", "10000", ("A", "2000", "100"), ("B", "2000", "300")), "BUY", "B"),
        (portfolio("2000", "10000", ("A", "2000", "0"), ("B", "2000", "-10")), "HOLD", "A"),
        (portfolio("10000", "10000"), "HOLD", ""),
        (portfolio("", ""), "HOLD", ""),
    ],
)
def test_rules(case: Portfolio, action: str, symbol: str) -> None:
    signal: dict[str, Any] = decide(case)
    assert (signal["action"], signal["symbol"]) == (action, symbol)
    TradingSignal.from_json(json.dumps(signal))  # always schema-valid


def test_replies_are_labelled_and_deterministic() -> None:
    case = portfolio("100", "1000", ("A", "600", "0"))
    reply = HeuristicProvider().generate(SignalInput("ignored", case))
    again = HeuristicProvider().generate(SignalInput("ignored", case))
    assert reply.text == again.text
    assert (reply.provider, reply.model, reply.notice) == (PROVIDER, MODEL, NOTICE)
    assert "not by an AI model" in NOTICE and "Not investment advice" in NOTICE
    assert reply.usage()["total_tokens"] == 0
