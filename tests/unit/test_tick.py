"""The tick's decision (:func:`publisher.tick.decide`): a table of the tick's age × the
market-hours decision × the state its pulse document already has."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agenttrader.market_clock import Decision, Why
from agenttrader.pulses import PulseState
from publisher.tick import STALE_TICK_AFTER, Skip, decide

OPEN = Decision(publish=True, check_clock=False, why=Why.OPEN)
CLOSED = Decision(publish=False, check_clock=False, why=Why.CLOSED)
ASKING = Decision(publish=True, check_clock=True, why=Why.STALE)
"""The clock is too old to trust: the tick publishes, and one message asks for a new one."""

FRESH = timedelta(seconds=3)
AT_LIMIT = STALE_TICK_AFTER
LATE = STALE_TICK_AFTER + timedelta(microseconds=1)
AHEAD = -timedelta(seconds=2)
"""Published "after" now: the publisher's clock runs ahead; still a fresh tick."""

PUBLISHING, PUBLISHED = PulseState.PUBLISHING.value, PulseState.PUBLISHED.value

TABLE = [
    # age, market-hours decision, pulse document's state → why the tick publishes nothing
    (FRESH, OPEN, None, None),
    (FRESH, OPEN, PUBLISHING, None),  # a tick redelivered mid-publish publishes again
    (FRESH, OPEN, PUBLISHED, Skip.DUPLICATE),
    (FRESH, ASKING, None, None),
    (FRESH, ASKING, PUBLISHED, Skip.DUPLICATE),
    (FRESH, CLOSED, None, Skip.MARKET_CLOSED),
    (FRESH, CLOSED, PUBLISHING, Skip.MARKET_CLOSED),
    (FRESH, CLOSED, PUBLISHED, Skip.MARKET_CLOSED),
    (AHEAD, OPEN, None, None),
    (AHEAD, CLOSED, None, Skip.MARKET_CLOSED),
    (AHEAD, OPEN, PUBLISHED, Skip.DUPLICATE),
    (AT_LIMIT, OPEN, None, None),
    (AT_LIMIT, OPEN, PUBLISHING, None),
    (AT_LIMIT, OPEN, PUBLISHED, Skip.DUPLICATE),
    (AT_LIMIT, CLOSED, None, Skip.MARKET_CLOSED),
    (LATE, OPEN, None, Skip.STALE),
    (LATE, OPEN, PUBLISHING, Skip.STALE),
    (LATE, OPEN, PUBLISHED, Skip.STALE),
    (LATE, ASKING, None, Skip.STALE),
    (LATE, CLOSED, None, Skip.STALE),
    (LATE, CLOSED, PUBLISHED, Skip.STALE),
    (timedelta(hours=1), OPEN, None, Skip.STALE),
]


@pytest.mark.parametrize(("age", "schedule", "pulse_state", "skip"), TABLE)
def test_what_a_tick_does(
    age: timedelta, schedule: Decision, pulse_state: str | None, skip: Skip | None
) -> None:
    assert decide(age=age, schedule=schedule, pulse_state=pulse_state) is skip
