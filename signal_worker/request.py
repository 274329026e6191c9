"""What a client may send to ``generate_trading_signal``: optional ``marketConditions`` only.

The value ends up inside the prompt, so it is bounded and flattened to plain text or a small
flat map; anything else is ``INVALID_ARGUMENT`` naming ``marketConditions``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agenttrader.callable import fields_of, invalid_argument

FIELD = "marketConditions"
MAX_TEXT_CHARS = 2000
MAX_ENTRIES = 20
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 500
"""Per string value of the object form; 20 × 500 stays within the text form's order of size."""

MarketConditions = str | dict[str, str | int | float]


@dataclass(frozen=True)
class SignalRequest:
    """A validated ``generate_trading_signal`` call."""

    market_conditions: MarketConditions | None = None

    @classmethod
    def from_data(cls, data: Any) -> SignalRequest:
        fields = fields_of(data, allowed=(FIELD,))
        return cls(market_conditions=validate_market_conditions(fields.get(FIELD)))


def validate_market_conditions(value: Any) -> MarketConditions | None:
    """``None``, a string of at most 2000 characters, or an object of at most 20 entries whose
    keys are 1-64 characters and whose values are strings (≤ 500) or finite numbers."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise invalid_argument(FIELD, f"must be at most {MAX_TEXT_CHARS} characters")
        return value
    if not isinstance(value, dict):
        raise invalid_argument(FIELD, "must be a string or an object")
    if len(value) > MAX_ENTRIES:
        raise invalid_argument(FIELD, f"must have at most {MAX_ENTRIES} entries")
    checked: dict[str, str | int | float] = {}
    for key, item in value.items():
        if not 1 <= len(key) <= MAX_KEY_CHARS:
            raise invalid_argument(FIELD, f"keys must be 1 to {MAX_KEY_CHARS} characters")
        if isinstance(item, str):
            if len(item) > MAX_VALUE_CHARS:
                raise invalid_argument(
                    FIELD, f"string values must be at most {MAX_VALUE_CHARS} characters"
                )
        elif isinstance(item, bool) or not isinstance(item, int | float):
            raise invalid_argument(FIELD, "values must be strings or numbers")
        elif not math.isfinite(item):
            raise invalid_argument(FIELD, "numbers must be finite")
        checked[key] = item
    return checked
