"""``publish_user_syncs``: one ``user-sync`` message per eligible user, once per tick.

Eligible (docs/DESIGN.md): ``config/alpaca.configured == true`` and ``status/trading.enabled ==
true``, decided from those documents whoever wrote them. A tick reads the roster the triggers
on them keep (:mod:`publisher.roster`: a marker and one document per ~1,000 users, the skipped
count included), publishes 1,000 messages per request (:mod:`publisher.bulk_publish`), then
keeps the roster in shape (:func:`publisher.roster.maintain`).

What a tick does is decided first, from plain values (:func:`decide`): its age and whether its
time is to be trusted, the market-hours decision, its own pulse document and whether a newer
pulse started. Then the pulse document goes through its lifecycle (:mod:`agenttrader.pulses`:
claimed, older pulses finalized, published in uid order while recording how far it got, marked
published, rolled up). A fan-out killed half-way is resumed by the redelivered tick, however
late, from the recorded point (:func:`remaining`): every eligible tenant gets its message at
least once (a few more than once; the worker drops the copies), unless a newer pulse started
meanwhile — its own messages then reach everyone, and the unfinished pulse stays incomplete.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader import market_clock, pulses
from agenttrader.errors import DependencyUnavailable
from agenttrader.events import PubsubDelivery
from agenttrader.logs import get_logger
from agenttrader.messages import MAX_CLOCK_SKEW, Reason, SyncRequest
from agenttrader.pulses import Pulse, PulseState
from publisher import reconcile, roster
from publisher.bulk_publish import publish_all

if TYPE_CHECKING:
    from google.cloud import firestore

    from agenttrader.deps import Deps

log = get_logger(__name__)

STALE_TICK_AFTER = timedelta(minutes=5)
"""A tick delivered later than this starts no pulse: newer ones have taken over (a pulse it
left unfinished is still resumed)."""
PROGRESS_EVERY_SECONDS = 1.0
"""How often a fan-out records how far it got: one write a second at most on its document."""


class Skip(StrEnum):
    """Why a tick published nothing."""

    STALE = "stale"
    MARKET_CLOSED = "market_closed"
    DUPLICATE = "duplicate"
    FUTURE = "future"
    """Its publish time is ahead of this server's clock by more than the skew allowance: not
    trusted (its pulse would look newer than every pulse until then)."""
    SUPERSEDED = "superseded"
    """A newer pulse started (and finalized this one, if it existed): it reaches everyone."""


def decide(
    *,
    age: timedelta,
    schedule: market_clock.Decision,
    pulse: Pulse | None,
    newer: bool = False,
) -> Skip | None:
    """Whether a tick publishes (``None``) or why not, from its age (now − publish time), the
    market-hours decision, its pulse document (``None``: none yet) and whether a newer pulse
    started. A pulse left ``publishing`` is resumed whatever the tick's age and the market
    hours: it started as a valid pulse, and some of its tenants have no message yet."""
    if age < -MAX_CLOCK_SKEW:
        return Skip.FUTURE
    if pulse is not None and pulse.state is PulseState.PUBLISHED:
        return Skip.DUPLICATE
    if newer or (pulse is not None and pulse.final):
        return Skip.SUPERSEDED
    if pulse is not None and pulse.state is PulseState.PUBLISHING:
        return None
    if age > STALE_TICK_AFTER:
        return Skip.STALE
    if not schedule.publish:
        return Skip.MARKET_CLOSED
    return None


def remaining(
    eligible: Mapping[str, str | None], cursor: str | None
) -> list[tuple[str, str | None]]:
    """The users a fan-out still publishes to, in uid order: those after ``cursor`` (every
    eligible uid up to it was published; ``None``: nothing yet)."""
    return sorted(
        (uid, version) for uid, version in eligible.items() if cursor is None or uid > cursor
    )


@dataclass(frozen=True)
class FanoutResult:
    """What one tick did."""

    pulse_id: str
    published: int = 0
    """Messages this delivery of the tick published."""
    ineligible: int = 0
    skipped_tick: Skip | None = None
    """Why the tick published nothing, else ``None``."""
    resumed_after: str | None = None
    """A resumed fan-out: the last uid published before."""
    deferred: int = 0
    """Eligible tenants with a live stream whose reconciliation is another tick's."""


def fan_out(deps: Deps, tick: PubsubDelivery, now: datetime | None = None) -> FanoutResult:
    """Publish the pulse of ``tick``, or the rest of it; safe to call again for the same tick."""
    now = now or datetime.now(UTC)
    db = deps.firestore
    pulse_id = pulses.pulse_id_for(tick.message_id, tick.publish_time)
    labels: dict[str, Any] = {"pulse_id": pulse_id, "message_id": tick.message_id}
    age = now - tick.publish_time
    own = pulses.read(db, pulse_id)
    recent = pulses.recent(db)
    newer = pulses.newer_than(recent, pulse_id, now)
    schedule = market_clock.decide_for_tick(deps, now)
    skip = decide(age=age, schedule=schedule, pulse=own, newer=newer is not None)
    if skip is not None:
        _log_skip(skip, schedule, newer, age, labels)
        return FanoutResult(pulse_id, skipped_tick=skip)
    started = time.monotonic()
    pulse = pulses.begin(
        db,
        pulse_id,
        tick_message_id=tick.message_id,
        tick_time=tick.publish_time,
        now=now,
        existing=own,
    )
    pulses.finish_older(db, pulse_id, recent)
    listed = roster.load(db)
    every = deps.settings.reconcile_every_ticks
    chosen = reconcile.for_tick(db, listed.eligible, tick.publish_time, every)
    users = remaining(chosen.users, pulse.cursor)
    asker = market_clock.pick_asker(chosen.users, pulse_id) if schedule.check_clock else None
    if pulse.cursor is not None:
        log.info(
            "resuming a fan-out left unfinished",
            fields={"after": pulse.cursor, "published_before": pulse.published_before},
            **labels,
        )
    _publish(deps, users, pulse, tick.publish_time, asker=asker)
    if asker is not None:
        log.info("pulse asks for the market clock", uid=asker, pulse_id=pulse_id)
    published = pulse.published_before + len(users)
    ineligible = max(listed.members - len(listed.eligible), 0)
    pulses.mark_published(db, pulse_id, published, ineligible, time.monotonic() - started)
    pulses.rollup(db, pulse_id)
    roster.maintain(db, listed)
    log.info(
        "pulse published",
        pulse_id=pulse_id,
        fields={
            "published": published,
            "ineligible": ineligible,
            "this_delivery": len(users),
            "deferred": chosen.deferred,
        },
    )
    return FanoutResult(
        pulse_id,
        published=len(users),
        ineligible=ineligible,
        resumed_after=pulse.cursor,
        deferred=chosen.deferred,
    )


def _log_skip(
    skip: Skip,
    schedule: market_clock.Decision,
    newer: str | None,
    age: timedelta,
    labels: dict[str, Any],
) -> None:
    if skip is Skip.FUTURE:
        log.error(
            "tick ignored: its publish time is ahead of this server's clock",
            fields={"ahead_seconds": round(-age.total_seconds(), 3)},
            **labels,
        )
    elif skip is Skip.MARKET_CLOSED:
        next_open = schedule.clock.next_open.isoformat() if schedule.clock else None
        log.info("tick skipped: the market is closed", fields={"next_open": next_open}, **labels)
    elif skip is Skip.SUPERSEDED:
        log.warning("tick skipped: a newer pulse started", fields={"newer": newer}, **labels)
    elif skip is Skip.STALE:
        log.warning("dropping a stale tick", **labels)
    else:
        log.info("tick already published", **labels)


class _Progress:
    """Records on the pulse document how far the fan-out got: at its first request, then at
    most once per :data:`PROGRESS_EVERY_SECONDS`, and once more when the fan-out fails."""

    def __init__(
        self, db: firestore.Client, pulse: Pulse, users: list[tuple[str, str | None]]
    ) -> None:
        self._db, self._pulse, self._users = db, pulse, users
        self._done = self._written = 0
        self._last = -math.inf

    def advance(self, published: int) -> None:
        self._done = published
        if time.monotonic() - self._last >= PROGRESS_EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._done <= self._written:
            return
        try:
            pulses.record_progress(
                self._db,
                self._pulse.pulse_id,
                self._users[self._done - 1][0],
                self._pulse.published_before + self._done,
            )
        except Exception as err:  # noqa: BLE001 - without it a resume only publishes more again
            log.warning(
                f"fan-out progress not recorded: {type(err).__name__}",
                pulse_id=self._pulse.pulse_id,
            )
            return
        self._written, self._last = self._done, time.monotonic()


def _publish(
    deps: Deps,
    users: list[tuple[str, str | None]],
    pulse: Pulse,
    requested_at: datetime,
    *,
    asker: str | None = None,
) -> None:
    """Publish one message per user, in order, recording progress (``asker``'s asks its worker
    to refresh the market clock); all or raise."""
    requests = [
        SyncRequest(
            uid,
            Reason.SCHEDULE,
            requested_at,
            pulse_id=pulse.pulse_id,
            keys_version=version,
            check_clock=uid == asker,
        )
        for uid, version in users
    ]
    progress = _Progress(deps.firestore, pulse, users)
    failed = publish_all(
        deps,
        requests,
        on_progress=progress.advance,
        per_request=deps.settings.fanout_messages_per_request,
    )
    if failed:
        # The pulse stays "publishing": the redelivered tick publishes what follows the
        # recorded progress, and the worker ignores the copies of what did go out after it.
        progress.flush()
        raise DependencyUnavailable(f"{failed} of {len(users)} user-sync messages not published")
