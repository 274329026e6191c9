"""The market-hours schedule (``SYNC_SCHEDULE=market-hours``): sync only while the market is open.

Alpaca's ``GET /v2/clock`` knows DST, holidays and half days, but it needs API keys, which only
the worker holds (each tenant's own). So the two halves meet in ``ops/market_clock``:

- the publisher's tick (:func:`decide_for_tick`, called by :func:`publisher.tick.fan_out`) reads
  that one document per tick
  and decides with :func:`decide`: publish or not, and whether this pulse must ask for a fresh
  clock. Asking marks exactly one of the pulse's messages ``check_clock`` (:func:`pick_asker`
  chooses the user from a hash of the pulse id, so one broken tenant cannot block it);
- the worker, after a successful sync of that message, calls ``/v2/clock`` with that tenant's
  client and stores the answer (:func:`refresh`): ``is_open``, ``next_open``, ``next_close``,
  ``checked_at`` and the asking pulse, nothing of the tenant. A failure there is logged and
  never fails the sync; the next tick finds the clock still stale and asks again.

Fail open: no clock, an unreadable one or a stale one means publish (and ask). Only a fresh
clock that says "closed until ``next_open``" skips a tick. An answer written out of order
cannot keep the market closed wrongly: staleness is judged against ``next_open`` /
``next_close``, which an older answer has already passed.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader import topology
from agenttrader.alpaca import fetch_clock
from agenttrader.credentials.model import Credentials
from agenttrader.errors import AgentTraderError
from agenttrader.logs import get_logger, redact
from agenttrader.messages import SyncRequest, parse_timestamp
from agenttrader.paths import MARKET_CLOCK_DOC
from agenttrader.settings import SyncSchedule

if TYPE_CHECKING:
    from alpaca.trading.client import TradingClient
    from google.cloud import firestore

    from agenttrader.deps import Deps

log = get_logger(__name__)

MAX_CLOCK_AGE = timedelta(hours=24)
"""A clock checked longer ago than this is stale whatever it says (an unannounced closure or
a hand-edited document cannot hold the schedule for more than a day)."""
MAX_CLOCK_AHEAD = timedelta(minutes=5)
"""A ``checked_at`` further in the future than clock skew explains is stale too."""
CLOCK_WRITE_ALLOWANCE_SECONDS = 10.0
"""Time kept for writing ``ops/market_clock`` and acknowledging (see :func:`clock_call_fits`)."""

_NANOSECONDS = re.compile(r"(\.\d{6})\d+")
"""Alpaca's ``timestamp`` carries nanoseconds; Python parses at most microseconds."""


@dataclass(frozen=True)
class MarketClock:
    """One answer of ``/v2/clock``, and when it was asked."""

    is_open: bool
    next_open: datetime
    next_close: datetime
    checked_at: datetime
    pulse_id: str | None = None
    """The pulse whose message asked (for operators; not part of any decision)."""

    @classmethod
    def from_alpaca(
        cls, body: Mapping[str, Any], checked_at: datetime, pulse_id: str | None = None
    ) -> MarketClock:
        """From Alpaca's JSON; ``ValueError`` naming the field that does not parse."""
        is_open = body.get("is_open")
        if not isinstance(is_open, bool):
            raise ValueError("is_open must be true or false")
        return cls(
            is_open=is_open,
            next_open=_alpaca_time(body.get("next_open"), "next_open"),
            next_close=_alpaca_time(body.get("next_close"), "next_close"),
            checked_at=checked_at,
            pulse_id=pulse_id,
        )

    @classmethod
    def from_document(cls, data: Mapping[str, Any]) -> MarketClock:
        """From ``ops/market_clock``; ``ValueError`` when a field is missing or of a wrong type."""
        is_open = data.get("is_open")
        if not isinstance(is_open, bool):
            raise ValueError("is_open must be true or false")
        pulse_id = data.get("pulse_id")
        return cls(
            is_open=is_open,
            next_open=_stored_time(data, "next_open"),
            next_close=_stored_time(data, "next_close"),
            checked_at=_stored_time(data, "checked_at"),
            pulse_id=pulse_id if isinstance(pulse_id, str) else None,
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "is_open": self.is_open,
            "next_open": self.next_open,
            "next_close": self.next_close,
            "checked_at": self.checked_at,
            "pulse_id": self.pulse_id,
        }


def _alpaca_time(value: object, field: str) -> datetime:
    if isinstance(value, str):
        value = _NANOSECONDS.sub(r"\1", value)
    return parse_timestamp(value, field)


def _stored_time(data: Mapping[str, Any], field: str) -> datetime:
    value = data.get(field)
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{field} must be a timestamp")
    return value.astimezone(UTC)


class Why(StrEnum):
    """The branch :func:`decide` took (logged, and what the tests pin)."""

    ALWAYS = "always"
    OPEN = "open"
    CLOSED = "closed"
    NO_CLOCK = "no_clock"
    UNREADABLE = "unreadable"
    STALE = "stale"


@dataclass(frozen=True)
class Decision:
    """What one tick does."""

    publish: bool
    check_clock: bool
    why: Why
    clock: MarketClock | None = None


def decide(schedule: SyncSchedule, stored: Mapping[str, Any] | None, now: datetime) -> Decision:
    """Publish or not, and whether to ask for a fresh clock; ``stored`` is the data of
    ``ops/market_clock`` (``None``: no such document). Pure."""
    if schedule is SyncSchedule.ALWAYS:
        return Decision(publish=True, check_clock=False, why=Why.ALWAYS)
    if stored is None:
        return Decision(publish=True, check_clock=True, why=Why.NO_CLOCK)
    try:
        clock = MarketClock.from_document(stored)
    except ValueError:
        return Decision(publish=True, check_clock=True, why=Why.UNREADABLE)
    stale = Decision(publish=True, check_clock=True, why=Why.STALE, clock=clock)
    if now - clock.checked_at > MAX_CLOCK_AGE or clock.checked_at - now > MAX_CLOCK_AHEAD:
        return stale
    if clock.is_open:
        return Decision(True, False, Why.OPEN, clock) if now < clock.next_close else stale
    return Decision(False, False, Why.CLOSED, clock) if now < clock.next_open else stale


def decide_for_tick(deps: Deps, now: datetime) -> Decision:
    """:func:`decide` with the stored clock; with ``always`` nothing is read."""
    schedule = deps.settings.sync_schedule
    if schedule is SyncSchedule.ALWAYS:
        return decide(schedule, None, now)
    snapshot = deps.firestore.document(MARKET_CLOCK_DOC).get()
    return decide(schedule, snapshot.to_dict() if snapshot.exists else None, now)


def pick_asker(uids: Iterable[str], pulse_id: str) -> str | None:
    """The user whose message asks for the clock in this pulse: a different one per pulse
    (a hash of the pulse id), the same one for a redelivered tick. ``None`` without users."""
    ordered = sorted(uids)
    if not ordered:
        return None
    digest = hashlib.sha256(pulse_id.encode()).digest()
    return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]


def refresh_after_sync(
    deps: Deps,
    client: TradingClient,
    credentials: Credentials,
    request: SyncRequest,
    started: float,
) -> MarketClock | None:
    """The worker's hook, after ``request`` synced successfully (``started``: when its
    handling began, ``time.monotonic()``): refresh the clock if the message asks and the call
    still fits in the delivery's ack deadline (:func:`clock_call_fits`). Never raises."""
    if not request.check_clock:
        return None
    elapsed = time.monotonic() - started
    if not clock_call_fits(elapsed, deps.settings.alpaca_timeout_seconds):
        log.warning(
            "market clock not refreshed: the sync left too little of the ack deadline",
            uid=request.uid,
            pulse_id=request.pulse_id,
            fields={"elapsed_seconds": round(elapsed, 3)},
        )
        return None
    return refresh(deps.firestore, client, credentials, uid=request.uid, pulse_id=request.pulse_id)


def clock_call_fits(elapsed_seconds: float, alpaca_timeout_seconds: float) -> bool:
    """Whether one more Alpaca call (connect + read timeout) and the clock's write still end
    within ``user-sync-worker``'s ack deadline after ``elapsed_seconds`` of sync. The
    deployment plan sizes the deadline for the sync's own calls; the clock call adds to the
    worst case only when it still fits, so a slow sync is never redelivered because of it."""
    ack_deadline = topology.subscription(topology.USER_SYNC_WORKER).ack_deadline_seconds
    worst = elapsed_seconds + 2 * alpaca_timeout_seconds + CLOCK_WRITE_ALLOWANCE_SECONDS
    return worst <= ack_deadline


def refresh(
    db: firestore.Client,
    client: TradingClient,
    credentials: Credentials,
    *,
    uid: str,
    pulse_id: str | None,
    now: datetime | None = None,
) -> MarketClock | None:
    """Ask ``/v2/clock`` with this tenant's client and store the answer in ``ops/market_clock``.

    Never raises: the sync it follows has succeeded, and a clock failure must not change that.
    A failure is logged as a warning (the error class and a redacted reason, no key) and
    leaves the stored clock as it was; the next tick asks again.
    """
    try:
        body = fetch_clock(client, credentials)
        clock = MarketClock.from_alpaca(body, now or datetime.now(UTC), pulse_id)
        db.document(MARKET_CLOCK_DOC).set(clock.to_document())
    except Exception as err:  # noqa: BLE001 - nothing may fail the sync that succeeded
        if isinstance(err, AgentTraderError | ValueError):
            reason = redact(str(err))[:200]
        else:
            reason = type(err).__name__
        log.warning(
            f"market clock not refreshed: {reason}",
            uid=uid,
            pulse_id=pulse_id,
            error_class=getattr(err, "error_class", type(err).__name__),
        )
        return None
    log.info(
        "market clock refreshed",
        uid=uid,
        pulse_id=pulse_id,
        fields={
            "is_open": clock.is_open,
            "next_open": clock.next_open.isoformat(),
            "next_close": clock.next_close.isoformat(),
        },
    )
    return clock
