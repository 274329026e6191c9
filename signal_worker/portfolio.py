"""The part of an account snapshot a signal is built from, parsed leniently.

The sync worker stores Alpaca's own strings (``"1234.56"``); legacy snapshots may hold numbers.
Unparseable values read as ``None`` rather than failing: a signal on partial data beats none,
and the prompt says what is unknown.

A position whose symbol is not a ticker (:func:`signal_worker.schema.ticker`, e.g. ``AAPL"}]``
written into a legacy snapshot) is left out and only counted: its symbol never reaches the
prompt, and no signal can name it. It is not replaced by a marker, which a model could echo
back as if it were a ticker. The account totals still include its value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signal_worker.schema import ticker

MAX_POSITIONS = 50
"""The largest positions (by absolute market value) that reach the prompt; keeps it bounded."""


def number(value: Any) -> float | None:
    """A finite float from a number or numeric string, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


@dataclass(frozen=True)
class Position:
    symbol: str
    qty: float | None
    market_value: float | None
    unrealized_pl: float | None


@dataclass(frozen=True)
class Portfolio:
    """Account totals and the largest positions."""

    equity: float | None
    cash: float | None
    buying_power: float | None
    positions: tuple[Position, ...]
    omitted_positions: int = 0
    """Positions beyond :data:`MAX_POSITIONS`, left out of the prompt."""
    unrecognised_positions: int = 0
    """Positions whose symbol is not a ticker, left out of the prompt."""

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> Portfolio:
        account = snapshot.get("account")
        account = account if isinstance(account, Mapping) else {}

        def total(name: str) -> float | None:
            top = number(snapshot.get(name))
            return top if top is not None else number(account.get(name))

        raw = snapshot.get("positions")
        positions = (
            [_position(item) for item in raw if isinstance(item, Mapping)]
            if isinstance(raw, list)
            else []
        )
        kept = [p for p in positions if p is not None]
        unrecognised = len(positions) - len(kept)
        kept.sort(key=lambda p: abs(p.market_value or 0.0), reverse=True)
        return cls(
            equity=total("equity"),
            cash=total("cash"),
            buying_power=total("buying_power"),
            positions=tuple(kept[:MAX_POSITIONS]),
            omitted_positions=max(0, len(kept) - MAX_POSITIONS),
            unrecognised_positions=unrecognised,
        )


def _position(item: Mapping[str, Any]) -> Position | None:
    symbol = ticker(item.get("symbol"))
    if symbol is None:
        return None
    return Position(
        symbol=symbol,
        qty=number(item.get("qty")),
        market_value=number(item.get("market_value")),
        unrealized_pl=number(item.get("unrealized_pl")),
    )
