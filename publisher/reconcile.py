"""Polling becomes reconciliation: which eligible tenants a tick publishes to.

A tenant whose trade-update stream is live (:func:`agenttrader.streams.read_live`: the stream
gateways' bucket documents, ``STREAM_BUCKETS`` + instances reads, no scan) is published by one
tick in ``RECONCILE_EVERY_TICKS``; every other eligible tenant by every tick. Which tick is a
streaming tenant's is spread by a hash of its uid, so each tick carries about a
``RECONCILE_EVERY_TICKS``-th of them: ``publishes(uid, …)`` is true for exactly one tick of
any ``every`` consecutive ones. The tick index is the tick's publish time in minutes, so a
redelivered tick decides the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from agenttrader.logs import get_logger
from agenttrader.roster_layout import hash_of
from agenttrader.streams import read_live

if TYPE_CHECKING:
    from google.cloud import firestore

log = get_logger(__name__)


def tick_index(publish_time: datetime) -> int:
    """The tick's number: whole minutes since the epoch of its publish time."""
    return int(publish_time.timestamp() // 60)


def publishes(uid: str, streaming: bool, index: int, every: int) -> bool:
    """Whether tick ``index`` publishes to ``uid``: always unless its stream is live, then
    once in ``every`` ticks."""
    if not streaming or every <= 1:
        return True
    return (index + hash_of(uid)) % every == 0


@dataclass(frozen=True)
class Selection:
    """What one tick publishes: the tenants, and how many streaming tenants wait their turn."""

    users: dict[str, str | None]
    deferred: int
    streaming: int
    """Eligible tenants whose stream is live."""


def select(
    eligible: Mapping[str, str | None],
    streaming: frozenset[str],
    index: int,
    every: int,
) -> Selection:
    """The tenants of ``eligible`` (uid → keys version) tick ``index`` publishes to."""
    live = len(streaming.intersection(eligible)) if streaming else 0
    if not live or every <= 1:  # everyone: no filtering
        return Selection(dict(eligible), 0, live)
    users = {
        uid: version
        for uid, version in eligible.items()
        if publishes(uid, uid in streaming, index, every)
    }
    return Selection(users, len(eligible) - len(users), live)


def for_tick(
    db: firestore.Client,
    eligible: Mapping[str, str | None],
    publish_time: datetime,
    every: int,
) -> Selection:
    """The tick's selection, reading who streams (nothing is read with ``every`` = 1)."""
    streaming = read_live(db).uids if every > 1 else frozenset()
    chosen = select(eligible, streaming, tick_index(publish_time), every)
    if chosen.streaming:
        log.info(
            "streaming tenants reconciled every few ticks",
            fields={"streaming": chosen.streaming, "deferred": chosen.deferred, "every": every},
        )
    return chosen
