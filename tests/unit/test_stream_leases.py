"""Who holds which bucket (:func:`stream_gateway.leases.plan`): shares by rank, rebalancing
only when the sessions are stable, dead holders revoked before their buckets are taken, a
live holder's bucket never taken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agenttrader.paths import STREAM_BUCKETS
from agenttrader.streams import SessionState
from stream_gateway.leases import (
    LEASE_SECONDS,
    MARGIN_SECONDS,
    RENEW_SECONDS,
    BucketView,
    plan,
    targets,
)

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
FRESH = NOW - timedelta(seconds=1)
DEAD = NOW - timedelta(seconds=LEASE_SECONDS + 1)


def session(sid: str, renewed: datetime | None = FRESH, revoked: bool = False) -> SessionState:
    return SessionState(sid, renewed, revoked)


def buckets(holders: dict[int, str] | None = None, count: int = STREAM_BUCKETS) -> list[BucketView]:
    holders = holders or {}
    return [BucketView(n, holders.get(n, ""), 1 if n in holders else 0, None) for n in range(count)]


@pytest.mark.parametrize(
    ("alive", "shares"),
    [
        (["a"], {"a": 64}),
        (["b", "a"], {"a": 32, "b": 32}),
        (["a", "b", "c"], {"a": 22, "b": 21, "c": 21}),
        ([f"s{n:02d}" for n in range(64)], {f"s{n:02d}": 1 for n in range(64)}),
        ([], {}),
    ],
)
def test_shares_by_rank_add_up_to_every_bucket(alive: list[str], shares: dict[str, int]) -> None:
    assert targets(alive, 64) == shares
    assert sum(shares.values()) in (0, 64)


def test_alone_it_takes_every_bucket() -> None:
    decided = plan("a", buckets(), {"a": session("a")}, NOW, rebalance=False)
    assert sorted(decided.acquire) == list(range(STREAM_BUCKETS))
    assert decided.release == () and decided.revoke == ()


def test_two_newcomers_take_their_share_from_different_ends() -> None:
    sessions = {"a": session("a"), "b": session("b")}
    first = plan("a", buckets(), sessions, NOW, rebalance=False)
    second = plan("b", buckets(), sessions, NOW, rebalance=False)
    assert len(first.acquire) == len(second.acquire) == 32
    assert not set(first.acquire) & set(second.acquire)


def test_a_live_holders_bucket_is_never_taken() -> None:
    held = dict.fromkeys(range(STREAM_BUCKETS), "b")
    decided = plan("a", buckets(held), {"a": session("a"), "b": session("b")}, NOW, rebalance=True)
    assert decided.acquire == () and decided.revoke == ()


def test_an_instance_above_its_share_releases_only_when_stable_and_someone_is_short() -> None:
    held = dict.fromkeys(range(STREAM_BUCKETS), "a")
    sessions = {"a": session("a"), "b": session("b")}
    unstable = plan("a", buckets(held), sessions, NOW, rebalance=False)
    assert unstable.release == ()
    stable = plan("a", buckets(held), sessions, NOW, rebalance=True)
    assert stable.release == tuple(range(32, 64))
    newcomer = plan("b", buckets(held), sessions, NOW, rebalance=True)
    assert newcomer.acquire == ()  # it waits for the release


def test_nobody_releases_when_nobody_is_short() -> None:
    held = {n: ("a" if n < 32 else "b") for n in range(64)}
    sessions = {"a": session("a"), "b": session("b")}
    assert plan("a", buckets(held), sessions, NOW, rebalance=True).release == ()


@pytest.mark.parametrize(
    ("holder", "revoke"),
    [
        (session("dead", DEAD), ("dead",)),
        (session("dead", None), ("dead",)),
        (session("dead", FRESH, revoked=True), ()),
        (None, ()),
    ],
    ids=["silent", "never-renewed", "already-revoked", "no-session-document"],
)
def test_a_dead_holders_buckets_are_taken_after_revoking_it(
    holder: SessionState | None, revoke: tuple[str, ...]
) -> None:
    held = dict.fromkeys(range(STREAM_BUCKETS), "dead")
    sessions = {"a": session("a")}
    if holder is not None:
        sessions["dead"] = holder
    decided = plan("a", buckets(held), sessions, NOW, rebalance=False)
    assert sorted(decided.acquire) == list(range(STREAM_BUCKETS))
    assert decided.revoke == revoke


def test_survivors_split_a_dead_instances_buckets() -> None:
    held = {n: ("a", "b", "dead")[n % 3] for n in range(64)}
    sessions = {"a": session("a"), "b": session("b"), "dead": session("dead", DEAD)}
    got_a = plan("a", buckets(held), sessions, NOW, rebalance=False)
    got_b = plan("b", buckets(held), sessions, NOW, rebalance=False)
    orphans = {n for n in range(64) if n % 3 == 2}
    assert set(got_a.acquire) | set(got_b.acquire) <= orphans
    assert len(got_a.acquire) + 22 == 32 and len(got_b.acquire) + 21 == 32


def test_the_holder_stops_before_anyone_may_take_over() -> None:
    """The fencing arithmetic: a holder that renews every RENEW_SECONDS tolerates failed
    renewals, and stops a margin before a taker could act."""
    assert MARGIN_SECONDS >= 1.0
    assert LEASE_SECONDS - MARGIN_SECONDS >= 2 * RENEW_SECONDS
