"""What a client may send to ``generate_trading_signal``: optional ``marketConditions`` only.

The value ends up inside the prompt, so it is bounded and flattened to plain text or a small
flat map; anything else is ``INVALID_ARGUMENT`` naming ``marketConditions``. Its strings may not
hold characters that only serve to disguise text: control characters (tab, line feed and
carriage return excepted), the Unicode line and paragraph separators, bidirectional embeddings,
overrides and isolates, and lone surrogates. The prompt escapes every string anyway
(:mod:`signal_worker.prompt`); refusing these says so to the caller instead of passing a
disguise on to the model.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from agenttrader.callable import fields_of, invalid_argument

FIELD = "marketConditions"
MAX_TEXT_CHARS = 2000
MAX_ENTRIES = 20
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 500
"""Per string value of the object form; 20 × 500 stays within the text form's order of size."""
MAX_ENCODED_CHARS = 24_000
"""Largest size of the value as the prompt carries it (JSON, non-ASCII escaped: a character
counts 6, or 12 beyond the Basic Multilingual Plane), whichever form it has."""
MAX_NUMBER = 1e15
"""Largest magnitude of a number: a market figure, not an arbitrarily long digit string."""
_DISGUISE = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 controls but \t \n \r; DEL; C1 controls
    r"\u2028\u2029"  # line and paragraph separators
    r"\u202a-\u202e\u2066-\u2069"  # bidirectional embeddings, overrides and isolates
    r"\ud800-\udfff]"  # lone surrogates (a JSON body can carry them)
)

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
    keys are 1-64 characters and whose values are strings (≤ 500) or finite numbers (≤ 1e15 in
    size); no disguising characters; at most :data:`MAX_ENCODED_CHARS` once escaped."""
    checked = _checked(value)
    if len(json.dumps(checked, ensure_ascii=True)) > MAX_ENCODED_CHARS:
        raise invalid_argument(
            FIELD, f"must be at most {MAX_ENCODED_CHARS} characters as JSON with non-ASCII escaped"
        )
    return checked


def _checked(value: Any) -> MarketConditions | None:
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise invalid_argument(FIELD, f"must be at most {MAX_TEXT_CHARS} characters")
        return _plain(value)
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
            _plain(item)
        elif isinstance(item, bool) or not isinstance(item, int | float):
            raise invalid_argument(FIELD, "values must be strings or numbers")
        elif not (math.isfinite(item) and abs(item) <= MAX_NUMBER):
            raise invalid_argument(FIELD, f"numbers must be finite, at most {MAX_NUMBER:g} in size")
        checked[_plain(key)] = item
    return checked


def _plain(text: str) -> str:
    if _DISGUISE.search(text):
        raise invalid_argument(
            FIELD,
            "must not contain control characters (but tab and line breaks), line or paragraph "
            "separators, bidirectional controls or lone surrogates",
        )
    return text
