"""Orders on the simulator and the trade updates they produce.

``POST /v2/orders`` (the tenant's own keys or token) and ``POST /_sim/tenants/{key_id}/orders``
(admin: what the tenant's trading bot would do) place an order. A market order is answered
``new`` at once, then filled after the tenant's :class:`FillPlan` (``fill_delay_ms``), in
``partial_fills`` steps ``fill_interval_ms`` apart (every step but the last a
``partial_fill``); a limit order rests until ``DELETE /v2/orders/{id}`` cancels it. Each step
updates the tenant's order, cash and position (what ``/v2/account`` and ``/v2/positions``
answer next) and goes to the account's trade-update stream as Alpaca's ``trade_updates``
message (:func:`trade_update`), with a nanosecond timestamp as Alpaca sends.

One scheduler thread runs every pending step in time order; a step due while the simulator
stops is dropped.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from devtools.simulator.responses import order_body
from devtools.simulator.tenants import SimOrder, SimTenant, _cents, _decimal, asset_id_for

_SIDES = frozenset({"buy", "sell"})
_TYPES = frozenset({"market", "limit"})
_TIFS = frozenset({"day", "gtc", "ioc", "fok", "opg", "cls"})
_ORDER_FIELDS = frozenset(
    {"symbol", "qty", "side", "type", "time_in_force", "limit_price", "client_order_id"}
)
_PLAN_FIELDS = frozenset({"partial_fills", "fill_delay_ms", "fill_interval_ms"})
_MAX_STEPS = 1_000


@dataclass(frozen=True)
class FillPlan:
    """How a tenant's market orders fill."""

    fill_delay_ms: float = 200.0
    partial_fills: int = 1
    """Steps of the fill: ``partial_fills - 1`` partial fills, then the fill."""
    fill_interval_ms: float = 20.0

    def __post_init__(self) -> None:
        if not 0 <= self.fill_delay_ms <= 600_000 or not 0 <= self.fill_interval_ms <= 600_000:
            raise ValueError("fill_delay_ms and fill_interval_ms must be 0-600000")
        if isinstance(self.partial_fills, bool) or not 1 <= self.partial_fills <= _MAX_STEPS:
            raise ValueError(f"partial_fills must be 1-{_MAX_STEPS}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: FillPlan | None = None) -> FillPlan:
        unknown = sorted(set(data) - _PLAN_FIELDS)
        if unknown:
            raise ValueError(f"unknown fill plan field(s): {', '.join(unknown)}")
        try:
            return replace(base or cls(), **data)
        except TypeError as err:
            raise ValueError(str(err)) from None


@dataclass(frozen=True)
class OrderRequest:
    """The body of ``POST /v2/orders`` (the subset the simulator fills)."""

    symbol: str
    qty: Decimal
    side: str
    type: str
    time_in_force: str
    limit_price: Decimal | None
    client_order_id: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderRequest:
        unknown = sorted(set(data) - _ORDER_FIELDS)
        if unknown:
            raise ValueError(f"unknown order field(s): {', '.join(unknown)}")
        symbol = data.get("symbol")
        if not isinstance(symbol, str) or not symbol.isalnum() or not 1 <= len(symbol) <= 12:
            raise ValueError("symbol must be an upper-case ticker like 'AAPL'")
        side, kind = data.get("side", "buy"), data.get("type", "market")
        tif = data.get("time_in_force", "day")
        if side not in _SIDES or kind not in _TYPES or tif not in _TIFS:
            raise ValueError("side must be buy|sell, type market|limit, time_in_force day|gtc|…")
        limit = data.get("limit_price")
        if kind == "limit" and limit is None:
            raise ValueError("a limit order needs limit_price")
        client_id = data.get("client_order_id") or str(uuid.uuid4())
        if not isinstance(client_id, str) or len(client_id) > 128:
            raise ValueError("client_order_id must be a string of at most 128 characters")
        return cls(
            symbol=symbol.upper(),
            qty=_decimal("qty", data.get("qty")),
            side=str(side),
            type=str(kind),
            time_in_force=str(tif),
            limit_price=None if limit is None else _cents(_decimal("limit_price", limit)),
            client_order_id=client_id,
        )


def timestamp_ns(moment_ns: int) -> str:
    """RFC 3339 with nanoseconds, as Alpaca stamps trade updates."""
    seconds, nanos = divmod(moment_ns, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


def trade_update(event: str, order: SimOrder, at_ns: int, **fill: str | None) -> dict[str, Any]:
    """Alpaca's ``trade_updates`` message for ``event`` of ``order`` (``fill``: ``price``,
    ``qty``, ``position_qty`` of a fill)."""
    data: dict[str, Any] = {"event": event, "order": order_body(order)}
    if fill:
        data["execution_id"] = str(uuid.uuid4())
        data.update({key: value for key, value in fill.items() if value is not None})
    data["timestamp"] = timestamp_ns(at_ns)
    return {"stream": "trade_updates", "data": data}


Emit = Callable[[SimTenant, dict[str, Any]], None]
"""Where a trade update goes: the account's stream (``StreamHub.publish``)."""


class OrderEngine:
    """Places orders and runs their fills in time order on one thread."""

    def __init__(self, emit: Emit, stopping: threading.Event) -> None:
        self._emit = emit
        self._stopping = stopping
        self._plans: dict[str, FillPlan] = {}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self.events = 0
        """Trade updates produced (every step of every order)."""

    def plan_for(self, tenant: SimTenant) -> FillPlan:
        return self._plans.get(tenant.key_id, FillPlan())

    def set_plan(self, tenant: SimTenant, plan: FillPlan) -> None:
        self._plans[tenant.key_id] = plan

    def place(
        self, tenant: SimTenant, request: OrderRequest, plan: FillPlan | None = None
    ) -> SimOrder:
        """Accept an order: ``new`` now; a market order's fill steps scheduled."""
        plan = plan or self.plan_for(tenant)
        now = datetime.now(UTC)
        order = SimOrder(
            id=str(uuid.uuid4()),
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            asset_id=asset_id_for(request.symbol),
            qty=request.qty,
            filled_qty=Decimal(0),
            side=request.side,
            order_type=request.type,
            time_in_force=request.time_in_force,
            limit_price=request.limit_price,
            filled_avg_price=None,
            status="new",
            submitted_at=now,
            filled_at=None,
            expires_at=now + timedelta(days=90 if request.time_in_force == "gtc" else 1),
            updated_at=now,
        )
        tenant.record_order(order)
        self._send(tenant, "new", order)
        if request.type == "market":
            self._schedule_fills(tenant, order.id, plan)
        return order

    def cancel(self, tenant: SimTenant, order_id: str) -> SimOrder | None:
        """Cancel an open order (``None``: no such open order)."""
        order = next((o for o in tenant.orders if o.id == order_id and o.is_open), None)
        if order is None:
            return None
        now = datetime.now(UTC)
        canceled = replace(order, status="canceled", canceled_at=now, updated_at=now)
        tenant.record_order(canceled)
        self._send(tenant, "canceled", canceled)
        return canceled

    def _schedule_fills(self, tenant: SimTenant, order_id: str, plan: FillPlan) -> None:
        start = time.monotonic() + plan.fill_delay_ms / 1000
        for step in range(plan.partial_fills):
            due = start + step * plan.fill_interval_ms / 1000
            last = step == plan.partial_fills - 1

            def run(step: int = step, last: bool = last) -> None:
                self._fill_step(tenant, order_id, plan.partial_fills, step, last)

            self._push(due, run)

    def _fill_step(
        self, tenant: SimTenant, order_id: str, steps: int, step: int, last: bool
    ) -> None:
        order = next((o for o in tenant.orders if o.id == order_id), None)
        if order is None or not order.is_open:
            return
        price = tenant.price_of(order.symbol)
        qty = order.qty - order.filled_qty if last else _step_qty(order.qty, steps)
        if qty <= 0:
            return
        filled = order.filled_qty + qty
        average = _cents(
            ((order.filled_avg_price or Decimal(0)) * order.filled_qty + price * qty) / filled
        )
        now = datetime.now(UTC)
        updated = replace(
            order,
            filled_qty=filled,
            filled_avg_price=average,
            status="filled" if last else "partially_filled",
            filled_at=now if last else None,
            updated_at=now,
        )
        tenant.record_order(updated)
        position = tenant.apply_fill(order.symbol, order.side, qty, price)
        self._send(
            tenant,
            "fill" if last else "partial_fill",
            updated,
            price=f"{price:f}",
            qty=f"{qty.normalize():f}",
            position_qty=f"{position.normalize():f}",
        )

    def _send(self, tenant: SimTenant, event: str, order: SimOrder, **fill: str | None) -> None:
        self.events += 1
        self._emit(tenant, trade_update(event, order, time.time_ns(), **fill))

    # --- the scheduler ------------------------------------------------------------------------

    def _push(self, due: float, action: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._queue, (due, next(self._sequence), action))
            self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="simulator-fills", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                while not self._queue and not self._stopping.is_set():
                    self._wake.wait(0.5)
                if self._stopping.is_set():
                    return
                due, _, action = self._queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._wake.wait(min(wait, 0.5))
                    continue
                heapq.heappop(self._queue)
            action()

    def stop(self) -> None:
        with self._wake:
            self._wake.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)


def _step_qty(qty: Decimal, steps: int) -> Decimal:
    """One partial fill's share: whole shares where the order allows, else a fraction."""
    share = qty / steps
    whole = share.to_integral_value(rounding="ROUND_FLOOR")
    return whole if whole >= 1 else share.quantize(Decimal("0.000001"))
