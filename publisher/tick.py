"""``publish_user_syncs``: one ``user-sync`` message per eligible user, once per tick.

Eligible (docs/DESIGN.md): ``config/alpaca.configured == true`` and ``status/trading.enabled ==
true``, decided from those documents whoever wrote them. A tick reads the roster the triggers
on them keep (:mod:`publisher.roster`: a marker and one document per ~1,000 users, the
skipped count included), publishes 1,000 messages per request (:mod:`publisher.bulk_publish`),
then keeps the roster in shape (:func:`publisher.roster.maintain`).
What a tick does is decided first, from plain values (:func:`decide`); then the pulse document
goes through its lifecycle (:mod:`agenttrader.pulses`: claimed, previous pulse finalized,
published, rolled up).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader import market_clock, pulses
from agenttrader.errors import DependencyUnavailable
from agenttrader.events import PubsubDelivery
from agenttrader.logs import get_logger
from agenttrader.messages import Reason, SyncRequest
from publisher import roster
from publisher.bulk_publish import publish_all

if TYPE_CHECKING:
    from agenttrader.deps import Deps

log = get_logger(__name__)

STALE_TICK_AFTER = timedelta(minutes=5)
"""A tick delivered later than this is dropped: a newer one has superseded it."""
PUBLISH_TIMEOUT_SECONDS = 120.0


class Skip(StrEnum):
    """Why a tick published nothing."""

    STALE = "stale"
    MARKET_CLOSED = "market_closed"
    DUPLICATE = "duplicate"


def decide(
    *, age: timedelta, schedule: market_clock.Decision, pulse_state: str | None
) -> Skip | None:
    """Whether a tick publishes (``None``) or why not, from its age (now − publish time), the
    market-hours decision and the state its pulse document already has (``None``: none)."""
    if age > STALE_TICK_AFTER:
        return Skip.STALE
    if not schedule.publish:
        return Skip.MARKET_CLOSED
    if pulse_state == pulses.PulseState.PUBLISHED:
        return Skip.DUPLICATE
    return None


@dataclass(frozen=True)
class FanoutResult:
    """What one tick did."""

    pulse_id: str
    published: int = 0
    ineligible: int = 0
    skipped_tick: Skip | None = None
    """Why the tick published nothing, else ``None``."""


def fan_out(deps: Deps, tick: PubsubDelivery, now: datetime | None = None) -> FanoutResult:
    """Publish the pulse of ``tick``; safe to call again for the same tick."""
    now = now or datetime.now(UTC)
    db = deps.firestore
    pulse_id = pulses.pulse_id_for(tick.message_id, tick.publish_time)
    labels: dict[str, Any] = {"pulse_id": pulse_id, "message_id": tick.message_id}
    age = now - tick.publish_time
    if age > STALE_TICK_AFTER:  # decided before any read: a stale tick costs nothing
        log.warning("dropping a stale tick", **labels)
        return FanoutResult(pulse_id, skipped_tick=Skip.STALE)
    schedule = market_clock.decide_for_tick(deps, now)
    state = pulses.state_of(db, pulse_id) if schedule.publish else None
    skip = decide(age=age, schedule=schedule, pulse_state=state)
    if skip is Skip.MARKET_CLOSED:
        next_open = schedule.clock.next_open.isoformat() if schedule.clock else None
        log.info("tick skipped: the market is closed", fields={"next_open": next_open}, **labels)
        return FanoutResult(pulse_id, skipped_tick=skip)
    if skip is Skip.DUPLICATE:
        log.info("tick already published", **labels)
        return FanoutResult(pulse_id, skipped_tick=skip)
    started = time.monotonic()
    pulses.begin(db, pulse_id, tick.message_id, tick.publish_time, now)
    pulses.finish_previous(db, pulse_id)
    listed = roster.load(db)
    users = listed.eligible
    asker = market_clock.pick_asker(users, pulse_id) if schedule.check_clock else None
    _publish(deps, users, pulse_id, tick.publish_time, asker=asker)
    if asker is not None:
        log.info("pulse asks for the market clock", uid=asker, pulse_id=pulse_id)
    ineligible = max(listed.members - len(users), 0)
    pulses.mark_published(db, pulse_id, len(users), ineligible, time.monotonic() - started)
    pulses.rollup(db, pulse_id)
    roster.maintain(db, listed)
    log.info(
        "pulse published",
        pulse_id=pulse_id,
        fields={"published": len(users), "ineligible": ineligible},
    )
    return FanoutResult(pulse_id, published=len(users), ineligible=ineligible)


def _publish(
    deps: Deps,
    users: dict[str, str | None],
    pulse_id: str,
    requested_at: datetime,
    *,
    asker: str | None = None,
) -> None:
    """Publish one message per user (``asker``'s asks its worker to refresh the market
    clock); all or raise."""
    requests = [
        SyncRequest(
            uid,
            Reason.SCHEDULE,
            requested_at,
            pulse_id=pulse_id,
            keys_version=version,
            check_clock=uid == asker,
        )
        for uid, version in users.items()
    ]
    failed = publish_all(deps, requests)
    if failed:
        # The pulse stays "publishing": the redelivered tick publishes it again, and the
        # worker ignores the duplicates of what did go out.
        raise DependencyUnavailable(f"{failed} of {len(users)} user-sync messages not published")
