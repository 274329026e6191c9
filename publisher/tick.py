"""``publish_user_syncs``: one ``user-sync`` message per eligible user, once per tick.

Eligible (DESIGN.md): ``config/alpaca.configured == true`` and ``status/trading.enabled ==
true``, decided from those documents whoever wrote them. A tick reads the roster the triggers
on them keep (:mod:`publisher.roster`: 33 documents whatever the number of users, the skipped
count included) and publishes 1,000 messages per request (:mod:`publisher.bulk_publish`).
The scan below (two collection-group queries that return document names only, one read per
configured and per enabled user) rebuilds a roster that was never built.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from agenttrader import market_clock, pulses
from agenttrader.errors import DependencyUnavailable
from agenttrader.events import PubsubDelivery
from agenttrader.logs import get_logger
from agenttrader.messages import Reason, SyncRequest
from agenttrader.paths import LAST_PULSE_DOC, USERS, pulse_doc
from publisher import roster
from publisher.bulk_publish import publish_all
from sync_worker.key_cache import version_of

if TYPE_CHECKING:
    from google.cloud import firestore

    from agenttrader.deps import Deps

log = get_logger(__name__)

STALE_TICK_AFTER = timedelta(minutes=5)
"""A tick delivered later than this is dropped: a newer one has superseded it."""
PUBLISH_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class FanoutResult:
    """What one tick did."""

    pulse_id: str
    published: int = 0
    ineligible: int = 0
    skipped_tick: str | None = None
    """Why the tick published nothing (``duplicate``, ``stale``, ``market_closed``), else
    ``None``."""


def _by_uid(docs: Iterable[Any], collection: str, doc_id: str) -> Iterable[tuple[str, Any]]:
    """``(uid, doc)`` for documents named ``users/{uid}/{collection}/{doc_id}`` in ``docs``."""
    for doc in docs:
        parts = doc.reference.path.split("/")
        if len(parts) == 4 and parts[0] == USERS and parts[2:] == [collection, doc_id]:
            yield parts[1], doc


def _where_true(db: firestore.Client, group: str, field: str, fields: list[str]) -> Iterable[Any]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = db.collection_group(group).where(filter=FieldFilter(field, "==", True))
    return cast(Iterable[Any], query.select(fields).stream())


def configured_users(db: firestore.Client) -> dict[str, str | None]:
    """uid → keys version of every user whose ``config/alpaca.configured`` is true (the
    version is ``configuredAt``, read by the same query at no extra cost)."""
    docs = _where_true(db, "config", "configured", ["configuredAt"])
    return {
        uid: version_of((doc.to_dict() or {}).get("configuredAt"))
        for uid, doc in _by_uid(docs, "config", "alpaca")
    }


def enabled_uids(db: firestore.Client) -> set[str]:
    """Users whose kill-switch ``status/trading.enabled`` is true."""
    docs = _where_true(db, "status", "enabled", [])
    return {uid for uid, _ in _by_uid(docs, "status", "trading")}


def eligible_users(db: firestore.Client) -> dict[str, str | None]:
    """Users whose keys are configured and whose kill-switch is on, with their keys' version."""
    configured, enabled = configured_users(db), enabled_uids(db)
    return {uid: configured[uid] for uid in sorted(configured.keys() & enabled)}


def eligible_uids(db: firestore.Client) -> list[str]:
    """Users whose keys are configured and whose kill-switch is on, sorted."""
    return list(eligible_users(db))


def count_users(db: firestore.Client) -> int:
    """Users, by an aggregation (one read per 1,000): what the roster's count replaced."""
    result: Any = cast(Any, db.collection(USERS)).count().get()
    return int(result[0][0].value)


def fan_out(deps: Deps, tick: PubsubDelivery, now: datetime | None = None) -> FanoutResult:
    """Publish the pulse of ``tick``; safe to call again for the same tick."""
    now = now or datetime.now(UTC)
    db = deps.firestore
    pulse_id = pulses.pulse_id_for(tick.message_id, tick.publish_time)
    if now - tick.publish_time > STALE_TICK_AFTER:
        log.warning("dropping a stale tick", pulse_id=pulse_id, message_id=tick.message_id)
        return FanoutResult(pulse_id, skipped_tick="stale")
    schedule = market_clock.decide_for_tick(deps, now)
    if not schedule.publish:
        next_open = schedule.clock.next_open.isoformat() if schedule.clock else None
        log.info(
            "tick skipped: the market is closed",
            pulse_id=pulse_id,
            message_id=tick.message_id,
            fields={"next_open": next_open},
        )
        return FanoutResult(pulse_id, skipped_tick="market_closed")
    ref = db.document(pulse_doc(pulse_id))
    existing = ref.get()
    if existing.exists and (existing.to_dict() or {}).get("state") == "published":
        log.info("tick already published", pulse_id=pulse_id, message_id=tick.message_id)
        return FanoutResult(pulse_id, skipped_tick="duplicate")
    started = time.monotonic()
    ref.set(
        {
            "pulse_id": pulse_id,
            "tick_message_id": tick.message_id,
            "timestamp": tick.publish_time,
            "started_at": now,
            "state": "publishing",
        }
    )
    _finish_previous(db, pulse_id)
    listed = roster.load(db)
    users = listed.eligible
    asker = market_clock.pick_asker(users, pulse_id) if schedule.check_clock else None
    _publish(deps, users, pulse_id, tick.publish_time, asker=asker)
    if asker is not None:
        log.info("pulse asks for the market clock", uid=asker, pulse_id=pulse_id)
    ineligible = max(listed.members - len(users), 0)
    ref.update(
        {
            "state": "published",
            "published_count": len(users),
            "ineligible_count": ineligible,
            "published_at": datetime.now(UTC),
            "publish_seconds": round(time.monotonic() - started, 3),
        }
    )
    pulses.rollup(db, pulse_id)
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


def _finish_previous(db: firestore.Client, pulse_id: str) -> None:
    """Freeze the final counts of the pulse ``ops/last_pulse`` still shows, before this pulse's
    workers overwrite each user's outcome (and before a worker's trailing rollup may have run).
    """
    previous = (db.document(LAST_PULSE_DOC).get().to_dict() or {}).get("pulse_id")
    if isinstance(previous, str) and previous != pulse_id:
        pulses.rollup(db, previous, finalize=True)
