"""The structured answer every provider must give, and its strict parser.

Gemini is asked for exactly this shape (``response_schema``); its text is still parsed and
checked here, because a schema is a request to the model, not a guarantee. A ticker, in the
prompt's data as in an answer, is :data:`SYMBOL` (:func:`ticker`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_RATIONALE_CHARS = 4000
MAX_RISKS = 10
MAX_RISK_CHARS = 500
SYMBOL = re.compile(r"[A-Z0-9./]{1,15}")
"""A ticker as Alpaca spells them: ``AAPL``, ``BRK.B``, ``BTC/USD``."""


def ticker(value: object) -> str | None:
    """``value`` as a ticker (trimmed, upper-cased ASCII matching :data:`SYMBOL`), else
    ``None``: nothing else is ever put in a prompt or stored as a signal's symbol."""
    if not isinstance(value, str) or not value.isascii():
        return None
    symbol = value.strip().upper()
    return symbol if SYMBOL.fullmatch(symbol) else None


class Action(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {
        "action": {"type": "STRING", "enum": [a.value for a in Action]},
        "symbol": {
            "type": "STRING",
            "description": "Ticker the action applies to; empty for a portfolio-wide HOLD.",
        },
        "confidence": {"type": "NUMBER", "minimum": 0, "maximum": 1},
        "rationale": {"type": "STRING"},
        "risks": {"type": "ARRAY", "items": {"type": "STRING"}},
    },
    "required": ["action", "symbol", "confidence", "rationale", "risks"],
    "propertyOrdering": ["action", "symbol", "confidence", "rationale", "risks"],
}
"""Vertex AI ``responseSchema`` (its OpenAPI subset)."""


class InvalidSignal(ValueError):
    """The provider's text is not a valid signal; the message says why (never the text)."""


@dataclass(frozen=True)
class TradingSignal:
    action: Action
    symbol: str
    confidence: float
    rationale: str
    risks: tuple[str, ...]

    @classmethod
    def from_json(cls, text: str | None) -> TradingSignal:
        """Parse and check a provider's answer; overlong text fields are clipped, wrong types
        and out-of-range values are refused."""
        if not text:
            raise InvalidSignal("empty response")
        try:
            body = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise InvalidSignal("response is not JSON") from err
        if not isinstance(body, dict):
            raise InvalidSignal("response is not a JSON object")
        try:
            action = Action(str(body.get("action", "")).strip().upper())
        except ValueError as err:
            raise InvalidSignal("action must be BUY, SELL or HOLD") from err
        raw_symbol = body.get("symbol") or ""
        if not isinstance(raw_symbol, str):
            raise InvalidSignal("symbol must be a string")
        symbol = ticker(raw_symbol) if raw_symbol.strip() else ""
        if symbol is None:
            raise InvalidSignal("symbol must be empty or a ticker (1-15 of A-Z, 0-9, '.', '/')")
        confidence = body.get("confidence")
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, int | float)
            or not math.isfinite(confidence)
            or not 0 <= confidence <= 1
        ):
            raise InvalidSignal("confidence must be a number from 0 to 1")
        rationale = body.get("rationale")
        if not isinstance(rationale, str) or not rationale.strip():
            raise InvalidSignal("rationale must be a non-empty string")
        risks = body.get("risks", [])
        if not isinstance(risks, list) or not all(isinstance(r, str) for r in risks):
            raise InvalidSignal("risks must be a list of strings")
        return cls(
            action=action,
            symbol=symbol,
            confidence=float(confidence),
            rationale=rationale.strip()[:MAX_RATIONALE_CHARS],
            risks=tuple(r.strip()[:MAX_RISK_CHARS] for r in risks[:MAX_RISKS] if r.strip()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "symbol": self.symbol,
            "confidence": self.confidence,
            "rationale": self.rationale,
            "risks": list(self.risks),
        }
