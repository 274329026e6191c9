"""An order's latest state (:mod:`stream_gateway.orders`): never backwards, a burst coalesced to
the newest state of each order, the fields the data model names."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from stream_gateway.orders import document, key_of, latest, newer, stored_key
from stream_gateway.protocol import TradeUpdate

ORDER = "61e69015-8549-4bfd-b9c3-01e75843f47d"


def update(event: str, at: int, filled: str = "0", order_id: str = ORDER) -> TradeUpdate:
    return TradeUpdate(
        event, order_id, {"id": order_id, "filled_qty": filled}, at, f"t{at}", {"price": "1.5"}
    )


@pytest.mark.parametrize(
    ("incoming", "stored", "replaces"),
    [
        ((2, Decimal(0)), None, True),
        ((2, Decimal(0)), (1, Decimal(5)), True),
        ((1, Decimal(5)), (2, Decimal(0)), False),  # an older update arriving late
        ((2, Decimal(5)), (2, Decimal(3)), True),  # same instant, more filled
        ((2, Decimal(3)), (2, Decimal(5)), False),
        ((2, Decimal(3)), (2, Decimal(3)), False),  # the same state again
    ],
)
def test_only_a_newer_state_replaces_the_stored_one(
    incoming: tuple[int, Decimal], stored: tuple[int, Decimal] | None, replaces: bool
) -> None:
    assert newer(incoming, stored) is replaces


def test_a_burst_keeps_the_newest_state_of_each_order() -> None:
    burst = [
        update("new", 1),
        update("partial_fill", 3, "2"),
        update("partial_fill", 2, "1"),  # out of order
        update("fill", 4, "3"),
        update("new", 5, order_id="other-order"),
    ]
    kept = latest(burst)
    assert {oid: u.event for oid, u in kept.items()} == {ORDER: "fill", "other-order": "new"}


def test_the_document_holds_the_event_the_order_and_when() -> None:
    now = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    body = document(update("fill", 1_700_000_000_123_456_789, "3"), now)
    assert body["event"] == "fill"
    assert body["order"] == {"id": ORDER, "filled_qty": "3"}
    assert body["updatedAt"] == now and body["source"] == "stream"
    assert body["eventNanos"] == 1_700_000_000_123_456_789
    assert body["eventAt"].microsecond == 123_456
    assert body["filledQty"] == "3" and body["price"] == "1.5"
    assert stored_key(body) == key_of(update("fill", 1_700_000_000_123_456_789, "3"))


@pytest.mark.parametrize("data", [None, {}, {"event": "fill"}, {"eventNanos": "12"}])
def test_a_document_without_our_key_is_replaced_by_any_update(
    data: dict[str, object] | None,
) -> None:
    assert stored_key(data) is None
