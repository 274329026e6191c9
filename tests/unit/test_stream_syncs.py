"""A burst of updates is one or two ``trade_update`` syncs
(:class:`stream_gateway.syncs.Coalescer`)."""

from __future__ import annotations

import pytest

from stream_gateway.syncs import Coalescer


def test_the_first_update_publishes_at_once() -> None:
    assert Coalescer(1.0).request("u", 100.0) == 0.0


def test_a_burst_is_one_sync_now_and_one_at_the_end_of_the_interval() -> None:
    c = Coalescer(1.0)
    decisions = [c.request("u", 100.0 + k * 0.01) for k in range(50)]
    assert decisions[0] == 0.0
    assert decisions[1] == pytest.approx(1.0 - 0.01)
    assert all(d is None for d in decisions[2:])
    c.fired("u", 101.0)
    assert c.request("u", 101.5) == 0.5  # the next burst waits for the interval again


def test_tenants_are_coalesced_apart() -> None:
    c = Coalescer(1.0)
    assert c.request("a", 5.0) == 0.0
    assert c.request("b", 5.0) == 0.0


def test_after_a_quiet_interval_an_update_publishes_at_once_again() -> None:
    c = Coalescer(1.0)
    c.request("u", 0.0)
    assert c.request("u", 1.0) == 0.0
    c.forget("u")
    assert c.request("u", 1.1) == 0.0


def test_a_steady_trickle_is_one_sync_per_interval() -> None:
    c = Coalescer(1.0)
    published, timer = 0, None
    for k in range(1000):  # an update every 10 ms for 10 s
        now = k * 0.01
        if timer is not None and timer <= now:  # the trailing publish fires
            c.fired("u", timer)
            published, timer = published + 1, None
        decision = c.request("u", now)
        if decision == 0.0:
            published += 1
        elif decision is not None:
            timer = now + decision
    assert 10 <= published <= 11
