"""The snapshot's allowlist: a real synced snapshot passes it unchanged; anything else is
reduced to it, recursively, with the paths of what was left out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alpaca.trading.models import AccountConfiguration, Position, TradeAccount, USDPositionValues

from agenttrader.snapshot import (
    ACCOUNT,
    DATA,
    POSITION,
    REQUESTED_AT_FIELD,
    USER_CONFIGURATION,
    Fields,
    allowed_fields,
    synced_body,
)
from devtools.simulator.responses import account_body, positions_body
from devtools.simulator.tenants import TenantRegistry

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def test_a_real_synced_snapshot_passes_unchanged() -> None:
    """What the worker stores (Alpaca's bodies verbatim, as the simulator sends them) is data
    the allowlist keeps whole; only the sync's own bookkeeping is not data."""
    tenant = TenantRegistry().create(seed=7)
    portfolio = tenant.tick()
    assert portfolio.holdings, "the tenant must hold positions for this test to mean much"
    account, positions = account_body(tenant, portfolio, NOW), positions_body(portfolio)
    body = synced_body(NOW, "schedule", {"account": account, "positions": positions}, NOW)
    data = {k: v for k, v in body.items() if k not in (REQUESTED_AT_FIELD, "reason")}

    assert allowed_fields(data) == (data, [])


@pytest.mark.parametrize(
    ("shape", "model"),
    [
        (ACCOUNT, TradeAccount),
        (POSITION, Position),
        (USER_CONFIGURATION, AccountConfiguration),
        (POSITION.names["usd"], USDPositionValues),
    ],
)
def test_every_field_alpaca_py_knows_is_allowed(shape: Any, model: Any) -> None:
    assert isinstance(shape, Fields)
    assert set(model.model_fields) <= set(shape.names)


@pytest.mark.parametrize(
    ("data", "kept", "dropped"),
    [
        ({"equity": "1", "APCA-API-KEY-ID": "x"}, {"equity": "1"}, ["APCA-API-KEY-ID"]),
        (
            {"account": {"id": "a", "secret_key": "s", "api": {"key": "k"}}},
            {"account": {"id": "a"}},
            ["account.api", "account.secret_key"],
        ),
        (
            {"positions": [{"symbol": "SPY", "auth": "a"}, "junk", {"qty": "1", "token": "t"}]},
            {"positions": [{"symbol": "SPY"}, {"qty": "1"}]},
            ["positions[]", "positions[].auth", "positions[].token"],
        ),
        (
            {"account": {"admin_configurations": {"max_margin_multiplier": "4", "pw": "x"}}},
            {"account": {"admin_configurations": {"max_margin_multiplier": "4"}}},
            ["account.admin_configurations.pw"],
        ),
        (
            {"positions": [{"usd": {"market_value": "1", "password": "p"}}]},
            {"positions": [{"usd": {"market_value": "1"}}]},
            ["positions[].usd.password"],
        ),
        # Wrong kinds: a map where a scalar belongs, a scalar where a map or list belongs.
        ({"equity": {"secret": "s"}, "cash": ["1"]}, {}, ["cash", "equity"]),
        ({"account": "secret", "positions": {"0": {}}}, {}, ["account", "positions"]),
        ({"account": {"id": b"bytes"}}, {"account": {}}, ["account.id"]),
        # Null maps and empty lists stay as they are.
        ({"account": {"user_configurations": None}, "positions": []}, None, []),
        # Bookkeeping is not data: a legacy document cannot set a snapshot's order or outcome.
        (
            {"requestedAt": NOW, "syncOutcome": "success", "pulseId": "p", "placeholder": True},
            {},
            ["placeholder", "pulseId", "requestedAt", "syncOutcome"],
        ),
    ],
)
def test_what_is_not_allowed_is_dropped_by_path(
    data: dict[str, Any], kept: dict[str, Any] | None, dropped: list[str]
) -> None:
    assert allowed_fields(data) == (data if kept is None else kept, dropped)


def test_refused_values_are_dropped_whatever_their_name() -> None:
    data = {
        "cash": "refuse me",
        "equity": "1",
        "account": {"status": "refuse me", "id": "a"},
        "positions": [{"symbol": "refuse me", "qty": "2"}],
    }
    kept, dropped = allowed_fields(data, DATA, refuse=lambda value: value == "refuse me")
    assert kept == {"equity": "1", "account": {"id": "a"}, "positions": [{"qty": "2"}]}
    assert dropped == ["account.status", "cash", "positions[].symbol"]
