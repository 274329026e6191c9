"""Alpaca Trading API v2 JSON bodies built from simulator state.

Field names, string-encoded numbers and enum spellings follow what Alpaca sends (after the
2026-07-06 removal of the pattern-day-trading fields), so alpaca-py's own models
(TradeAccount, Position, Order, Clock) parse these bodies unchanged. Error bodies never
contain anything from the request, so no key or header value can leak through them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from devtools.simulator.clock import ClockSetting
from devtools.simulator.tenants import CENT, Holding, Portfolio, SimOrder, SimTenant

_NEW_YORK = ZoneInfo("America/New_York")
_MARKET_OPEN = clock_time(9, 30)
_MARKET_CLOSE = clock_time(16, 0)
_RATIO = Decimal("1e-10")
_RATE_LIMIT_PER_MINUTE = 200
_MAX_ORDERS_LIMIT = 500
_ERROR_MESSAGES = {
    401: "request is not authorized",
    404: "endpoint not found",
    429: "rate limit exceeded",
}

JSON = dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON-serialisable body and extra headers."""

    status: int
    body: object
    headers: tuple[tuple[str, str], ...] = ()


def error_reply(status: int, message: str | None = None) -> Reply:
    """Alpaca-shaped error: ``{"code": <status>10000, "message": ...}``.

    A 429 also carries Alpaca's rate-limit headers, resetting at the next minute boundary.
    """
    if message is None:
        message = _ERROR_MESSAGES.get(status) or _phrase(status)
    headers: tuple[tuple[str, str], ...] = ()
    if status == 429:
        reset = (int(time.time()) // 60 + 1) * 60
        headers = (
            ("X-Ratelimit-Limit", str(_RATE_LIMIT_PER_MINUTE)),
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", str(reset)),
        )
    return Reply(status, {"code": status * 100_000 + 10_000, "message": message}, headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def _money(value: Decimal) -> str:
    return f"{value.quantize(CENT):f}"


def _quantity(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _ratio(numerator: Decimal, denominator: Decimal) -> str:
    if denominator == 0:
        return "0"
    return f"{(numerator / denominator).quantize(_RATIO):f}"


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def account_body(tenant: SimTenant, portfolio: Portfolio, now: datetime) -> JSON:
    """GET /v2/account for a 2x margin paper account holding only long positions."""
    long_value = sum((h.market_value for h in portfolio.holdings), Decimal(0))
    lastday_value = sum((h.lastday_value for h in portfolio.holdings), Decimal(0))
    cash = portfolio.cash
    equity = cash + long_value
    initial_margin = long_value * Decimal("0.5")
    maintenance_margin = long_value * Decimal("0.3")
    buying_power = max(equity - initial_margin, Decimal(0)) * 2
    cash_buying_power = max(cash, Decimal(0))
    return {
        "id": tenant.account_id,
        "admin_configurations": {},
        "user_configurations": None,
        "account_number": tenant.account_number,
        "status": "ACTIVE",
        "crypto_status": "ACTIVE",
        "options_approved_level": 3,
        "options_trading_level": 3,
        "currency": "USD",
        "buying_power": _money(buying_power),
        "regt_buying_power": _money(buying_power),
        "effective_buying_power": _money(buying_power),
        "non_marginable_buying_power": _money(cash_buying_power),
        "options_buying_power": _money(cash_buying_power),
        "cash": _money(cash),
        "accrued_fees": "0",
        "portfolio_value": _money(equity),
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "created_at": _timestamp(tenant.created_at),
        "trade_suspended_by_user": False,
        "multiplier": "2",
        "shorting_enabled": True,
        "equity": _money(equity),
        "last_equity": _money(cash + lastday_value),
        "long_market_value": _money(long_value),
        "short_market_value": "0",
        "position_market_value": _money(long_value),
        "initial_margin": _money(initial_margin),
        "maintenance_margin": _money(maintenance_margin),
        "last_maintenance_margin": _money(lastday_value * Decimal("0.3")),
        "sma": _money(cash + lastday_value),
        "balance_asof": _previous_weekday(now.astimezone(_NEW_YORK).date()).isoformat(),
        "crypto_tier": 1,
        "intraday_adjustments": "0",
        "pending_reg_taf_fees": "0",
    }


def positions_body(portfolio: Portfolio) -> list[JSON]:
    """GET /v2/positions, sorted by symbol as Alpaca does."""
    return [_position(h) for h in portfolio.holdings]


def _position(h: Holding) -> JSON:
    value, cost, lastday = h.market_value, h.cost_basis, h.lastday_value
    return {
        "asset_id": h.asset_id,
        "symbol": h.symbol,
        "exchange": h.exchange,
        "asset_class": "us_equity",
        "asset_marginable": True,
        "qty": _quantity(h.qty),
        "avg_entry_price": _money(h.avg_entry_price),
        "side": "long",
        "market_value": _money(value),
        "cost_basis": _money(cost),
        "unrealized_pl": _money(value - cost),
        "unrealized_plpc": _ratio(value - cost, cost),
        "unrealized_intraday_pl": _money(value - lastday),
        "unrealized_intraday_plpc": _ratio(value - lastday, lastday),
        "current_price": _money(h.price),
        "lastday_price": _money(h.lastday_price),
        "change_today": _ratio(h.price - h.lastday_price, h.lastday_price),
        "qty_available": _quantity(h.qty),
    }


def orders_reply(orders: Sequence[SimOrder], query: str) -> Reply:
    """GET /v2/orders with Alpaca's filters (status, limit, direction, side, symbols, dates)."""
    params = {name: values[-1] for name, values in parse_qs(query).items()}
    status = params.get("status", "open")
    direction = params.get("direction", "desc")
    side = params.get("side")
    if status not in ("open", "closed", "all"):
        return error_reply(422, "invalid status")
    if direction not in ("asc", "desc"):
        return error_reply(422, "invalid direction")
    if side not in (None, "buy", "sell"):
        return error_reply(422, "invalid side")
    try:
        limit = int(params.get("limit", "50"))
        after = _parse_time(params.get("after"))
        until = _parse_time(params.get("until"))
    except ValueError:
        return error_reply(422, "invalid limit, after or until")
    if not 1 <= limit <= _MAX_ORDERS_LIMIT:
        return error_reply(422, f"limit must be between 1 and {_MAX_ORDERS_LIMIT}")
    symbols = {s for s in params.get("symbols", "").split(",") if s}
    selected = [
        o
        for o in orders
        if (status == "all" or o.is_open == (status == "open"))
        and (side is None or o.side == side)
        and (not symbols or o.symbol in symbols)
        and (after is None or o.submitted_at > after)
        and (until is None or o.submitted_at <= until)
    ]
    selected.sort(key=lambda o: o.submitted_at, reverse=direction == "desc")
    return Reply(200, [order_body(o) for o in selected[:limit]])


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def order_body(o: SimOrder) -> JSON:
    """An order as Alpaca sends it (``GET /v2/orders``, and inside a trade update)."""
    return {
        "id": o.id,
        "client_order_id": o.client_order_id,
        "created_at": _timestamp(o.submitted_at),
        "updated_at": _timestamp(o.updated_at or o.filled_at or o.submitted_at),
        "submitted_at": _timestamp(o.submitted_at),
        "filled_at": None if o.filled_at is None else _timestamp(o.filled_at),
        "expired_at": None,
        "canceled_at": None if o.canceled_at is None else _timestamp(o.canceled_at),
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": o.asset_id,
        "symbol": o.symbol,
        "asset_class": "us_equity",
        "notional": None,
        "qty": _quantity(o.qty),
        "filled_qty": _quantity(o.filled_qty),
        "filled_avg_price": None if o.filled_avg_price is None else _money(o.filled_avg_price),
        "order_class": "",
        "order_type": o.order_type,
        "type": o.order_type,
        "side": o.side,
        "position_intent": "buy_to_open" if o.side == "buy" else "sell_to_close",
        "time_in_force": o.time_in_force,
        "limit_price": None if o.limit_price is None else _money(o.limit_price),
        "stop_price": None,
        "status": o.status,
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "subtag": None,
        "source": None,
        "expires_at": _timestamp(o.expires_at),
    }


def clock_reply(setting: ClockSetting, now: datetime) -> Reply:
    """GET /v2/clock as ``setting`` says: the regular session, a pinned answer, or an error."""
    if setting.fail_status is not None:
        return error_reply(setting.fail_status)
    if setting.is_open is None or setting.next_open is None or setting.next_close is None:
        return Reply(200, clock_body(now))
    return Reply(
        200,
        {
            "timestamp": now.astimezone(_NEW_YORK).isoformat(),
            "is_open": setting.is_open,
            "next_open": setting.next_open.astimezone(_NEW_YORK).isoformat(),
            "next_close": setting.next_close.astimezone(_NEW_YORK).isoformat(),
        },
    )


def clock_body(now: datetime) -> JSON:
    """GET /v2/clock: regular US equity session, weekdays 09:30-16:00 New York (no holidays)."""
    local = now.astimezone(_NEW_YORK)
    today = local.date()
    trading_day = today.weekday() < 5
    opens = datetime.combine(today, _MARKET_OPEN, _NEW_YORK)
    closes = datetime.combine(today, _MARKET_CLOSE, _NEW_YORK)
    following = _next_weekday(today)
    is_open = trading_day and opens <= local < closes
    if not (trading_day and local < opens):
        opens = datetime.combine(following, _MARKET_OPEN, _NEW_YORK)
    if not (trading_day and local < closes):
        closes = datetime.combine(following, _MARKET_CLOSE, _NEW_YORK)
    return {
        "timestamp": local.isoformat(),
        "is_open": is_open,
        "next_open": opens.isoformat(),
        "next_close": closes.isoformat(),
    }


def _next_weekday(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _previous_weekday(day: date) -> date:
    day -= timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def tenant_info(tenant: SimTenant) -> JSON:
    """Admin view of a tenant; deliberately without the secret key."""
    return {
        "key_id": tenant.key_id,
        "account_id": tenant.account_id,
        "account_number": tenant.account_number,
        "scenario": tenant.scenario.to_dict(),
        "requests": tenant.requests,
        "symbols": [h.symbol for h in tenant.holdings],
    }
