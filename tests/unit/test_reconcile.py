"""Polling becomes reconciliation (:mod:`publisher.reconcile`): a streaming tenant is published
by exactly one tick in ``every``, the others by every tick; and who streams is believed only
from buckets whose holder's session is alive (:mod:`agenttrader.streams`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agenttrader.streams import LEASE_SECONDS, SessionState, live_uids, session_alive
from publisher.reconcile import publishes, select, tick_index

UIDS = [f"user-{n}" for n in range(200)]


@pytest.mark.parametrize("every", [2, 3, 5, 7])
def test_a_streaming_tenant_is_published_by_exactly_one_tick_in_every(every: int) -> None:
    for uid in UIDS:
        for start in range(0, 20):
            window = [publishes(uid, True, start + k, every) for k in range(every)]
            assert window.count(True) == 1, (uid, start)


@pytest.mark.parametrize("every", [1, 5])
def test_a_tenant_without_a_live_stream_is_published_by_every_tick(every: int) -> None:
    assert all(publishes(uid, False, index, every) for uid in UIDS for index in range(10))


def test_every_one_publishes_streaming_tenants_every_tick_too() -> None:
    assert all(publishes(uid, True, index, 1) for uid in UIDS for index in range(10))


def test_streaming_tenants_spread_over_the_ticks() -> None:
    counts = [sum(publishes(uid, True, index, 5) for uid in UIDS) for index in range(5)]
    assert sum(counts) == len(UIDS)
    assert min(counts) >= len(UIDS) / 5 * 0.6, counts


def test_select_keeps_versions_and_counts_what_waits() -> None:
    eligible = {uid: f"v{n}" for n, uid in enumerate(UIDS[:50])}
    streaming = frozenset([*UIDS[:30], "not-eligible-any-more"])
    chosen = select(eligible, streaming, index=7, every=5)
    assert set(UIDS[30:50]) <= set(chosen.users)
    assert all(chosen.users[uid] == eligible[uid] for uid in chosen.users)
    assert chosen.deferred == 50 - len(chosen.users)
    assert chosen.streaming == 30
    assert 0 < chosen.deferred < 30


def test_the_tick_index_is_the_minute_of_the_publish_time() -> None:
    moment = datetime(2026, 11, 27, 14, 30, 59, tzinfo=UTC)
    assert tick_index(moment) == tick_index(moment.replace(second=0))
    assert tick_index(moment + timedelta(seconds=1)) == tick_index(moment) + 1


NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
LEASE = timedelta(seconds=LEASE_SECONDS)

SESSIONS = [
    # id, session (None: no document), alive at NOW
    ("fresh", SessionState("a", NOW - timedelta(seconds=1), False), True),
    ("at-the-limit", SessionState("a", NOW - LEASE, False), True),
    ("just-past", SessionState("a", NOW - LEASE - timedelta(microseconds=1), False), False),
    ("revoked", SessionState("a", NOW, True), False),
    ("never-renewed", SessionState("a", None, False), False),
    ("missing", None, False),
    ("renewed-after-the-read", SessionState("a", NOW + timedelta(seconds=1), False), True),
]


@pytest.mark.parametrize(
    ("session", "alive"), [s[1:] for s in SESSIONS], ids=[s[0] for s in SESSIONS]
)
def test_a_session_is_alive_within_the_lease_on_firestores_clock(
    session: SessionState | None, alive: bool
) -> None:
    assert session_alive(session, NOW, LEASE_SECONDS) is alive


def test_only_buckets_of_live_sessions_are_believed() -> None:
    sessions = {
        "alive": SessionState("alive", NOW, False),
        "dead": SessionState("dead", NOW - LEASE * 2, False),
    }
    buckets = [("alive", ["a1", "a2"]), ("dead", ["d1"]), ("", ["released"]), ("gone", ["g"])]
    live = live_uids(buckets, sessions, NOW)
    assert live.uids == frozenset({"a1", "a2"})
    assert live.trusted_buckets == 1
    assert live.sessions == 1
